"""Differential check of maye's tokenizer against Hugging Face tokenizers on random text.

Optional reference script, not on any user path (needs the `tokenizers` package). Draws texts mixing
LaTeX, code, chat markup and special tokens, whitespace runs, many scripts, emoji sequences, combining marks
in random order (including characters newer than tokenizers' Unicode tables) and random code points, encodes
them with `maye tokenize` and with tokenizers, decodes maye's ids with both, and prints the first
differences and one JSON summary line. Exits 1 on any difference.

Usage: python3 bench/hf_tokenizer_diff.py [--tokenizer FILE] [--texts N] [--seed S] [--bin build/bin]
"""
import argparse
import json
import random
import subprocess
import sys
import unicodedata

from tokenizers import Tokenizer

PIECES = ["\\frac{1}{2}", "$x^2+y^2$", "  ", "\n\n", "\t", " \n ", "'s", "'LL", "\u2019", "don't", "123456789",
          "3.14159", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|vision_start|>", "<|image_pad|>", "<think>",
          "</think>", "\u4e2d\u6587\u5b57\u7b26", "\u65e5\u672c\u8a9e", "\ud55c\uad6d\uc5b4", "\u0395\u03bb\u03bb",
          "\u0440\u0443\u0441", "\u0627\u0644\u0639\u0631\u0628\u064a\u0629", "\u0939\u093f\u0928\u094d\u0926\u0940",
          "\U0001f642", "\U0001f469\u200d\U0001f469\u200d\U0001f467", "\U0001f1eb\U0001f1f7", "e\u0301", "\u00e9",
          "\u200b", "\ufeff", "\u3000", "\ufb01", "\u216b", "\u2460", "x\u0000y", "\r\n", "\u2026", "\u2014",
          "\u00bd", "\u2122", "ABC", "abc", "HelloWorld", "hello_world", "  leading", "trailing  ", "a.b,c;d:e!f?g",
          "((()))", "[[{}]]", "http://example.com/a?b=c", "user@example.com", "#include <stdio.h>",
          "def f(x):\n    return x", "0x1F"]
# combining marks, plus characters the Unicode tables of tokenizers lack (lib/text/unicode_compat.h)
MARKS = [c for c in range(0x300, 0x20000) if unicodedata.combining(chr(c))] + [
    0x7FD, 0x898, 0x8D0, 0x8DD, 0x11930, 0x11935, 0x1E030, 0x32FF, 0x1FBF0]


def random_text(r):
    parts = []
    for _ in range(r.randint(1, 12)):
        k = r.random()
        if k < 0.5:
            parts.append(r.choice(PIECES))
        elif k < 0.75:
            parts.append("".join(chr(r.randint(32, 126)) for _ in range(r.randint(1, 10))))
        elif k < 0.9:
            parts.append("".join(chr(r.randint(0x80, 0x2FFF)) for _ in range(r.randint(1, 5))))
        elif k < 0.95:
            parts.append("".join(chr(r.choice([r.randint(0x1F300, 0x1FAFF), r.randint(0x4E00, 0x9FFF),
                                               r.randint(0x10000, 0x10FFFF)])) for _ in range(r.randint(1, 3))))
        else:
            parts.append(r.choice("aeo\u0915") + "".join(chr(r.choice(MARKS)) for _ in range(r.randint(1, 4))))
        if r.random() < 0.3:
            parts.append(r.choice([" ", "  ", "\n", " \n", "\t"]))
    return "".join(parts).encode("utf-8", "surrogatepass").decode("utf-8", "ignore")  # no lone surrogates


def maye(bin_dir, tokenizer, lines, decode=False):
    cmd = [f"{bin_dir}/maye", "tokenize", "--tokenizer", tokenizer] + (["--decode"] if decode else [])
    p = subprocess.run(cmd, input="".join(json.dumps(x) + "\n" for x in lines).encode(), capture_output=True)
    if p.returncode:
        sys.exit(f"maye tokenize: exit {p.returncode}: {p.stderr.decode()[-500:]}")
    return [json.loads(line.decode()) for line in p.stdout.split(b"\n") if line]  # JSON may hold U+2028 raw


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", default="../shared/fixtures/qwen2-tokenizer/tokenizer.json")
    ap.add_argument("--texts", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bin", default="build/bin")
    a = ap.parse_args()
    r = random.Random(a.seed)
    ref = Tokenizer.from_file(a.tokenizer)
    texts = [random_text(r) for _ in range(a.texts)]
    got = [x["ids"] for x in maye(a.bin, a.tokenizer, [{"text": t} for t in texts])]
    decoded = [x["text"] for x in maye(a.bin, a.tokenizer, [{"ids": g} for g in got], decode=True)]
    bad_encode = bad_decode = 0
    for t, g, d in zip(texts, got, decoded):
        want = ref.encode(t, add_special_tokens=False).ids
        if g != want:
            bad_encode += 1
            if bad_encode <= 5:
                print(json.dumps({"text": t, "maye": g, "tokenizers": want}))
        if d != ref.decode(g, skip_special_tokens=False):
            bad_decode += 1
            if bad_decode <= 5:
                print(json.dumps({"ids": g, "maye": d, "tokenizers": ref.decode(g, skip_special_tokens=False)}))
    print(json.dumps({"texts": len(texts), "seed": a.seed, "encode_differences": bad_encode,
                      "decode_differences": bad_decode}))
    sys.exit(1 if bad_encode or bad_decode else 0)


if __name__ == "__main__":
    main()
