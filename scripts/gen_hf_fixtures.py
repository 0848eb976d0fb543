#!/usr/bin/env python3
"""Regenerates tests/data/hf_roundtrip/: for every architecture kiln supports (llama, mistral, qwen2, qwen3), a
tiny random model written by `transformers` itself (save_pretrained, float32 safetensors, exactly the files it
writes) and the logits transformers computes for fixed tokens. tests/hf_fixture_test.py (no torch needed, runs
in CI) loads each folder in kiln, compares kiln's logits with these, exports it again with `kiln export` and
checks that config.json and every tensor come back as transformers wrote them.

Needs torch and transformers (not needed by CI, which uses the committed files):
    python3 scripts/gen_hf_fixtures.py            # then commit tests/data/hf_roundtrip
Per case <name>/: model/ (what save_pretrained wrote, untouched), reference.json (B, T, the token stream of
B*T+1 ids whose rows [b*T, b*T+T) are the inputs, library versions) and logits.npy (float64, (B, T, V): the
float32 weights run in float64). Everything together stays under 200 KB.
"""
import json
import os
import shutil
import sys

# scripts/tokenize.py would shadow the standard library's tokenize module that torch imports
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "hf_roundtrip")
MAX_BYTES = 200 * 1024

# Tiny shapes (a few thousand parameters each), every feature kiln maps: GQA, untied and tied heads, Llama 3.1
# rope scaling (original_max small so all three frequency bands occur within max_position_embeddings), Qwen2's
# q/k/v biases, Qwen3's q/k norms and a head_dim that is not hidden / heads.
COMMON = dict(vocab_size=48, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
              num_key_value_heads=1, max_position_embeddings=32, rms_norm_eps=1e-5)
CASES = {
    "llama": dict(model_type="llama", tie_word_embeddings=False, rope_theta=500000.0,
                  rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                    original_max_position_embeddings=8)),
    "mistral": dict(model_type="mistral", tie_word_embeddings=False, sliding_window=None),
    "qwen2": dict(model_type="qwen2", tie_word_embeddings=True, use_sliding_window=False),
    "qwen3": dict(model_type="qwen3", tie_word_embeddings=False, use_sliding_window=False, head_dim=12),
}
B, T = 2, 8


def random_model(kw, rng):
    """A transformers model of CASES entry kw with random float32 weights (also used by tests/hf_roundtrip_test.py)."""
    kw = dict(COMMON, **kw)
    model_type = kw.pop("model_type")
    cfg = transformers.AutoConfig.for_model(model_type, **kw)
    torch.manual_seed(int(rng.integers(1 << 31)))
    model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").float()
    with torch.no_grad():  # norms and biases away from their 1 / 0 initial values, so a misplaced one shows
        for n, p in model.named_parameters():
            if p.dim() == 1:
                p.copy_(torch.from_numpy(rng.normal(1.0 if "norm" in n else 0.0, 0.2, p.shape)))
            else:
                p.copy_(torch.from_numpy(rng.normal(0.0, 0.3, p.shape)))
    return model


def make_case(name, kw, rng):
    model = random_model(kw, rng)
    cfg = model.config
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    model.save_pretrained(os.path.join(d, "model"), safe_serialization=True)
    # the reference: the saved float32 weights, reloaded as transformers would, computed in float64
    ref = transformers.AutoModelForCausalLM.from_pretrained(os.path.join(d, "model"), attn_implementation="eager")
    ref = ref.double().eval()
    V = cfg.vocab_size
    stream = rng.integers(0, V, size=B * T + 1).astype(np.int64)
    inputs = np.stack([stream[b * T:b * T + T] for b in range(B)])
    with torch.no_grad():
        logits = ref(input_ids=torch.from_numpy(inputs)).logits.numpy().astype("<f8")
    np.save(os.path.join(d, "logits.npy"), logits)
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump({"B": B, "T": T, "stream": [int(x) for x in stream], "transformers": transformers.__version__,
                   "torch": torch.__version__}, f, indent=1)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{name}: {n_params} parameters, files: {sorted(os.listdir(os.path.join(d, 'model')))}", file=sys.stderr)


def folder_bytes(d):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs)


def main():
    rng = np.random.default_rng(20240607)
    os.makedirs(OUT, exist_ok=True)
    for name, kw in CASES.items():
        make_case(name, kw, rng)
    total = folder_bytes(OUT)
    print(f"{OUT}: {total} bytes", file=sys.stderr)
    if total > MAX_BYTES:
        sys.exit(f"the fixtures take {total} bytes, more than the {MAX_BYTES} allowed: make the shapes smaller")


if __name__ == "__main__":
    main()
