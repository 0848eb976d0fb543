#!/usr/bin/env python3
"""gguf_to_hf.py — a llama-architecture GGUF file to a Hugging Face folder that kiln and transformers load.

    python scripts/gguf_to_hf.py MODEL.gguf OUT_DIR [--keep-gguf-qk-order]

Writes OUT_DIR/config.json (LlamaForCausalLM; every size read from the GGUF metadata), model.safetensors
(every tensor dequantized to float32 with the `gguf` package: Q4_1 / Q8_0 / F16 values are exact in F32),
tokenizer.json (a byte-level BPE built with the `tokenizers` package from the GGUF vocabulary, merges and
pre-tokenizer name) and tokenizer_config.json. Needs only numpy, gguf, safetensors and tokenizers.

Q/K rows. llama.cpp's converter reorders the rows of q_proj and k_proj inside each head so that ggml's
RoPE, which rotates adjacent pairs (x[2i], x[2i+1]), computes what Hugging Face's rotate-half RoPE
computes on pairs (x[i], x[i + HS/2]): HF row (h, half, i) is stored at GGUF row (h, i, half). This script
moves the rows back (--keep-gguf-qk-order skips that, only to show what the permutation is worth).
"""
import argparse
import json
import os
import sys

import numpy as np

try:
    import gguf
    from gguf import quants
except ImportError:
    sys.exit("gguf_to_hf: needs the 'gguf' package (scripts/smollm2.sh installs it into .venv)")


def field(reader, key, default=None, required=True):
    f = reader.fields.get(key)
    if f is None:
        if required and default is None:
            sys.exit(f"gguf_to_hf: the GGUF has no metadata key '{key}'")
        return default
    return f.contents()


def read_config(r, tensor_names):
    arch = field(r, "general.architecture")
    if arch != "llama":
        sys.exit(f"gguf_to_hf: general.architecture is '{arch}'; only 'llama' is converted")
    a = lambda k, d=None: field(r, f"llama.{k}", d)  # noqa: E731
    tokens = field(r, "tokenizer.ggml.tokens")
    C, NH = int(a("embedding_length")), int(a("attention.head_count"))
    NKV = int(a("attention.head_count_kv", NH))
    HS = int(field(r, "llama.attention.key_length", C // NH, required=False))
    rot = int(a("rope.dimension_count", HS))
    if rot != HS:
        sys.exit(f"gguf_to_hf: partial rotary embeddings (rope.dimension_count {rot} < head size {HS}) "
                 "are not supported")
    scaling = field(r, "llama.rope.scaling.type", required=False)
    if scaling not in (None, "none"):
        sys.exit(f"gguf_to_hf: llama.rope.scaling.type '{scaling}' is not supported")
    if "rope_freqs.weight" in tensor_names:
        sys.exit("gguf_to_hf: rope_freqs.weight (llama3-style RoPE scaling) is not supported")
    vocab = int(field(r, "llama.vocab_size", required=False) or len(tokens))
    cfg = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab,
        "hidden_size": C,
        "intermediate_size": int(a("feed_forward_length")),
        "num_hidden_layers": int(a("block_count")),
        "num_attention_heads": NH,
        "num_key_value_heads": NKV,
        "head_dim": HS,
        "max_position_embeddings": int(a("context_length")),
        "rms_norm_eps": float(f"{a('attention.layer_norm_rms_epsilon'):.7g}"),  # stored as float32
        "rope_theta": float(a("rope.freq_base", 10000.0)),
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": "output.weight" not in tensor_names,
        "torch_dtype": "float32",
    }
    for key, name in (("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id"),
                      ("pad_token_id", "padding_token_id")):
        v = field(r, f"tokenizer.ggml.{name}", required=False)
        if v is not None:
            cfg[key] = int(v)
    return cfg


def hf_name(gguf_name):
    """(HF tensor name, 'q' / 'k' / None) for a GGUF llama tensor name; exits on an unknown one."""
    outer = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
             "output.weight": "lm_head.weight"}
    if gguf_name in outer:
        return outer[gguf_name], None
    parts = gguf_name.split(".")
    if len(parts) == 4 and parts[0] == "blk" and parts[1].isdigit() and parts[3] == "weight":
        block = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
                 "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
                 "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
                 "ffn_down": "mlp.down_proj"}
        if parts[2] in block:
            qk = {"attn_q": "q", "attn_k": "k"}.get(parts[2])
            return f"model.layers.{parts[1]}.{block[parts[2]]}.weight", qk
    sys.exit(f"gguf_to_hf: tensor '{gguf_name}' has no Hugging Face llama counterpart")


