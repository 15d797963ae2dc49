#!/usr/bin/env python3
"""Hugging Face transformers peer of blade's language model (crates/blade-llm/src/lm.rs).

Loads the same GGUF file in transformers (dequantised to float32, as blade does) and times the
workloads of `blade llm bench` on the same token ids, so that the two can be compared on the
same CPU cores:

  greedy_tokens_per_s  greedy generation of N new tokens (default 64) after a P-token prompt
                       (default 32), batch 1, KV cache, prefill included: N / seconds
  sample_tokens_per_s  R sequences (default 16) sampled from the same prompt, N new tokens each,
                       temperature 1 (no top-k, no top-p), KV cache, prefill included:
                       R * N / seconds
  score_tokens_per_s   teacher-forced scoring: one forward pass over a [B, S] batch (default
                       16 x 128), log-softmax over the vocabulary at every position, the
                       log-probability of each next token gathered: B * S / seconds

Generation never stops early: `min_new_tokens = max_new_tokens` masks the end-of-sequence token,
so both sides produce exactly N tokens per sequence.

Token ids are synthetic and need no tokenizer (throughput does not depend on the text): the k-th
id of the stream is `lo + (k * 7919 + 13) % (vocab - lo)` with `lo = min(100, vocab // 2)` (ids
below 100 hold the special tokens of the usual vocabularies). The prompt is ids 0..P of the
stream unless `--prompt-tokens` gives it; row r of the scoring batch is ids P + r*S .. P + (r+1)*S.
`ids_checksum` (the sum of all of them) lets the caller check that both sides read the same ids.

Each workload runs once to warm up, then `--repeats` times; the median is reported.

Output: one JSON object on stdout (progress on stderr). `--quick` is a smoke test (4 new tokens,
2 sequences, a 2 x 16 scoring batch, 1 repeat).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time


def synthetic_ids(start: int, n: int, vocab: int) -> list[int]:
    """Ids start..start+n of the synthetic stream (the same formula as `blade llm bench`)."""
    lo = min(100, vocab // 2)
    return [lo + ((k * 7919 + 13) % (vocab - lo)) for k in range(start, start + n)]


def log(msg: str) -> None:
    print(f"[hf_llm] {msg}", file=sys.stderr, flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--gguf",
        required=True,
        help="the .gguf file (dequantised to float32), or a Hugging Face folder with config.json",
    )
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--prompt-len", type=int, default=32, help="P: synthetic prompt length")
    ap.add_argument(
        "--prompt-tokens",
        type=str,
        default=None,
        help="comma-separated prompt ids (instead of the synthetic prompt of --prompt-len ids)",
    )
    ap.add_argument("--new-tokens", type=int, default=64, help="N: tokens generated per sequence")
    ap.add_argument("--sample-rows", type=int, default=16, help="R: sequences sampled together")
    ap.add_argument("--score-rows", type=int, default=16, help="B: rows of the scoring batch")
    ap.add_argument("--score-len", type=int, default=128, help="S: tokens per scoring row")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per workload (median)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="smoke test: tiny sizes, 1 repeat")
    args = ap.parse_args()
    if args.quick:
        args.new_tokens, args.sample_rows = min(args.new_tokens, 4), min(args.sample_rows, 2)
        args.score_rows, args.score_len, args.repeats = min(args.score_rows, 2), min(args.score_len, 16), 1
    for name in ("new_tokens", "sample_rows", "score_rows", "repeats", "threads"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.score_len < 2:
        ap.error("--score-len must be at least 2 (a token and its successor)")
    if args.temperature <= 0:
        ap.error("--temperature must be positive (greedy decoding is timed apart)")

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.manual_seed(args.seed)

    t_start = time.perf_counter()
    path = os.path.abspath(args.gguf)
    if os.path.isdir(path):  # a Hugging Face folder (config.json, *.safetensors, tokenizer.json)
        folder, files = path, {}
    elif os.path.isfile(path):
        folder, files = os.path.dirname(path), {"gguf_file": os.path.basename(path)}
    else:
        ap.error(f"--gguf {args.gguf}: no such file or folder")
    log(f"loading {path} (float32)")
    t = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **files)
    model.eval()
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **files)
        tokenizer_s = time.perf_counter() - t
    except Exception as e:  # the timing needs no tokenizer: only the decoded text is lost
        log(f"the tokenizer did not load ({e}); going on without it")
        tokenizer, tokenizer_s = None, None
    vocab = model.config.vocab_size
    n_params = sum(p.numel() for p in model.parameters())
    log(f"loaded in {load_s:.1f} s: {n_params / 1e6:.1f} M parameters, vocab {vocab}, {torch.get_num_threads()} threads")

    if args.prompt_tokens:
        prompt = [int(x) for x in args.prompt_tokens.split(",") if x.strip()]
    else:
        prompt = synthetic_ids(0, args.prompt_len, vocab)
    if not prompt:
        ap.error("--prompt-tokens: no ids")
    if max(prompt) >= vocab or min(prompt) < 0:
        ap.error(f"--prompt-tokens: ids must lie in 0..{vocab}")
    P, N, R, B, S = len(prompt), args.new_tokens, args.sample_rows, args.score_rows, args.score_len
    score_ids = [synthetic_ids(P + r * S, S, vocab) for r in range(B)]
    checksum = sum(prompt) + sum(map(sum, score_ids))

    # the whole configuration given, so that the file's generation defaults (top-k, repetition
    # penalty, ...) do not apply; min_new_tokens masks EOS so every run makes exactly N tokens
    common = dict(
        max_new_tokens=N,
        min_new_tokens=N,
        use_cache=True,
        num_beams=1,
        repetition_penalty=1.0,
        pad_token_id=model.config.eos_token_id if model.config.eos_token_id is not None else 0,
        eos_token_id=model.config.eos_token_id,
    )
    greedy_cfg = GenerationConfig(do_sample=False, **common)
    # plain sampling from softmax(logits / T): no top-k (the global default is 50), no top-p
    sample_cfg = GenerationConfig(do_sample=True, temperature=args.temperature, top_k=0, top_p=1.0, **common)

    prompt_t = torch.tensor([prompt], dtype=torch.long)
    prompt_rows = prompt_t.expand(R, P).contiguous()
    score_t = torch.tensor(score_ids, dtype=torch.long)

    def greedy():
        with torch.inference_mode():
            out = model.generate(
                prompt_t, attention_mask=torch.ones_like(prompt_t), generation_config=greedy_cfg
            )
        assert out.shape == (1, P + N), out.shape
        return out[0, P:].tolist()

    def sample():
        with torch.inference_mode():
            out = model.generate(
                prompt_rows, attention_mask=torch.ones_like(prompt_rows), generation_config=sample_cfg
            )
        assert out.shape == (R, P + N), out.shape
        return out[:, P:]

    def score():
        with torch.inference_mode():
            logits = model(score_t, use_cache=False).logits  # [B, S, vocab]
            lp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            return lp.gather(2, score_t[:, 1:].unsqueeze(-1)).squeeze(-1)  # [B, S - 1]

    def timed(what: str, f):
        log(f"{what}: warm-up")
        result = f()
        times = []
        for i in range(args.repeats):
            t = time.perf_counter()
            result = f()
            times.append(time.perf_counter() - t)
            log(f"{what}: run {i + 1}/{args.repeats} {times[-1]:.2f} s")
        return statistics.median(times), times, result

    greedy_s, greedy_times, greedy_tokens = timed("greedy", greedy)
    sample_s, sample_times, sampled = timed("sampling", sample)
    score_s, score_times, lp = timed("scoring", score)
    distinct_rows = len({tuple(r) for r in sampled.tolist()})

    out = {
        "peer": "transformers",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "greedy_tokens_per_s": round(N / greedy_s, 3),
        "sample_tokens_per_s": round(R * N / sample_s, 3),
        "score_tokens_per_s": round(B * S / score_s, 3),
        "greedy_tokens": greedy_tokens,
        "greedy_text": tokenizer.decode(greedy_tokens) if tokenizer is not None else None,
        "sample_distinct_rows": distinct_rows,
        "score_mean_log_prob": round(float(lp.mean()), 6),
        "ids_checksum": checksum,
        "sizes": {
            "prompt_len": P,
            "new_tokens": N,
            "sample_rows": R,
            "temperature": args.temperature,
            "score_rows": B,
            "score_len": S,
            "repeats": args.repeats,
            "vocab": vocab,
            "params": n_params,
        },
        "seconds": {
            "load": round(load_s, 2),
            "tokenizer": None if tokenizer_s is None else round(tokenizer_s, 2),
            "greedy": [round(x, 3) for x in greedy_times],
            "sample": [round(x, 3) for x in sample_times],
            "score": [round(x, 3) for x in score_times],
        },
        "model": path,
        "quick": args.quick,
        "python": platform.python_version(),
        "total_s": round(time.perf_counter() - t_start, 2),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
