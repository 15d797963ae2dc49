#!/usr/bin/env python3
"""Checks a `blade export --format hf` folder with Hugging Face transformers (PyTorch, CPU).

  python3 scripts/check_export.py --hf DIR --ours ours.json [--atol 1e-3]
      [--texts texts.json --ids blade-tokens.json] [--chat "message"]

* Loads the folder with AutoConfig, AutoTokenizer and AutoModelForCausalLM (float32) exactly as
  a user would (`from_pretrained(DIR)`), offline.
* Next-token logits of ours["tokens"] (the JSON `blade llm logits --run RUN` writes) are compared
  with blade's, with scripts/llm_reference.py's comparison: max |diff| <= atol and the same
  argmax, else exit 1.
* With --texts/--ids (`blade llm tokenize --json` output), the exported tokenizer must give
  blade's ids for every text (no special tokens added, special-token text parsed).
* With --chat, the exported chat template is rendered with a generation prompt and 8 greedy
  tokens are generated from it (printed, informational).
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llm_reference import compare  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hf", required=True, help="the exported folder")
    ap.add_argument("--ours", required=True, help="blade's logits JSON for the same model")
    ap.add_argument("--atol", type=float, default=1e-3)
    ap.add_argument("--texts", help="JSON {'texts': [...]} or a list of strings")
    ap.add_argument("--ids", help="blade's ids of those texts (`blade llm tokenize --json`)")
    ap.add_argument("--chat", help="a user message to render with the chat template")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    config = AutoConfig.from_pretrained(args.hf)
    tok = AutoTokenizer.from_pretrained(args.hf)
    model = AutoModelForCausalLM.from_pretrained(args.hf, dtype=torch.float32)
    model.eval()
    print(f"loaded {type(model).__name__}: {config.num_hidden_layers} layers, "
          f"hidden {config.hidden_size}, vocab {config.vocab_size}, {type(tok).__name__}")
    ok = True
    if args.texts:
        texts = json.load(open(args.texts, encoding="utf-8"))
        texts = texts["texts"] if isinstance(texts, dict) else texts
        ids = json.load(open(args.ids, encoding="utf-8"))["ids"]
        bad = [i for i, t in enumerate(texts)
               if tok(t, add_special_tokens=False)["input_ids"] != ids[i]]
        n = sum(len(x) for x in ids)
        print(f"tokenizer: {len(texts) - len(bad)}/{len(texts)} texts ({n} ids) as blade's")
        for i in bad[:5]:
            print(f"  differs: {texts[i]!r}: transformers "
                  f"{tok(texts[i], add_special_tokens=False)['input_ids']} blade {ids[i]}")
        ok &= not bad
    ours = json.load(open(args.ours))
    with torch.no_grad():
        out = model(torch.tensor([ours["tokens"]]))
    ref = {"tokens": ours["tokens"], "logits_last": out.logits[0, -1].double().tolist()}
    print(f"next-token logits of {len(ours['tokens'])} tokens, blade vs transformers:")
    ok &= compare(ours, ref, args.atol, 0.0)
    if args.chat:
        text = tok.apply_chat_template([{"role": "user", "content": args.chat}],
                                       tokenize=False, add_generation_prompt=True)
        assert args.chat in text, text
        enc = tok(text, add_special_tokens=False, return_tensors="pt")
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=8, do_sample=False)
        reply = tok.decode(gen[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        print(f"chat template renders {len(enc['input_ids'][0])} tokens; greedy reply: {reply!r}")
    print("export check", "PASSED" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
