#!/usr/bin/env python3
"""Independent NumPy reference forward pass for Llama-architecture GGUF models.

Purpose
-------
Produce reference logits for a GGUF checkpoint (e.g. SmolLM2-135M-Instruct
Q4_1) so that a separate (Rust) implementation can be checked against them.
It deliberately shares no code with llama.cpp / transformers: the only
dependencies are ``numpy`` and ``gguf`` (``pip install gguf numpy``), plus the
optional ``tokenizers`` package for the human-readable ``--text`` mode.

Conventions (read these before comparing numbers)
-------------------------------------------------
* Weights.  Tensors are read with ``gguf.GGUFReader`` and dequantised with the
  gguf package's own ``gguf.quants.dequantize(t.data, t.tensor_type)``.  The
  resulting float values are exactly the ones ggml would use for the weight
  (Q4_1: d*q + m, Q8_0: d*q, with f16 scales), stored as float32.
* Shape order.  GGUF/ggml lists dimensions fastest-first: ``ne[0]`` is the
  contiguous axis.  A GGUF shape ``[ne0, ne1]`` is therefore the numpy (C
  order) shape ``(ne1, ne0)``.  A linear layer stored with GGUF shape
  ``[in, out]`` becomes a numpy ``[out, in]`` matrix ``W`` and is applied as
  ``y = x @ W.T`` (exactly like a PyTorch ``nn.Linear.weight``).
  ``token_embd.weight`` has GGUF shape ``[d_model, vocab]`` -> numpy
  ``[vocab, d_model]``: row ``t`` is the embedding of token ``t``.
* Hyper-parameters come from metadata ``{arch}.embedding_length``,
  ``.block_count``, ``.attention.head_count``, ``.attention.head_count_kv``,
  ``.feed_forward_length``, ``.rope.freq_base``,
  ``.attention.layer_norm_rms_epsilon`` (and optionally
  ``.rope.dimension_count``, default head_dim), with
  ``arch = general.architecture`` in {llama, qwen2}.
* Rotary embedding.
    - arch ``llama``: llama.cpp "normal" mode, i.e. rotate ADJACENT pairs
      ``(x[2i], x[2i+1])`` by angle ``pos * base**(-2i/n_rot)``,
      ``i = 0 .. n_rot/2-1``.  HF Llama checkpoints use the "rotate_half"
      (NeoX) layout, but llama.cpp's convert_hf_to_gguf.py PERMUTES the rows of
      attn_q / attn_k when writing the GGUF so that adjacent-pair rotation on
      the GGUF weights is mathematically identical to HF's rotate_half on the
      original weights.  So: on GGUF weights, use adjacent pairs.  (Using
      rotate-half here would be a bug and produces garbage text.)
    - arch ``qwen2``: llama.cpp "NeoX" mode (no permutation in the converter):
      rotate halves ``(x[i], x[i + n_rot/2])`` with the same angles.
    Dimensions beyond n_rot (if rope.dimension_count < head_dim) pass through.
    Scaling, as llama.cpp applies it: ``rope.scaling.type = linear`` divides
    every angle by ``rope.scaling.factor``; a ``rope_freqs.weight`` tensor (the
    Llama 3.1+ frequency factors) divides the angle of pair i by its entry i.
  Positions are 0, 1, 2, ... for the given token sequence (no BOS is added;
  pass exactly the ids you want).
* Block (pre-norm):
    h  = x + Wo @ Attn(RoPE(Wq n1), RoPE(Wk n1), Wv n1),  n1 = RMSNorm(x)*w_attn
    x' = h + Wdown @ (silu(Wgate n2) * (Wup n2)),          n2 = RMSNorm(h)*w_ffn
  RMSNorm(x) = x / sqrt(mean(x^2) + eps).  (qwen2: q/k/v biases
  ``blk.N.attn_{q,k,v}.bias`` are added if present.)
  Attention: grouped-query, query head h uses KV head ``h // (n_head /
  n_head_kv)`` (same as llama.cpp broadcasting and HF repeat_kv), scores
  scaled by 1/sqrt(head_dim), causal mask, softmax in the compute dtype.
* Output: ``x = RMSNorm(x) * output_norm.weight``; ``logits = x @ W_out.T``
  with W_out = ``output.weight`` or, if absent (tied embeddings, as in
  SmolLM2), ``token_embd.weight``.
* Precision: the forward pass runs in float64 by default (``--dtype
  float64``): dequantised weights are exact in float32 and are upcast, and all
  activations / accumulations are float64.  This makes the reference the
  "exact" result for the given quantised weights; an f32 implementation should
  differ only by f32 rounding.  ``--dtype float32`` is available to mimic an
  all-f32 implementation.  Activation quantisation (as llama.cpp does for
  Q4_1 x Q8_1 dot products) is NOT modelled.

CLI
---
  python3 scripts/llm_reference.py --gguf FILE --tokens 1,2,3 --out ref.json [--greedy N]
  python3 scripts/llm_reference.py --gguf FILE --text "<|im_start|>user\\n...<|im_end|>\\n" --greedy 16
  python3 scripts/llm_reference.py --compare ours.json --ref ref.json [--atol X] [--rtol Y]
  python3 scripts/llm_reference.py --compare ours.json --gguf FILE [--tokens ...]

Output JSON: {"tokens", "logits_last" (vocab floats of the last position),
"logits_all_argmax" (argmax per position), "top5_last" ([[id, logit], ...]),
"greedy" (N greedy ids continuing the prompt; full forward recomputed per
step), plus informational "config", "dtype", "forward_seconds"}.

Compare mode: ``ours.json`` must have "logits_last" (and optionally "tokens",
"logits_all_argmax").  The reference comes from ``--ref REF.json`` or is
computed from ``--gguf`` with ``--tokens`` (or ours' "tokens").  It reports max
abs diff, max rel diff, cosine similarity, argmax agreement and top-5 set
agreement, and exits 1 if any |ours-ref| > atol + rtol*|ref| or the argmax
differs.  Default atol = 1e-2 * max|ref logit| (about 0.2 for SmolLM2, whose
logits are O(20)); default rtol = 0.  A correct f32 implementation on
dequantised weights typically lands around 1e-4..1e-3 absolute, so the default
is loose enough for f32 accumulation-order noise (and most Q8 activation
quantisation) while still catching real bugs (wrong rope mode, wrong GQA
mapping, wrong norm, transposed weights all give O(1..10) differences and/or
a different argmax).  Tighten with --atol for a pure-f32 implementation.
"""

