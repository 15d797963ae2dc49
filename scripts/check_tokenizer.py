#!/usr/bin/env python3
"""Check blade's byte-level BPE tokenizer against Hugging Face `tokenizers`.

The reference tokenizer is built from the vocabulary stored in a GGUF file's
metadata (``tokenizer.ggml.tokens``, ``.token_type``, ``.merges``, ``.pre``)
with the pre-tokenization the model was trained with:

* ``smollm`` / ``starcoder`` / ``refact`` (SmolLM2):
  Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False, use_regex=True)]
* ``gpt2`` / ``default``: ByteLevel(add_prefix_space=False, use_regex=True)
* ``llama-bpe`` / ``llama3`` and ``qwen2``: Split(<pattern>, "isolated") then
  ByteLevel(use_regex=False); ``ignore_merges`` for Llama-3 as in llama.cpp

with a ByteLevel decoder, and the control (3) / user-defined (4) tokens added as
special / added tokens so that they are matched literally.

Usage::

    python3 scripts/check_tokenizer.py --gguf FILE --ours ours.json
    python3 scripts/check_tokenizer.py --gguf FILE --dump-vocab vocab.json

``ours.json`` is written by the Rust tokenizer::

    {"texts": ["...", ...], "ids": [[1, 2, ...], ...],
     "parse_special": true,            # optional, default true
     "decoded": ["...", ...]}          # optional: Tokenizer::decode(ids)

Every text is encoded with the reference (``add_special_tokens=False``; with
``"parse_special": false`` the reference has no added tokens, so special-token
text is tokenised like any other text) and the ids must match exactly. When
``decoded`` is present, it must equal the reference's
``decode(ids, skip_special_tokens=False)``. The exit status is 0 when everything
matches and 1 otherwise, with a diff of each mismatch.

``--dump-vocab`` writes the GGUF vocabulary as JSON
(``{"tokens", "token_types", "merges", "pre", "bos", "eos"}``) for feeding
``Tokenizer::from_parts`` in a test harness.

Requires ``pip install tokenizers gguf``.
"""

import argparse
import json
import sys

LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_PATTERN = LLAMA3_PATTERN.replace(r"\p{N}{1,3}", r"\p{N}")

CONTROL, USER_DEFINED = 3, 4


def read_gguf_vocab(path):
    """Tokens, token types, merges, pre-tokenizer name, BOS and EOS from a GGUF file."""
    from gguf import GGUFReader

    reader = GGUFReader(path)
    fields = reader.fields

    def strings(key):
        f = fields[key]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

    def scalar(key):
        f = fields.get(key)
        if f is None:
            return None
        return f.parts[f.data[0]].tolist()[0]

    def string(key):
        f = fields.get(key)
        return None if f is None else bytes(f.parts[f.data[0]]).decode("utf-8")

    model = string("tokenizer.ggml.model")
    if model != "gpt2":
        sys.exit(f"{path}: tokenizer.ggml.model is {model!r}, expected 'gpt2' (byte-level BPE)")
    types_field = fields.get("tokenizer.ggml.token_type")
    tokens = strings("tokenizer.ggml.tokens")
    types = (
        [int(types_field.parts[i][0]) for i in types_field.data]
        if types_field is not None
        else [1] * len(tokens)
    )
    return {
        "tokens": tokens,
        "token_types": types,
        "merges": strings("tokenizer.ggml.merges"),
        "pre": string("tokenizer.ggml.pre") or "default",
        "bos": scalar("tokenizer.ggml.bos_token_id"),
        "eos": scalar("tokenizer.ggml.eos_token_id"),
    }


