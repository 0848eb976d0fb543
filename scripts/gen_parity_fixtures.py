#!/usr/bin/env python3
"""Regenerates tests/data/parity/: tiny random Hugging Face models of every architecture kiln supports,
with one batch, the logits, the loss and every parameter gradient computed by `transformers` in float64.
kiln's test (tests/model_parity_test.cc) loads the same float32 weights and compares.

Needs torch and transformers (not needed by CI, which uses the committed fixtures):
    pip install torch transformers && python3 scripts/gen_parity_fixtures.py
Files per case: config.json, params.bin (float32, kiln's parameter order: see kiln_order()),
inputs.bin / targets.bin (int32, B*T; targets -100 = masked), meta.json (B, T), logits.bin (float64, B*T*V),
loss.bin (float64), grads.bin (float64, kiln's parameter order).
"""
import json
import os
import sys

# scripts/tokenize.py would shadow the standard library's tokenize module that torch imports
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
import numpy as np
import torch
import transformers

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "parity")

CASES = {
    # GQA, untied embeddings
    "llama_gqa": dict(model_type="llama", vocab_size=61, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
                      num_attention_heads=6, num_key_value_heads=2, tie_word_embeddings=False),
    # tied embeddings + Llama 3.1 rope scaling (original_max small so all three frequency bands occur)
    "llama3_tied_scaled": dict(model_type="llama", vocab_size=53, hidden_size=64, intermediate_size=96,
                               num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                               tie_word_embeddings=True, rope_theta=500000.0,
                               rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                                 high_freq_factor=4.0, original_max_position_embeddings=32)),
    "mistral": dict(model_type="mistral", vocab_size=47, hidden_size=32, intermediate_size=72, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=1, sliding_window=None, tie_word_embeddings=False),
    "qwen2_bias": dict(model_type="qwen2", vocab_size=59, hidden_size=40, intermediate_size=56, num_hidden_layers=2,
                       num_attention_heads=5, num_key_value_heads=1, tie_word_embeddings=True,
                       use_sliding_window=False),
    # head_dim (12) != hidden / heads (32/4 = 8)
    "qwen3_headdim": dict(model_type="qwen3", vocab_size=67, hidden_size=32, intermediate_size=64,
                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=12,
                          tie_word_embeddings=False, use_sliding_window=False),
}
B, T = 2, 9


def kiln_order(model, cfg):
    """(kiln name, tensor) pairs in kiln's parameter-table order (src/model.c build_param_table)."""
    sd = dict(model.named_parameters())
    out = [("wte", sd["model.embed_tokens.weight"])]
    for l in range(cfg.num_hidden_layers):
        p = f"model.layers.{l}."
        a = p + "self_attn."
        out.append((f"layers.{l}.attn_norm", sd[p + "input_layernorm.weight"]))
        out.append((f"layers.{l}.wqkv", torch.cat([sd[a + "q_proj.weight"], sd[a + "k_proj.weight"],
                                                   sd[a + "v_proj.weight"]], 0)))
        if a + "q_proj.bias" in sd:
            out.append((f"layers.{l}.bqkv", torch.cat([sd[a + "q_proj.bias"], sd[a + "k_proj.bias"],
                                                       sd[a + "v_proj.bias"]], 0)))
        if a + "q_norm.weight" in sd:
            out.append((f"layers.{l}.q_norm", sd[a + "q_norm.weight"]))
            out.append((f"layers.{l}.k_norm", sd[a + "k_norm.weight"]))
        out.append((f"layers.{l}.wo", sd[a + "o_proj.weight"]))
        out.append((f"layers.{l}.mlp_norm", sd[p + "post_attention_layernorm.weight"]))
        out.append((f"layers.{l}.wgu", torch.cat([sd[p + "mlp.gate_proj.weight"], sd[p + "mlp.up_proj.weight"]], 0)))
        out.append((f"layers.{l}.wdown", sd[p + "mlp.down_proj.weight"]))
    out.append(("final_norm", sd["model.norm.weight"]))
    if not cfg.tie_word_embeddings:
        out.append(("lm_head", sd["lm_head.weight"]))
    return out


