#!/usr/bin/env python3
"""Writes the LLM of a converted SPHINX folder (docs/format.md) as a GGUF file that llama.cpp and
wllama load: the same weights, byte for byte where the arithmetic is the same.

  q8 -> Q8_0 (per 32-block: binary16 scale d, 32 int8 codes, value = q * d)
  q4 -> Q4_0 (per 32-block: binary16 scale d, 16 bytes: low nibble = element i, high nibble =
              element i + 16, value = (q - 8) * d)
  f32 -> F32, f16 -> F16

Our blocks keep codes and scales in two regions; GGUF interleaves them per block, so each block's
scale is moved in front of its codes. Nothing is requantized. LLaMA2-Accessory's RoPE rotates
adjacent pairs, which is llama.cpp's LLAMA_ROPE_TYPE_NORM for the `llama` architecture, so wq/wk go
in as they are (no permutation). The tokenizer goes in as a sentencepiece-style (`llama`) vocabulary
with score = -id, which reproduces LLaMA-2's merge order.

usage: to_gguf.py MODEL_DIR OUT.gguf
"""
import json
import os
import sys

import gguf
import numpy as np

BLOCK = 32


def read_tensor(folder, manifest, entry):
    shard = manifest["shards"][entry["shard"]]["file"]
    with open(os.path.join(folder, shard), "rb") as f:
        f.seek(entry["offset"])
        data = f.read(entry["bytes"])
    if len(data) != entry["bytes"]:
        raise SystemExit(f"{shard}: {entry['name']} is cut short")
    return np.frombuffer(data, dtype=np.uint8)


def interleave_blocks(raw, rows, cols, code_bytes):
    """Our [codes region | scales region] -> GGUF's per-block [scale, codes]."""
    if cols % BLOCK:
        raise SystemExit(f"{cols} columns are not whole blocks of {BLOCK}: GGUF cannot hold them")
    nb = cols // BLOCK
    codes = raw[: rows * nb * code_bytes].reshape(rows, nb, code_bytes)
    scales = raw[rows * nb * code_bytes : rows * nb * code_bytes + rows * nb * 2].reshape(rows, nb, 2)
    return np.concatenate([scales, codes], axis=2).reshape(rows, nb * (2 + code_bytes))


def gguf_tensor(raw, entry):
    shape = entry["shape"]
    rows, cols = shape[0], int(np.prod(shape[1:])) if len(shape) > 1 else 1
    q = entry["quant"]
    if len(shape) == 1:
        return raw.view(np.float32) if q == "f32" else raw.view(np.float16).astype(np.float32), None
    if q == "f32":
        return raw.view(np.float32).reshape(rows, cols), None
    if q == "f16":
        return raw.view(np.float16).reshape(rows, cols), None
    if q == "q8":
        return interleave_blocks(raw, rows, cols, BLOCK), gguf.GGMLQuantizationType.Q8_0
    if q == "q4":
        return interleave_blocks(raw, rows, cols, BLOCK // 2), gguf.GGMLQuantizationType.Q4_0
    raise SystemExit(f"{entry['name']}: unknown quant {q}")


NAMES = {
    "llma.tok_embeddings.weight": "token_embd.weight",
    "llma.norm.weight": "output_norm.weight",
    "llma.output.weight": "output.weight",
}
LAYER = {
    "attention_norm.weight": "attn_norm.weight",
    "attention.wq.weight": "attn_q.weight",
    "attention.wk.weight": "attn_k.weight",
    "attention.wv.weight": "attn_v.weight",
    "attention.wo.weight": "attn_output.weight",
    "ffn_norm.weight": "ffn_norm.weight",
    "feed_forward.w1.weight": "ffn_gate.weight",
    "feed_forward.w2.weight": "ffn_down.weight",
    "feed_forward.w3.weight": "ffn_up.weight",
}


def gguf_name(name):
    if name in NAMES:
        return NAMES[name]
    parts = name.split(".")
    if parts[:2] == ["llma", "layers"]:
        rest = ".".join(parts[3:])
        if rest in LAYER:
            return f"blk.{parts[2]}.{LAYER[rest]}"
    return None


def add_tokenizer(w, folder, manifest):
    tok = json.load(open(os.path.join(folder, manifest["tokenizer"]["file"]), encoding="utf-8"))
    vocab = tok["model"]["vocab"]
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    special = {a["content"]: a["id"] for a in tok.get("added_tokens", [])}
    tokens, scores, types = [], [], []
    for piece, i in by_id:
        tokens.append(piece)
        scores.append(-float(i))
        if piece == "<unk>":
            types.append(gguf.TokenType.UNKNOWN)
        elif piece in special or piece in ("<s>", "</s>"):
            types.append(gguf.TokenType.CONTROL)
        elif piece.startswith("<0x") and piece.endswith(">") and len(piece) == 6:
            types.append(gguf.TokenType.BYTE)
        else:
            types.append(gguf.TokenType.NORMAL)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(vocab.get("<s>", 1))
    w.add_eos_token_id(vocab.get("</s>", 2))
    w.add_unk_token_id(vocab.get("<unk>", 0))
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    folder, out = sys.argv[1], sys.argv[2]
    manifest = json.load(open(os.path.join(folder, "manifest.json")))
    llm = manifest["model"]["llm"]
    w = gguf.GGUFWriter(out, "llama")
    w.add_name("sphinx-llm")
    w.add_context_length(4096)
    w.add_embedding_length(llm["dim"])
    w.add_block_count(llm["n_layers"])
    w.add_feed_forward_length(llm["ffn_hidden"])
    w.add_head_count(llm["n_heads"])
    w.add_head_count_kv(llm["n_kv_heads"])
    w.add_rope_dimension_count(llm["head_dim"])
    w.add_layer_norm_rms_eps(llm["norm_eps"])
    w.add_rope_freq_base(llm["rope_theta"])
    w.add_vocab_size(llm["vocab_size"])
    if llm.get("rope_scaling"):
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(1.0 / llm["rope_scaling"])
    add_tokenizer(w, folder, manifest)
    quants = set()
    for entry in manifest["tensors"]:
        name = gguf_name(entry["name"])
        if name is None:
            continue
        data, qtype = gguf_tensor(read_tensor(folder, manifest, entry), entry)
        quants.add(entry["quant"])
        if qtype is None:
            w.add_tensor(name, data)
        else:
            w.add_tensor(name, data, raw_shape=data.shape, raw_dtype=qtype)
    ftype = {"q8": gguf.LlamaFileType.MOSTLY_Q8_0, "q4": gguf.LlamaFileType.MOSTLY_Q4_0, "f16": gguf.LlamaFileType.MOSTLY_F16}
    w.add_file_type(next((ftype[q] for q in ("q4", "q8", "f16") if q in quants), gguf.LlamaFileType.ALL_F32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"{out}: {os.path.getsize(out)} bytes ({', '.join(sorted(quants))})")


if __name__ == "__main__":
    main()
