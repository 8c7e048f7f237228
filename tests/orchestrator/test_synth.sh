#!/bin/sh
# maye synth: same seed -> identical files; answers follow from the drawn numbers; bad options fail.
set -e
T=$MAYE_TEST_TMP
"$MAYE_BIN/maye" synth -o "$T/a" --train 12 --validation 4 --test 4 --seed 3 2>/dev/null
"$MAYE_BIN/maye" synth -o "$T/b" --train 12 --validation 4 --test 4 --seed 3 2>/dev/null
diff -r "$T/a" "$T/b" >/dev/null || { echo "same seed gave different datasets"; exit 1; }
"$MAYE_BIN/maye" synth -o "$T/c" --train 12 --validation 4 --test 4 --seed 4 2>/dev/null
if diff -r "$T/a" "$T/c" >/dev/null; then echo "different seeds gave the same dataset"; exit 1; fi
[ "$(wc -l < "$T/a/train.jsonl")" -eq 12 ] || { echo "wrong train size"; exit 1; }
[ "$(ls "$T/a/images" | wc -l)" -eq 20 ] || { echo "wrong image count"; exit 1; }
# every line is a MAYE record whose solution boxes the answer, and every image exists
for split in train validation test; do
  while IFS= read -r line; do
    ans=$(printf '%s' "$line" | sed -n 's/.*"answer":"\([^"]*\)".*/\1/p')
    img=$(printf '%s' "$line" | sed -n 's/.*"image":"\([^"]*\)".*/\1/p')
    case "$line" in *'"question":"<image>'*) ;; *) echo "question without <image>: $line"; exit 1 ;; esac
    case "$line" in *"\\\\boxed{$ans}"*) ;; *) echo "solution does not box the answer: $line"; exit 1 ;; esac
    [ -f "$T/a/$img" ] || { echo "missing image $img"; exit 1; }
  done < "$T/a/$split.jsonl"
done
grep -q '"kind":"count"' "$T/a/test.jsonl"
if "$MAYE_BIN/maye" synth -o "$T/d" --kinds count,nope 2>"$T/err"; then echo "bad kind accepted"; exit 1; fi
grep -q "unknown or repeated kind 'nope'" "$T/err" || { cat "$T/err"; exit 1; }
if "$MAYE_BIN/maye" synth 2>"$T/err"; then echo "missing -o accepted"; exit 1; fi
grep -q "missing -o DIR" "$T/err"
echo ok
