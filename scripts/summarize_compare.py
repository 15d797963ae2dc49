#!/usr/bin/env python3
"""Training-reward table of a `blade compare` folder.

For every method and seed, `runs/<method>-s<seed>/summary.json` holds the mean list reward of M
fresh lists per prompt from the aligned policy and from the SFT reference on the same prompts
(the reward the method was trained on). This prints, per method, mean +- std over seeds of the
reference reward, the aligned reward and their difference, as a Markdown table.

Usage: python3 scripts/summarize_compare.py runs/compare-ml100k [more folders...]
"""

import json
import statistics
import sys
from pathlib import Path


def table(folder: Path) -> str:
    rows = {}
    reward = None
    for s in sorted(folder.glob("runs/*-s*/summary.json")):
        name = s.parent.name
        method, seed = name.rsplit("-s", 1)
        if "-l" in method and ("-fairness-" in method or "-diversity-" in method):
            continue  # front runs
        d = json.loads(s.read_text())
        reward = d["reward"]
        rows.setdefault(method, []).append(d)

    def ms(v):
        if len(v) > 1:
            return f"{statistics.mean(v):.4f} ± {statistics.stdev(v):.4f}"
        return f"{v[0]:.4f}"

    out = [f"**training reward `{reward}`** (M lists per prompt on the first 512 prompts; mean ± std over seeds)", "",
           "| method | SFT reference | aligned | gain (aligned - reference) | valid NDCG@10 end |", "|---|---:|---:|---:|---:|"]
    for method, ds in sorted(rows.items()):
        ref = [d["reference_reward"] for d in ds]
        pol = [d["policy_reward"] for d in ds]
        gain = [p - r for p, r in zip(pol, ref)]
        v = [d["valid_ndcg_end"] for d in ds if d.get("valid_ndcg_end") is not None]
        out.append(f"| {method} | {ms(ref)} | {ms(pol)} | {ms(gain)} | {ms(v) if v else '-'} |")
    return "\n".join(out)


if __name__ == "__main__":
    for f in sys.argv[1:]:
        print(f"### {f}\n")
        print(table(Path(f)))
        print()