def grad_of(t):
    return t.grad if t.grad is not None else torch.zeros_like(t)


def kiln_grads(model, cfg):
    sd = dict(model.named_parameters())
    g = {k: grad_of(v) for k, v in sd.items()}
    out = [g["model.embed_tokens.weight"]]
    for l in range(cfg.num_hidden_layers):
        p = f"model.layers.{l}."
        a = p + "self_attn."
        out.append(g[p + "input_layernorm.weight"])
        out.append(torch.cat([g[a + "q_proj.weight"], g[a + "k_proj.weight"], g[a + "v_proj.weight"]], 0))
        if a + "q_proj.bias" in g:
            out.append(torch.cat([g[a + "q_proj.bias"], g[a + "k_proj.bias"], g[a + "v_proj.bias"]], 0))
        if a + "q_norm.weight" in g:
            out.append(g[a + "q_norm.weight"])
            out.append(g[a + "k_norm.weight"])
        out.append(g[a + "o_proj.weight"])
        out.append(g[p + "post_attention_layernorm.weight"])
        out.append(torch.cat([g[p + "mlp.gate_proj.weight"], g[p + "mlp.up_proj.weight"]], 0))
        out.append(g[p + "mlp.down_proj.weight"])
    out.append(g["model.norm.weight"])
    if not cfg.tie_word_embeddings:
        out.append(g["lm_head.weight"])
    return out


def make_case(name, kw, rng):
    kw = dict(kw)
    model_type = kw.pop("model_type")
    cfg = transformers.AutoConfig.for_model(model_type, max_position_embeddings=64, rms_norm_eps=1e-5,
                                            attn_implementation="eager", **kw)
    torch.manual_seed(int(rng.integers(1 << 31)))
    model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    with torch.no_grad():  # norms and biases away from their 1 / 0 initial values, so their grads matter
        for n, p in model.named_parameters():
            if p.dim() == 1:
                p.copy_(torch.from_numpy(rng.normal(1.0 if "norm" in n else 0.0, 0.2, p.shape)))
            else:
                p.copy_(torch.from_numpy(rng.normal(0.0, 0.08, p.shape)))
    # round the weights to float32 once: kiln gets exactly these values, the reference runs in float64 on them
    model = model.float().double()
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    cfg_dict = json.loads(cfg.to_json_string())
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg_dict, f, indent=1, sort_keys=True)
    params = kiln_order(model, cfg)
    np.concatenate([t.detach().float().numpy().ravel() for _, t in params]).astype("<f4").tofile(
        os.path.join(d, "params.bin"))
    V = cfg.vocab_size
    inputs = rng.integers(0, V, size=(B, T)).astype(np.int32)
    targets = rng.integers(0, V, size=(B, T)).astype(np.int32)
    targets[0, :3] = -100  # a masked prompt
    targets[1, 5] = -100
    inputs.astype("<i4").tofile(os.path.join(d, "inputs.bin"))
    targets.astype("<i4").tofile(os.path.join(d, "targets.bin"))
    model.zero_grad()
    logits = model(input_ids=torch.from_numpy(inputs.astype(np.int64))).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), torch.from_numpy(targets.astype(np.int64)).reshape(-1),
                                             ignore_index=-100)
    loss.backward()
    logits.detach().numpy().astype("<f8").tofile(os.path.join(d, "logits.bin"))
    np.array([loss.item()], dtype="<f8").tofile(os.path.join(d, "loss.bin"))
    np.concatenate([g.detach().numpy().ravel() for g in kiln_grads(model, cfg)]).astype("<f8").tofile(
        os.path.join(d, "grads.bin"))
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump({"B": B, "T": T, "names": [n for n, _ in params],
                   "numel": [int(t.numel()) for _, t in params],
                   "transformers": transformers.__version__, "torch": torch.__version__}, f, indent=1)
    print(f"{name}: {sum(int(t.numel()) for _, t in params)} params, loss {loss.item():.6f}", file=sys.stderr)