def build_reference(vocab, with_added_tokens=True):
    """A Hugging Face tokenizer equivalent to the GGUF tokenizer."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models
    from tokenizers import pre_tokenizers as pt

    tokens, types, pre = vocab["tokens"], vocab["token_types"], vocab["pre"]
    ids = {}
    for i, t in enumerate(tokens):
        ids.setdefault(t, i)  # first id wins where a text repeats, as in blade
    if len(ids) != len(tokens):
        print(f"warning: {len(tokens) - len(ids)} duplicate token texts", file=sys.stderr)
    merges = []
    for line in vocab["merges"]:
        # Split at the first space after the first character, as llama.cpp does.
        k = line.index(" ", 1)
        merges.append((line[:k], line[k + 1 :]))

    byte_level = pt.ByteLevel(add_prefix_space=False, use_regex=True)
    ignore_merges = False
    if pre in ("gpt2", "default"):
        pre_tokenizer = byte_level
    elif pre in ("smollm", "starcoder", "refact"):
        pre_tokenizer = pt.Sequence([pt.Digits(individual_digits=True), byte_level])
    elif pre in ("llama-bpe", "llama3", "qwen2"):
        pattern = QWEN2_PATTERN if pre == "qwen2" else LLAMA3_PATTERN
        pre_tokenizer = pt.Sequence(
            [
                pt.Split(Regex(pattern), behavior="isolated", invert=False),
                pt.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
        ignore_merges = pre != "qwen2"
    else:
        sys.exit(f"unsupported pre-tokenizer {pre!r}")

    tok = Tokenizer(models.BPE(vocab=ids, merges=merges, ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    if with_added_tokens:
        special = [
            AddedToken(t, special=True, normalized=False)
            for t, ty in zip(tokens, types)
            if ty == CONTROL and t
        ]
        user = [
            AddedToken(t, special=False, normalized=False)
            for t, ty in zip(tokens, types)
            if ty == USER_DEFINED and t
        ]
        tok.add_special_tokens(special)
        tok.add_tokens(user)
    return tok


def describe(tok, ids, lo, hi):
    return " ".join(f"{i}:{tok.id_to_token(i)!r}" for i in ids[lo:hi])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gguf", required=True, help="GGUF file with a gpt2 (byte-level BPE) vocabulary")
    ap.add_argument("--ours", help="JSON written by the Rust tokenizer: {texts, ids}")
    ap.add_argument("--dump-vocab", metavar="OUT", help="write the GGUF vocabulary as JSON and exit")
    ap.add_argument("--pre", help="use this pre-tokenizer instead of the file's tokenizer.ggml.pre "
                    "(as `blade llm tokenize --pre`)")
    args = ap.parse_args()

    vocab = read_gguf_vocab(args.gguf)
    if args.pre:
        vocab["pre"] = args.pre
    if args.dump_vocab:
        with open(args.dump_vocab, "w", encoding="utf-8") as f:
            json.dump(vocab, f, ensure_ascii=False)
        print(
            f"wrote {args.dump_vocab}: {len(vocab['tokens'])} tokens, "
            f"{len(vocab['merges'])} merges, pre {vocab['pre']!r}"
        )
        return 0
    if not args.ours:
        ap.error("--ours is required unless --dump-vocab is given")

    with open(args.ours, encoding="utf-8") as f:
        ours = json.load(f)
    texts, our_ids = ours["texts"], ours["ids"]
    if len(texts) != len(our_ids):
        sys.exit(f"{args.ours}: {len(texts)} texts but {len(our_ids)} id lists")
    parse_special = ours.get("parse_special", True)
    decoded = ours.get("decoded")
    ref = build_reference(vocab, with_added_tokens=parse_special)

    failures = 0
    for n, (text, mine) in enumerate(zip(texts, our_ids)):
        theirs = ref.encode(text, add_special_tokens=False).ids
        if mine != theirs:
            failures += 1
            k = next(
                (i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b),
                min(len(mine), len(theirs)),
            )
            lo = max(0, k - 3)
            print(f"MISMATCH text {n}: {text!r}")
            print(f"  first difference at token {k} (ours {len(mine)} ids, reference {len(theirs)})")
            print(f"  ours:      ... {describe(ref, mine, lo, k + 4)}")
            print(f"  reference: ... {describe(ref, theirs, lo, k + 4)}")
            continue
        if decoded is not None:
            want = ref.decode(theirs, skip_special_tokens=False)
            if decoded[n] != want:
                failures += 1
                print(f"DECODE MISMATCH text {n}: {text!r}")
                print(f"  ours:      {decoded[n]!r}")
                print(f"  reference: {want!r}")

    total_ids = sum(len(i) for i in our_ids)
    mode = "with" if parse_special else "without"
    if failures:
        print(f"FAILED: {failures} of {len(texts)} texts differ ({mode} special-token parsing)")
        return 1
    checked = " and decodings" if decoded is not None else ""
    print(
        f"OK: all {len(texts)} texts ({total_ids} ids{checked}) match Hugging Face tokenizers "
        f"({mode} special-token parsing, pre-tokenizer {vocab['pre']!r})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