def unpermute_rows(w, heads):
    """GGUF row order (head, i, half) back to HF's (head, half, i) for a (heads*HS, C) projection."""
    rows, cols = w.shape
    hs = rows // heads
    return w.reshape(heads, hs // 2, 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)


def read_tensors(r, cfg, keep_order):
    expect = {
        "model.embed_tokens.weight": (cfg["vocab_size"], cfg["hidden_size"]),
        "model.norm.weight": (cfg["hidden_size"],),
        "lm_head.weight": (cfg["vocab_size"], cfg["hidden_size"]),
    }
    C, F, HS = cfg["hidden_size"], cfg["intermediate_size"], cfg["head_dim"]
    NH, NKV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        expect.update({p + "input_layernorm.weight": (C,), p + "post_attention_layernorm.weight": (C,),
                       p + "self_attn.q_proj.weight": (NH * HS, C), p + "self_attn.k_proj.weight": (NKV * HS, C),
                       p + "self_attn.v_proj.weight": (NKV * HS, C), p + "self_attn.o_proj.weight": (C, NH * HS),
                       p + "mlp.gate_proj.weight": (F, C), p + "mlp.up_proj.weight": (F, C),
                       p + "mlp.down_proj.weight": (C, F)})
    if cfg["tie_word_embeddings"]:
        del expect["lm_head.weight"]
    out, kinds = {}, {}
    for t in r.tensors:
        name, qk = hf_name(t.name)
        shape = tuple(int(x) for x in reversed(t.shape))  # GGUF lists ne0 (the fastest dim) first
        w = quants.dequantize(t.data, t.tensor_type).astype(np.float32, copy=False).reshape(shape)
        if name not in expect:
            sys.exit(f"gguf_to_hf: unexpected tensor {t.name} ({name})")
        if w.shape != expect[name]:
            sys.exit(f"gguf_to_hf: {t.name} has shape {w.shape}, the metadata implies {expect[name]}")
        if qk and not keep_order:
            w = unpermute_rows(w, NH if qk == "q" else NKV)
        out[name] = np.ascontiguousarray(w)
        kinds[t.tensor_type.name] = kinds.get(t.tensor_type.name, 0) + 1
    missing = sorted(set(expect) - set(out))
    if missing:
        sys.exit(f"gguf_to_hf: missing tensors: {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
    return out, kinds


def build_tokenizer(r):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    kind = field(r, "tokenizer.ggml.model")
    if kind != "gpt2":
        sys.exit(f"gguf_to_hf: tokenizer.ggml.model '{kind}' is not converted (only byte-level BPE, 'gpt2')")
    pre = field(r, "tokenizer.ggml.pre", "default", required=False)
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    if pre == "smollm":  # llama.cpp's smollm: single digits, then the GPT-2 split
        pre_tok = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    elif pre in ("gpt2", "default"):
        pre_tok = byte_level
    else:
        sys.exit(f"gguf_to_hf: tokenizer.ggml.pre '{pre}' is not converted (smollm, gpt2, default)")
    tokens = field(r, "tokenizer.ggml.tokens")
    types = field(r, "tokenizer.ggml.token_type", required=False) or [1] * len(tokens)
    merges = [tuple(m.split(" ", 1)) for m in field(r, "tokenizer.ggml.merges")]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != len(tokens):
        sys.exit("gguf_to_hf: the GGUF vocabulary has duplicate tokens")
    unk_id = field(r, "tokenizer.ggml.unknown_token_id", required=False)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tok
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    # GGUF token types: 3 = control (special), 4 = user defined (added, not special)
    added = [AddedToken(tokens[i], special=types[i] == 3, normalized=False)
             for i in range(len(tokens)) if types[i] in (3, 4)]
    tok.add_tokens(added)
    if tok.get_vocab_size(with_added_tokens=True) != len(tokens):
        sys.exit("gguf_to_hf: the tokenizer's vocabulary size changed while adding special tokens")

    def name(key):
        i = field(r, f"tokenizer.ggml.{key}", required=False)
        return tokens[int(i)] if i is not None else None

    tcfg = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": name("bos_token_id"),
            "eos_token": name("eos_token_id"), "unk_token": name("unknown_token_id") if unk_id is not None else None,
            "pad_token": name("padding_token_id"), "add_bos_token": bool(field(r, "tokenizer.ggml.add_bos_token",
                                                                              False, required=False)),
            "clean_up_tokenization_spaces": False}
    tmpl = field(r, "tokenizer.chat_template", required=False)
    if tmpl:
        tcfg["chat_template"] = tmpl
    return tok, {k: v for k, v in tcfg.items() if v is not None}, pre


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("gguf", help="a llama-architecture .gguf file")
    p.add_argument("out_dir", help="the Hugging Face folder to write (created)")
    p.add_argument("--keep-gguf-qk-order", action="store_true",
                   help="leave q_proj/k_proj rows in GGUF's order (a wrong model; for comparison only)")
    args = p.parse_args(argv)
    from safetensors.numpy import save_file

    r = gguf.GGUFReader(args.gguf)
    names = {t.name for t in r.tensors}
    cfg = read_config(r, names)
    tensors, kinds = read_tensors(r, cfg, args.keep_gguf_qk_order)
    tok, tcfg, pre = build_tokenizer(r)
    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    tmp = os.path.join(args.out_dir, "model.safetensors.tmp")
    save_file(tensors, tmp, metadata={"format": "pt"})
    os.replace(tmp, os.path.join(args.out_dir, "model.safetensors"))
    tok.save(os.path.join(args.out_dir, "tokenizer.json"))
    with open(os.path.join(args.out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(tcfg, f, indent=2)
        f.write("\n")
    n = sum(t.size for t in tensors.values())
    src = ", ".join(f"{v} {k}" for k, v in sorted(kinds.items()))
    print(f"gguf_to_hf: {args.out_dir}: {cfg['num_hidden_layers']} layers, hidden {cfg['hidden_size']}, heads "
          f"{cfg['num_attention_heads']}/{cfg['num_key_value_heads']}, MLP {cfg['intermediate_size']}, vocab "
          f"{cfg['vocab_size']}, rope theta {cfg['rope_theta']:g}, tied {cfg['tie_word_embeddings']}: "
          f"{n / 1e6:.1f}M parameters from {src} tensors; tokenizer: byte-level BPE, pre-tokenizer '{pre}', "
          f"{tok.get_vocab_size(with_added_tokens=True)} tokens"
          f"{'; q/k rows LEFT IN GGUF ORDER' if args.keep_gguf_qk_order else ''}")


if __name__ == "__main__":
    main()
