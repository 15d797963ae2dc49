#!/usr/bin/env python3
"""PyTorch peer of blade's item-level policy `ItemLm` (crates/blade-core/src/policy/item_lm.rs).

The same model, written the way one would in plain PyTorch, timed on the same workloads as
`blade bench` and blade's SFT, so that the two can be compared on the same CPU cores:

  rollout_lists_per_s    B=32 prompts x G=16 lists of K=10, sampled slot by slot (temperature 1,
                         restricted softmax), full re-forward of the prefix each slot, no KV cache
  align_step_s           one GRPO-style step: rollout B=32 x G=8, stand-in rewards, group-normalised
                         advantages, reference log-probs, 2 inner epochs of clipped surrogate + k3 KL
                         (beta 0.05), backward, Adam; dropout 0 (blade aligns without dropout)
  sft_epoch_s            one epoch of next-item SFT over N windows, batches of 256, AdamW, dropout on
  full_rank_users_per_s  whole-catalogue scores at the first list slot for 943 users, top-10 without
                         the history

Inputs are synthetic (throughput does not depend on the weights or the data): item ids uniform
in the catalogue, histories of L distinct items, exclusion = the history.

Token layout of one prompt (L = history length, K = list length), as in blade:

    slot:   0 .. L-1                 L      L+1 .. L+K-1
    token:  [PAD..PAD h_1 .. h_n]    SEP    y_1 .. y_{K-1}

Output: one JSON object on stdout. `--quick` is a smoke test (tiny repetitions, plus the
consistency checks of `--check`).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# blade's additive logit mask for disallowed items (item_lm.rs MASK_VALUE)
MASK_VALUE = -1.0e9


class ItemLm(nn.Module):
    """Decoder-only transformer over item tokens; vocabulary = items, then PAD, then SEP."""

    def __init__(
        self,
        num_items: int,
        max_history: int = 10,
        max_list: int = 10,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 2,
        d_ff: int = 256,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.num_items = num_items
        self.max_history = max_history
        self.max_list = max_list
        self.n_heads = n_heads
        self.pad_token = num_items
        self.sep_token = num_items + 1
        self.item_emb = nn.Embedding(num_items + 2, d_model)
        self.pos_emb = nn.Embedding(max_history + max_list, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model,
            n_heads,
            dim_feedforward=d_ff,
            dropout=dropout,
            activation="gelu",  # burn's default FFN activation (exact, erf-based GELU)
            layer_norm_eps=1e-5,
            batch_first=True,
            norm_first=True,  # pre-norm, as blade's `.with_norm_first(true)`
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model, eps=1e-5)  # final norm before the head
        self.head = nn.Linear(d_model, num_items)  # untied, with bias (burn Linear default)
        self._causal: dict[int, torch.Tensor] = {}

    def causal_mask(self, seq: int) -> torch.Tensor:
        m = self._causal.get(seq)
        if m is None:
            m = nn.Transformer.generate_square_subsequent_mask(seq)
            self._causal[seq] = m
        return m

    def forward_hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """[N, S] token ids -> [N, S, d_model] hidden states (after the final norm)."""
        n, seq = tokens.shape
        pos = torch.arange(seq, device=tokens.device)
        x = self.item_emb(tokens) + self.pos_emb(pos)
        pad = tokens == self.pad_token
        causal = self.causal_mask(seq)
        if bool(pad.any()):
            # Left padding: a padded query sees only padded keys. A fully masked row is NaN in
            # PyTorch (the inference fast path turns even finite float masks into -inf), and the
            # NaN leaks through the values; burn masks with a finite -1e4 instead. Here each query
            # may always see itself: padded rows then stay finite and real rows are unchanged.
            blocked = causal.isinf().unsqueeze(0) | pad.unsqueeze(1)  # [N, S, S]
            blocked &= ~torch.eye(seq, dtype=torch.bool, device=tokens.device)
            attn = blocked.repeat_interleave(self.n_heads, dim=0)  # [N * heads, S, S]
            h = self.encoder(x, mask=attn)
        else:
            h = self.encoder(x, mask=causal, is_causal=True)
        return self.norm(h)

    def prompt_tokens(self, hist: torch.Tensor, lists: torch.Tensor) -> torch.Tensor:
        """`[history (left-padded, L), SEP, lists]`; hist [N, L], lists [N, j]."""
        sep = torch.full((hist.size(0), 1), self.sep_token, dtype=hist.dtype, device=hist.device)
        return torch.cat([hist, sep, lists], dim=1)

    def list_logits(self, hist: torch.Tensor, lists: torch.Tensor) -> torch.Tensor:
        """Logits of every list slot: [N, j + 1, num_items] (slot i = distribution of y_{i+1})."""
        h = self.forward_hidden(self.prompt_tokens(hist, lists))
        return self.head(h[:, self.max_history :])

    def next_logits(self, hist: torch.Tensor, lists: torch.Tensor) -> torch.Tensor:
        """Logits of the next slot only: [N, num_items]."""
        h = self.forward_hidden(self.prompt_tokens(hist, lists))
        return self.head(h[:, -1])


def exclusion_mask(hist: torch.Tensor, num_items: int) -> torch.Tensor:
    """[N, V] bool: the history items (PAD ignored)."""
    m = torch.zeros(hist.size(0), num_items + 1, dtype=torch.bool)
    m.scatter_(1, hist.clamp_max(num_items), True)
    return m[:, :num_items]


@torch.no_grad()
def sample_lists(model: ItemLm, hist, excl, g: int, k: int, temperature: float = 1.0):
    """G lists of K distinct items per prompt with the restricted softmax; returns the lists
    [B*G, K] and their log-probabilities under the policy [B*G] (temperature 1 as in blade)."""
    model.eval()
    hist = hist.repeat_interleave(g, dim=0)
    blocked = excl.repeat_interleave(g, dim=0).clone()
    n = hist.size(0)
    lists = torch.empty(n, 0, dtype=torch.long)
    logp = torch.zeros(n)
    for _ in range(k):
        logits = model.next_logits(hist, lists).masked_fill(blocked, float("-inf"))
        lp = torch.log_softmax(logits, dim=-1)
        if temperature == 1.0:
            probs = lp.exp()
        else:
            probs = torch.softmax(logits / temperature, dim=-1)
        item = torch.multinomial(probs, 1)
        logp += lp.gather(1, item).squeeze(1)
        blocked.scatter_(1, item, True)
        lists = torch.cat([lists, item], dim=1)
    return lists, logp


def restricted_log_probs(model: ItemLm, hist, excl, lists) -> torch.Tensor:
    """Teacher-forced log-probability of whole lists [N] in one forward of
    `[history, SEP, y_1 .. y_{K-1}]`: slot j may not take excluded items nor y_1 .. y_j."""
    n, k = lists.shape
    v = model.num_items
    logits = model.list_logits(hist, lists[:, : k - 1])  # [N, K, V]
    earlier = torch.ones(k, k).tril(-1)  # [j, i] = 1 where i < j
    prev = torch.zeros(n, k, v).scatter_add_(
        2, lists.unsqueeze(1).expand(n, k, k), earlier.expand(n, k, k)
    )
    mask = excl.unsqueeze(1) | (prev > 0)
    logp = torch.log_softmax(logits.masked_fill(mask, MASK_VALUE), dim=-1)
    return logp.gather(2, lists.unsqueeze(2)).squeeze(2).sum(1)


def group_advantages(rewards: torch.Tensor, g: int, eps: float = 1e-3) -> torch.Tensor:
    """(r - group mean) / (group population std + eps), blade's `AdvantageScaling::Group`."""
    r = rewards.view(-1, g)
    return ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True, unbiased=False) + eps)).view(-1)