ADAMW = dict(steps=20, grad_accum=2, lr=3e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, clip=1.0)


def make_adamw_case(rng):
    """20 optimizer steps of torch.optim.AdamW with gradient accumulation and global-norm clipping on the
    llama_gqa model (float32, as kiln trains on the CPU): decay on linear-layer matrices only."""
    src = os.path.join(OUT, "llama_gqa")
    d = os.path.join(OUT, "adamw")
    os.makedirs(d, exist_ok=True)
    cfg = transformers.AutoConfig.from_pretrained(src)
    model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").float()
    flat = np.fromfile(os.path.join(src, "params.bin"), dtype="<f4")
    with torch.no_grad():  # load kiln-ordered params back into the HF tensors
        sd = dict(model.named_parameters())
        off = 0
        for name, t in kiln_order(model, cfg):
            n = t.numel()
            chunk = torch.from_numpy(flat[off:off + n].copy()).reshape(t.shape)
            off += n
            if name.endswith("wqkv") or name.endswith("bqkv"):
                a = "model.layers." + name.split(".")[1] + ".self_attn."
                suffix = "weight" if name.endswith("wqkv") else "bias"
                q, k, v = (sd[a + x + "_proj." + suffix] for x in "qkv")
                q.copy_(chunk[:q.shape[0]]); k.copy_(chunk[q.shape[0]:q.shape[0] + k.shape[0]])
                v.copy_(chunk[q.shape[0] + k.shape[0]:])
            elif name.endswith("wgu"):
                p = "model.layers." + name.split(".")[1] + ".mlp."
                g, u = sd[p + "gate_proj.weight"], sd[p + "up_proj.weight"]
                g.copy_(chunk[:g.shape[0]]); u.copy_(chunk[g.shape[0]:])
            else:
                t.copy_(chunk)
    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and "embed_tokens" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() == 2 and "embed_tokens" not in n)]
    h = ADAMW
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": h["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=h["lr"], betas=h["betas"], eps=h["eps"], foreach=False)
    V = cfg.vocab_size
    n_mb = h["steps"] * h["grad_accum"]
    inputs = rng.integers(0, V, size=(n_mb, B, T)).astype(np.int32)
    targets = np.roll(inputs, -1, axis=2).copy()  # a learnable task: predict the next input token
    targets[:, :, -1] = rng.integers(0, V, size=(n_mb, B))
    targets[:, 0, :2] = -100
    inputs.astype("<i4").tofile(os.path.join(d, "inputs.bin"))
    targets.astype("<i4").tofile(os.path.join(d, "targets.bin"))
    losses, norms = [], []
    for step in range(h["steps"]):
        opt.zero_grad()
        mbs = range(step * h["grad_accum"], (step + 1) * h["grad_accum"])
        valid = sum(int((targets[i] != -100).sum()) for i in mbs)
        total = 0.0
        for i in mbs:
            logits = model(input_ids=torch.from_numpy(inputs[i].astype(np.int64))).logits
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V),
                                                     torch.from_numpy(targets[i].astype(np.int64)).reshape(-1),
                                                     ignore_index=-100, reduction="sum") / valid
            loss.backward()
            total += loss.item()
        norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), h["clip"])))
        opt.step()
        losses.append(total)
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(dict(h, B=B, T=T, losses=losses, grad_norms=norms, source="llama_gqa",
                       torch=torch.__version__), f, indent=1)
    print(f"adamw: losses {losses[0]:.4f} -> {losses[-1]:.4f}", file=sys.stderr)


def main():
    rng = np.random.default_rng(int.from_bytes(os.urandom(8), "little"))
    for name, kw in CASES.items():
        make_case(name, kw, rng)
    make_adamw_case(rng)


if __name__ == "__main__":
    main()