import argparse
import json
import sys
import time

import numpy as np

try:
    import gguf
    import gguf.quants
except ImportError:  # pragma: no cover
    gguf = None


# --------------------------------------------------------------------------
# GGUF loading
# --------------------------------------------------------------------------

def _field_value(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    # scalar: data holds one index into parts
    if len(f.types) == 1 and f.types[0] == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    if len(f.types) == 1:
        return f.parts[f.data[0]].tolist()[0]
    # arrays
    if f.types[0] == gguf.GGUFValueType.ARRAY and len(f.types) > 1 and f.types[1] == gguf.GGUFValueType.STRING:
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
    return [f.parts[i].tolist()[0] for i in f.data]


def load_gguf(path, dtype=np.float64):
    """Return (config dict, weights dict name->np.ndarray[numpy order], reader)."""
    if gguf is None:
        sys.exit("error: the 'gguf' package is required (pip install gguf numpy)")
    r = gguf.GGUFReader(path)
    arch = _field_value(r, "general.architecture")
    if arch not in ("llama", "qwen2"):
        print(f"warning: architecture {arch!r} not explicitly supported; treating as llama",
              file=sys.stderr)

    def kv(name, default=None, required=True):
        v = _field_value(r, f"{arch}.{name}", default)
        if v is None and required:
            sys.exit(f"error: missing metadata key {arch}.{name}")
        return v

    d = int(kv("embedding_length"))
    n_head = int(kv("attention.head_count"))
    cfg = {
        "arch": arch,
        "d_model": d,
        "n_layer": int(kv("block_count")),
        "n_head": n_head,
        "n_head_kv": int(kv("attention.head_count_kv", n_head)),
        "d_ff": int(kv("feed_forward_length")),
        "rope_base": float(kv("rope.freq_base", 10000.0)),
        "eps": float(kv("attention.layer_norm_rms_epsilon")),
        "head_dim": d // n_head,
    }
    cfg["n_rot"] = int(kv("rope.dimension_count", cfg["head_dim"], required=False))
    cfg["rope_mode"] = "neox" if arch == "qwen2" else "normal"
    # rotary scaling as llama.cpp applies it: linear scaling multiplies every angle by
    # 1 / rope.scaling.factor; a rope_freqs.weight tensor ("frequency factors", written by the
    # converter for Llama 3.1+) divides angle i by factor i
    stype = kv("rope.scaling.type", "none", required=False)
    if stype not in ("none", "linear"):
        sys.exit(f"error: rope scaling {stype!r} is not modelled here")
    cfg["rope_linear"] = float(kv("rope.scaling.factor", 1.0, required=False)) \
        if stype == "linear" else 1.0

    weights = {}
    for t in r.tensors:
        a = gguf.quants.dequantize(t.data, t.tensor_type)
        np_shape = tuple(int(x) for x in reversed(t.shape.tolist()))  # ne[0] fastest
        a = np.asarray(a, dtype=np.float32).reshape(np_shape)
        weights[t.name] = a.astype(dtype, copy=False)
    cfg["vocab"] = weights["token_embd.weight"].shape[0]
    cfg["tied_output"] = "output.weight" not in weights
    ff = weights.get("rope_freqs.weight")
    cfg["rope_freq_factors"] = None if ff is None else np.asarray(ff, np.float64).reshape(-1)
    return cfg, weights, r


# --------------------------------------------------------------------------
# Forward pass
# --------------------------------------------------------------------------

def rms_norm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope_tables(n_pos, n_rot, base, dtype, linear=1.0, freq_factors=None):
    i = np.arange(n_rot // 2, dtype=np.float64)
    inv_freq = base ** (-2.0 * i / n_rot) / linear             # theta_i
    if freq_factors is not None:
        assert freq_factors.shape == inv_freq.shape, (freq_factors.shape, inv_freq.shape)
        inv_freq = inv_freq / freq_factors
    ang = np.arange(n_pos, dtype=np.float64)[:, None] * inv_freq[None, :]
    return np.cos(ang).astype(dtype), np.sin(ang).astype(dtype)  # [T, n_rot/2]


def apply_rope(x, cos, sin, n_rot, mode):
    """x: [T, H, head_dim]; cos/sin: [T, n_rot/2]."""
    out = x.copy()
    c = cos[:, None, :]
    s = sin[:, None, :]
    if mode == "normal":        # adjacent pairs (x[2i], x[2i+1])
        x0 = x[..., 0:n_rot:2]
        x1 = x[..., 1:n_rot:2]
        out[..., 0:n_rot:2] = x0 * c - x1 * s
        out[..., 1:n_rot:2] = x0 * s + x1 * c
    else:                       # neox: halves (x[i], x[i + n_rot/2])
        h = n_rot // 2
        x0 = x[..., :h]
        x1 = x[..., h:n_rot]
        out[..., :h] = x0 * c - x1 * s
        out[..., h:n_rot] = x0 * s + x1 * c
    return out


def silu(x):
    return x / (1.0 + np.exp(-x))


def forward(cfg, W, tokens, dtype=np.float64):
    """Return logits [T, vocab] for the token sequence (positions 0..T-1)."""
    tokens = np.asarray(tokens, dtype=np.int64)
    T = len(tokens)
    d, H, Hkv, hd = cfg["d_model"], cfg["n_head"], cfg["n_head_kv"], cfg["head_dim"]
    group = H // Hkv
    eps = cfg["eps"]
    cos, sin = rope_tables(T, cfg["n_rot"], cfg["rope_base"], dtype,
                           cfg.get("rope_linear", 1.0), cfg.get("rope_freq_factors"))
    mask = np.triu(np.full((T, T), -np.inf, dtype=dtype), k=1)   # causal
    scale = 1.0 / np.sqrt(hd)   # python float: keeps the array dtype

    x = W["token_embd.weight"][tokens].astype(dtype)              # [T, d]
    for l in range(cfg["n_layer"]):
        p = f"blk.{l}."
        n1 = rms_norm(x, W[p + "attn_norm.weight"], eps)
        q = n1 @ W[p + "attn_q.weight"].T
        k = n1 @ W[p + "attn_k.weight"].T
        v = n1 @ W[p + "attn_v.weight"].T
        if p + "attn_q.bias" in W:
            q = q + W[p + "attn_q.bias"]
        if p + "attn_k.bias" in W:
            k = k + W[p + "attn_k.bias"]
        if p + "attn_v.bias" in W:
            v = v + W[p + "attn_v.bias"]
        q = apply_rope(q.reshape(T, H, hd), cos, sin, cfg["n_rot"], cfg["rope_mode"])
        k = apply_rope(k.reshape(T, Hkv, hd), cos, sin, cfg["n_rot"], cfg["rope_mode"])
        v = v.reshape(T, Hkv, hd)
        # GQA: query head h -> kv head h // group
        kh = np.repeat(k, group, axis=1).transpose(1, 0, 2)   # [H, T, hd]
        vh = np.repeat(v, group, axis=1).transpose(1, 0, 2)
        qh = q.transpose(1, 0, 2)                              # [H, T, hd]
        s = (qh @ kh.transpose(0, 2, 1)) * scale + mask        # [H, T, T]
        s = s - s.max(axis=-1, keepdims=True)
        e = np.exp(s)
        a = e / e.sum(axis=-1, keepdims=True)
        o = (a @ vh).transpose(1, 0, 2).reshape(T, H * hd)     # [T, d]
        attn = o @ W[p + "attn_output.weight"].T
        if p + "attn_output.bias" in W:
            attn = attn + W[p + "attn_output.bias"]
        x = x + attn
        n2 = rms_norm(x, W[p + "ffn_norm.weight"], eps)
        g = n2 @ W[p + "ffn_gate.weight"].T
        u = n2 @ W[p + "ffn_up.weight"].T
        x = x + (silu(g) * u) @ W[p + "ffn_down.weight"].T
    x = rms_norm(x, W["output_norm.weight"], eps)
    W_out = W.get("output.weight", W["token_embd.weight"])
    return x @ W_out.T


# --------------------------------------------------------------------------
# Optional tokenizer (only for --text, human sanity checks)
# --------------------------------------------------------------------------

def build_tokenizer(reader):
    try:
        from tokenizers import Tokenizer, models, pre_tokenizers, decoders, AddedToken
    except ImportError:
        sys.exit("error: --text needs the 'tokenizers' package (pip install tokenizers)")
    toks = _field_value(reader, "tokenizer.ggml.tokens")
    merges = _field_value(reader, "tokenizer.ggml.merges")
    types = _field_value(reader, "tokenizer.ggml.token_type") or [1] * len(toks)
    vocab = {t: i for i, t in enumerate(toks)}
    merge_pairs = [tuple(m.split(" ", 1)) for m in merges]
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merge_pairs, fuse_unk=False))
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tk.decoder = decoders.ByteLevel()
    # token_type 3 = CONTROL, 4 = USER_DEFINED  (e.g. <|im_start|>, <|im_end|>)
    special = [AddedToken(t, special=True, normalized=False)
               for t, ty in zip(toks, types) if ty in (3, 4)]
    tk.add_special_tokens(special)
    return tk


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------