def align_step(policy, reference, opt, hist, excl, g, k, inner_epochs=2, clip=0.2, beta=0.05):
    """One alignment step as blade's trainer runs it (defaults of OptimConfig: sequence-level
    ratio, clip 0.2/0.2, k3 KL, beta 0.05, no grad clipping, group advantages, eps 1e-3)."""
    lists, old_logp = sample_lists(policy, hist, excl, g, k)
    rewards = torch.rand(lists.size(0))  # stand-in for the list reward (ndcg@10 in blade)
    adv = group_advantages(rewards, g)
    hist_r = hist.repeat_interleave(g, dim=0)
    excl_r = excl.repeat_interleave(g, dim=0)
    with torch.no_grad():
        ref_logp = restricted_log_probs(reference, hist_r, excl_r, lists)
    policy.train()  # the autograd path; the copies have dropout 0, so nothing is dropped
    params = [p for p in policy.parameters() if p.requires_grad]
    stats = {}
    for _ in range(inner_epochs):
        new_logp = restricted_log_probs(policy, hist_r, excl_r, lists)
        ratio = (new_logp - old_logp).clamp(-20.0, 20.0).exp()
        surrogate = torch.min(ratio * adv, ratio.clamp(1.0 - clip, 1.0 + clip) * adv)
        main = -surrogate.mean()
        d = (ref_logp - new_logp).clamp(-20.0, 20.0)
        kl = (d.exp() - d - 1.0).mean()
        loss = main + beta * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        # blade records the global gradient norm every update (max_grad_norm = None: no scaling)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, float("inf"))
        opt.step()
        # blade reads the loss, KL and clip statistics back every update
        stats = {
            "loss": loss.item(),
            "kl": kl.item(),
            "clip_frac": ((ratio - 1.0).abs() > clip).float().mean().item(),
            "grad_norm": grad_norm.item(),
        }
    return stats