def topk(logits, k=5):
    idx = np.argsort(-logits, kind="stable")[:k]
    return [[int(i), float(logits[i])] for i in idx]


def run_reference(cfg, W, tokens, n_greedy, dtype):
    t0 = time.perf_counter()
    logits = forward(cfg, W, tokens, dtype)
    t_fwd = time.perf_counter() - t0
    res = {
        "tokens": [int(t) for t in tokens],
        "logits_last": [float(v) for v in logits[-1]],
        "logits_all_argmax": [int(i) for i in logits.argmax(axis=-1)],
        "top5_last": topk(logits[-1], 5),
        "greedy": [],
        "config": cfg,
        "dtype": np.dtype(dtype).name,
        "forward_seconds": t_fwd,
    }
    seq = list(tokens)
    nxt = int(logits[-1].argmax())
    for step in range(n_greedy):
        res["greedy"].append(nxt)
        seq.append(nxt)
        if step + 1 < n_greedy:
            nxt = int(forward(cfg, W, seq, dtype)[-1].argmax())
    return res


def compare(ours, ref, atol, rtol):
    a = np.asarray(ours["logits_last"], dtype=np.float64)
    b = np.asarray(ref["logits_last"], dtype=np.float64)
    ok = True
    if a.shape != b.shape:
        print(f"FAIL: shape mismatch ours {a.shape} vs ref {b.shape}")
        return False
    if "tokens" in ours and "tokens" in ref and list(ours["tokens"]) != list(ref["tokens"]):
        print("FAIL: token sequences differ between ours and ref")
        ok = False
    maxref = float(np.abs(b).max())
    if atol is None:
        atol = 1e-2 * maxref
    diff = np.abs(a - b)
    rel = diff / np.maximum(np.abs(b), 1e-6)
    cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-300))
    i_max = int(diff.argmax())
    am_a, am_b = int(a.argmax()), int(b.argmax())
    t5a = [i for i, _ in topk(a)]
    t5b = [i for i, _ in topk(b)]
    n_bad = int((diff > atol + rtol * np.abs(b)).sum())
    print(f"vocab={a.size}  max|ref|={maxref:.4f}")
    print(f"max abs diff   = {diff.max():.6g}  (at id {i_max}: ours {a[i_max]:.6g} ref {b[i_max]:.6g})")
    print(f"mean abs diff  = {diff.mean():.6g}")
    print(f"max rel diff   = {rel.max():.6g}  (|d|/max(|ref|,1e-6); max abs diff / max|ref| = {diff.max() / maxref:.3g})")
    print(f"cosine sim     = {cos:.9f}")
    print(f"argmax         ours={am_a} ref={am_b}  {'agree' if am_a == am_b else 'DIFFER'}")
    print(f"top5 ours      {t5a}")
    print(f"top5 ref       {t5b}  sets {'agree' if set(t5a) == set(t5b) else 'DIFFER'}"
          f"{' (same order)' if t5a == t5b else ''}")
    if "logits_all_argmax" in ours and "logits_all_argmax" in ref:
        pa, pb = ours["logits_all_argmax"], ref["logits_all_argmax"]
        if len(pa) == len(pb):
            agree = sum(int(x == y) for x, y in zip(pa, pb))
            print(f"per-position argmax agreement: {agree}/{len(pa)} (informational)")
    print(f"tolerance: |ours-ref| <= atol({atol:.4g}) + rtol({rtol:g})*|ref|  -> {n_bad} violations")
    if n_bad:
        ok = False
    if am_a != am_b:
        ok = False
    print("PASS" if ok else "FAIL")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", help="GGUF model file")
    ap.add_argument("--tokens", help="comma-separated token ids")
    ap.add_argument("--text", help="prompt text, tokenised with a BPE built from the GGUF "
                    "(needs 'tokenizers'); special tokens like <|im_start|> are recognised; "
                    "'\\n' escapes are interpreted")
    ap.add_argument("--out", help="write reference JSON here")
    ap.add_argument("--greedy", type=int, default=0, help="greedy continuation length")
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    ap.add_argument("--compare", metavar="OURS_JSON", help="compare this JSON's logits_last to the reference")
    ap.add_argument("--ref", metavar="REF_JSON", help="reference JSON for --compare (else computed from --gguf)")
    ap.add_argument("--atol", type=float, default=None, help="default 1e-2 * max|ref logit|")
    ap.add_argument("--rtol", type=float, default=0.0)
    args = ap.parse_args()
    dtype = np.float64 if args.dtype == "float64" else np.float32

    ours = None
    if args.compare:
        with open(args.compare) as fh:
            ours = json.load(fh)
        if args.ref:
            with open(args.ref) as fh:
                ref = json.load(fh)
            sys.exit(0 if compare(ours, ref, args.atol, args.rtol) else 1)

    if not args.gguf:
        ap.error("--gguf is required (or --compare with --ref)")
    t0 = time.perf_counter()
    cfg, W, reader = load_gguf(args.gguf, dtype)
    print(f"loaded {args.gguf} in {time.perf_counter() - t0:.2f}s: "
          + ", ".join(f"{k}={v}" for k, v in cfg.items()), file=sys.stderr)

    tk = None
    if args.text is not None:
        tk = build_tokenizer(reader)
        text = args.text.replace("\\n", "\n").replace("\\t", "\t")
        tokens = tk.encode(text, add_special_tokens=False).ids
    elif args.tokens:
        tokens = [int(t) for t in args.tokens.replace(" ", "").split(",") if t]
    elif ours is not None and "tokens" in ours:
        tokens = list(ours["tokens"])
    else:
        ap.error("need --tokens or --text (or a 'tokens' key in the --compare JSON)")
    if not tokens:
        ap.error("empty token sequence")
    if max(tokens) >= cfg["vocab"] or min(tokens) < 0:
        ap.error(f"token id out of range [0, {cfg['vocab']})")

    res = run_reference(cfg, W, tokens, args.greedy, dtype)
    print(f"tokens ({len(tokens)}): {','.join(map(str, tokens))}", file=sys.stderr)
    print(f"forward pass ({len(tokens)} tokens, {res['dtype']}): {res['forward_seconds']:.3f}s",
          file=sys.stderr)
    print(f"top5_last: {res['top5_last']}", file=sys.stderr)
    if args.greedy:
        print(f"greedy: {res['greedy']}", file=sys.stderr)
    if tk is not None:
        print("prompt decoded : " + repr(tk.decode(tokens, skip_special_tokens=False)), file=sys.stderr)
        if args.greedy:
            print("greedy decoded : " + repr(tk.decode(res["greedy"], skip_special_tokens=False)),
                  file=sys.stderr)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(res, fh)
        print(f"wrote {args.out}", file=sys.stderr)
    if ours is not None:
        sys.exit(0 if compare(ours, res, args.atol, args.rtol) else 1)


if __name__ == "__main__":
    main()