def sft_epoch(model, opt, hist, targets, batch_size, gen):
    """One epoch of next-item SFT: every window is taught its next K items at the K slots,
    cross-entropy over all slots (plain softmax, as blade's `ItemLm::cross_entropy`)."""
    model.train()
    n, k = targets.shape
    v = model.num_items
    order = torch.randperm(n, generator=gen)
    last = float("nan")
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        t = targets[idx]
        logits = model.list_logits(hist[idx], t[:, : k - 1])  # [b, K, V]
        loss = F.cross_entropy(logits.reshape(-1, v), t.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        last = loss.item()  # burn-train's loss metric reads every batch back
    return last


@torch.no_grad()
def full_rank(model, hist, excl, batch_size, top=10):
    """First-slot scores of the whole catalogue and the top-10 per user without the history."""
    model.eval()
    out = []
    for start in range(0, hist.size(0), batch_size):
        h = hist[start : start + batch_size]
        scores = model.next_logits(h, torch.empty(h.size(0), 0, dtype=torch.long))
        scores = scores.masked_fill(excl[start : start + batch_size], float("-inf"))
        out.append(scores.topk(top, dim=1).indices)
    return torch.cat(out)


def kernel_timings(rows: int, d: int, vocab: int, ff: int) -> dict:
    """Single operations at one alignment pass's sizes (rows = B x G x K list slots), median
    seconds of 7 calls after a warm-up: the output head [rows, d] x [d, vocab], its two
    backward products, exp and log_softmax over the logits, GELU over [2 * rows, ff]
    activations."""
    x, w = torch.randn(rows, d), torch.randn(d, vocab)
    g, h = torch.randn(rows, vocab), torch.randn(2 * rows, ff)

    def time_it(f):
        f()
        v = []
        for _ in range(7):
            t = time.perf_counter()
            f()
            v.append(time.perf_counter() - t)
        return sorted(v)[3]

    with torch.no_grad():
        return {
            "head_forward_s": time_it(lambda: x @ w),
            "head_backward_s": time_it(lambda: (g @ w.t(), x.t() @ g)),
            "exp_s": time_it(lambda: g.exp()),
            "gelu_s": time_it(lambda: F.gelu(h)),
            "log_softmax_s": time_it(lambda: torch.log_softmax(g, dim=1)),
        }


def random_histories(n: int, num_items: int, length: int, gen) -> torch.Tensor:
    """[n, length] distinct item ids per row, uniform over the catalogue."""
    rows = []
    for start in range(0, n, 4096):
        m = min(4096, n - start)
        rows.append(torch.rand(m, num_items, generator=gen).topk(length, dim=1).indices)
    return torch.cat(rows)


def checks(args) -> list[str]:
    """Consistency checks on a small model: returns the failures (empty = all good)."""
    fails = []
    gen = torch.Generator().manual_seed(7)
    v, L, K = 50, args.history_len, min(args.list_len, 5)
    m = ItemLm(v, L, K, 16, 2, 2, 32, 0.1)
    hist = random_histories(6, v, L, gen)
    hist[0, :4] = m.pad_token  # left-padded, shorter histories
    hist[1, : L - 1] = m.pad_token
    excl = exclusion_mask(hist, v)
    lists, logp = sample_lists(m, hist, excl, 3, K)
    h3, e3 = hist.repeat_interleave(3, 0), excl.repeat_interleave(3, 0)
    if not bool(torch.isfinite(logp).all()):
        fails.append("sampling log-probs are not finite")
    if any(len(set(r.tolist())) != K for r in lists):
        fails.append("a sampled list repeats an item")
    if bool((e3.gather(1, lists)).any()):
        fails.append("a sampled list holds an excluded item")
    m.eval()
    with torch.no_grad():
        tf = restricted_log_probs(m, h3, e3, lists)
    err = (tf - logp).abs().max().item()
    if err > 1e-3:
        fails.append(f"teacher-forced log-prob differs from the sampling one by {err:.2e}")
    # the inference fast path (no grad) agrees with the autograd path
    with torch.enable_grad():
        slow = m.list_logits(h3, lists[:, : K - 1])
    with torch.no_grad():
        fast = m.list_logits(h3, lists[:, : K - 1])
    err = (slow - fast).abs().max().item()
    if not math.isfinite(err) or err > 1e-4:
        fails.append(f"fast-path and autograd logits differ by {err:.2e}")
    # causality: a later list item does not change earlier slots
    with torch.no_grad():
        a = m.list_logits(h3, lists[:, : K - 1])
        changed = lists.clone()
        changed[:, K - 2] = (changed[:, K - 2] + 1) % v
        b = m.list_logits(h3, changed[:, : K - 1])
    err = (a[:, : K - 1] - b[:, : K - 1]).abs().max().item()
    if err > 1e-5:
        fails.append(f"causal mask leaks: earlier slots moved by {err:.2e}")
    # training mode (dropout) stays finite with padding
    m.train()
    out = restricted_log_probs(m, h3, e3, lists)
    if not bool(torch.isfinite(out).all()):
        fails.append("training-mode log-probs are not finite with left padding")
    return fails


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=1349, help="catalogue size (ML-100K after 5-core)")
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--d-ff", type=int, default=256)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--history-len", type=int, default=10, help="L")
    ap.add_argument("--list-len", type=int, default=10, help="K")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--sft-windows", type=int, default=20000)
    ap.add_argument("--sft-batch", type=int, default=256)
    ap.add_argument("--sft-lr", type=float, default=1e-3)
    ap.add_argument("--align-lr", type=float, default=5e-4, help="blade's OptimConfig default")
    ap.add_argument("--prompts", type=int, default=32, help="B of rollouts and alignment steps")
    ap.add_argument("--users", type=int, default=943, help="users of the full-ranking pass")
    ap.add_argument("--eval-batch", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--kernel-rows", type=int, default=2560, help="rows of the kernel timings (B x G x K)"
    )
    ap.add_argument("--quick", action="store_true", help="tiny repetitions (smoke test) + --check")
    ap.add_argument("--check", action="store_true", help="only run the consistency checks")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    if args.check or args.quick:
        fails = checks(args)
        for f in fails:
            print(f"check failed: {f}", file=sys.stderr)
        print(f"checks: {'ok' if not fails else f'{len(fails)} failed'}", file=sys.stderr)
        if fails:
            return 1
        if args.check:
            return 0

    V, L, K, B = args.items, args.history_len, args.list_len, args.prompts
    rollout_g, align_g, inner = 16, 8, 2
    reps = 1 if args.quick else 3
    align_steps = 1 if args.quick else 5
    sft_windows = min(args.sft_windows, 1024) if args.quick else args.sft_windows
    t_start = time.perf_counter()

    model = ItemLm(V, L, K, args.d_model, args.layers, args.heads, args.d_ff, args.dropout)
    n_params = sum(p.numel() for p in model.parameters())

    # rollout throughput: B x G = 16 lists of K
    hist = random_histories(B, V, L, gen)
    excl = exclusion_mask(hist, V)
    sample_lists(model, hist, excl, rollout_g, K)  # warm-up
    t = time.perf_counter()
    lists = 0
    for _ in range(reps):
        lists += sample_lists(model, hist, excl, rollout_g, K)[0].size(0)
    rollout_lists_per_s = lists / (time.perf_counter() - t)

    # one alignment step: policy (trained copy) + frozen reference, both with dropout 0 as
    # blade's `AlignPolicy::load_run` builds them; Adam with burn's defaults
    def no_dropout_copy():
        m = ItemLm(V, L, K, args.d_model, args.layers, args.heads, args.d_ff, dropout=0.0)
        m.load_state_dict(model.state_dict())
        return m

    policy = no_dropout_copy()
    reference = no_dropout_copy().eval().requires_grad_(False)
    opt = torch.optim.Adam(policy.parameters(), lr=args.align_lr, betas=(0.9, 0.999), eps=1e-5)
    align_step(policy, reference, opt, hist, excl, align_g, K, inner)  # warm-up
    times = []
    stats = {}
    for _ in range(align_steps):
        t = time.perf_counter()
        stats = align_step(policy, reference, opt, hist, excl, align_g, K, inner)
        times.append(time.perf_counter() - t)
    align_step_s = sum(times) / len(times)

    # one SFT epoch: windows history -> next K items, AdamW (blade: lr 1e-3, wd 1e-4, eps 1e-5)
    seqs = random_histories(sft_windows, V, L + K, gen)
    sft_hist, sft_targets = seqs[:, :L].contiguous(), seqs[:, L:].contiguous()
    sft_model = copy.deepcopy(model)
    sft_opt = torch.optim.AdamW(
        sft_model.parameters(), lr=args.sft_lr, betas=(0.9, 0.999), eps=1e-5, weight_decay=1e-4
    )
    t = time.perf_counter()
    sft_loss = sft_epoch(sft_model, sft_opt, sft_hist, sft_targets, args.sft_batch, gen)
    sft_epoch_s = time.perf_counter() - t

    # full ranking: first-slot scores of the catalogue, top-10 without the history
    users = random_histories(args.users, V, L, gen)
    users_excl = exclusion_mask(users, V)
    full_rank(model, users, users_excl, args.eval_batch)  # warm-up
    t = time.perf_counter()
    for _ in range(reps):
        top = full_rank(model, users, users_excl, args.eval_batch)
    full_rank_users_per_s = reps * top.size(0) / (time.perf_counter() - t)

    kernels = kernel_timings(args.kernel_rows, args.d_model, V + 2, args.d_ff)

    out = {
        "peer": "torch",
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "rollout_lists_per_s": round(rollout_lists_per_s, 1),
        "align_step_s": round(align_step_s, 4),
        "sft_epoch_s": round(sft_epoch_s, 3),
        "full_rank_users_per_s": round(full_rank_users_per_s, 1),
        "kernels": {k: round(v, 6) for k, v in kernels.items()},
        "sizes": {
            "items": V,
            "vocab": V + 2,
            "d_model": args.d_model,
            "layers": args.layers,
            "heads": args.heads,
            "d_ff": args.d_ff,
            "dropout": args.dropout,
            "history_len": L,
            "list_len": K,
            "seq_len": L + K,
            "params": n_params,
            "rollout": {"prompts": B, "lists_per_prompt": rollout_g, "timed_reps": reps},
            "align": {
                "prompts": B,
                "group_size": align_g,
                "inner_epochs": inner,
                "dropout": 0.0,
                "timed_steps": align_steps,
                "lr": args.align_lr,
                "step_times_s": [round(x, 4) for x in times],
                "last": {k: round(v, 5) for k, v in stats.items()},
            },
            "sft": {
                "windows": sft_windows,
                "batch": args.sft_batch,
                "lr": args.sft_lr,
                "last_loss": round(sft_loss, 4),
            },
            "full_rank": {"users": args.users, "batch": args.eval_batch, "timed_reps": reps},
        },
        "quick": args.quick,
        "python": platform.python_version(),
        "total_s": round(time.perf_counter() - t_start, 2),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
