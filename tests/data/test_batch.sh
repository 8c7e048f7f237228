#!/bin/sh
# maye-batch on the bundled example: record counts and positions, determinism, --steps/--start-step,
# evaluation order, and bad input (malformed JSON, missing field, missing or undecodable image, empty
# dataset): a clear error naming file, line and field, non-zero exit, and no partial record.
set -e
T=$MAYE_TEST_TMP
B="$MAYE_BIN"
CFG=configs/example.yaml
fail() { echo "FAIL: $*"; exit 1; }

"$B/maye-batch" --config $CFG -o "$T/a.zst" 2>/dev/null
"$B/maye-batch" --config $CFG -o "$T/b.zst" 2>/dev/null
cmp -s "$T/a.zst" "$T/b.zst" || fail "same seed gave different streams"
"$B/maye" cat "$T/a.zst" > "$T/a.jsonl"
# 8 samples, batch 4, 2 epochs -> 4 steps of 4 queries
[ "$(grep -c '"query"' "$T/a.jsonl")" -eq 16 ] || fail "expected 16 queries"
[ "$(grep -c '"step":3,' "$T/a.jsonl")" -eq 4 ] || fail "step 3 should hold 4 queries"
grep -q '"step_records":4' "$T/a.jsonl" || fail "step_records"
grep -q '"grid_thw":\[1,8,8\]' "$T/a.jsonl" || fail "grid of a 112x112 image"
# every epoch covers every sample exactly once
for e in 0 1; do
  n=$(grep "\"epoch\":$e," "$T/a.jsonl" | sed 's/.*"sample_id":"\([^"]*\)".*/\1/' | sort -u | wc -l)
  [ "$n" -eq 8 ] || fail "epoch $e covers $n distinct samples"
done
# the two epochs are shuffled differently
e0=$(grep '"epoch":0,' "$T/a.jsonl" | sed 's/.*"sample_id":"\([^"]*\)".*/\1/' | tr '\n' ' ')
e1=$(grep '"epoch":1,' "$T/a.jsonl" | sed 's/.*"sample_id":"\([^"]*\)".*/\1/' | tr '\n' ' ')
[ "$e0" != "$e1" ] || fail "epochs not reshuffled"
"$B/maye-batch" --config $CFG seed=5 -o "$T/c.zst" 2>/dev/null
cmp -s "$T/a.zst" "$T/c.zst" && fail "another seed gave the same stream"
# --start-step 2 --steps 1 equals step 2 of the full run
"$B/maye-batch" --config $CFG --start-step 2 --steps 1 -o "$T/d.zst" 2>/dev/null
"$B/maye" cat "$T/d.zst" | grep '"query"' > "$T/d.jsonl"
grep '"step":2,' "$T/a.jsonl" > "$T/a2.jsonl"
cmp -s "$T/d.jsonl" "$T/a2.jsonl" || fail "--start-step 2 differs from step 2 of the full run"
# evaluation: one pass in file order, last batch kept (4 validation samples, batch 3 -> 2 steps)
"$B/maye-batch" --config $CFG --split validation data.batch_size=3 --version 7 --epoch 2 -o "$T/v.zst" 2>/dev/null
"$B/maye" cat "$T/v.zst" > "$T/v.jsonl"
[ "$(grep -c '"query"' "$T/v.jsonl")" -eq 4 ] || fail "validation pass should have 4 queries"
idx=$(grep '"query"' "$T/v.jsonl" | sed 's/.*"index":\([0-9]*\),.*/\1/' | tr '\n' ' ')
[ "$idx" = "0 1 2 3 " ] || fail "validation order: $idx"
grep -q '"version":7' "$T/v.jsonl" && grep -q '"epoch":2,' "$T/v.jsonl" && grep -q '"split":"validation"' "$T/v.jsonl" \
  || fail "eval labels"

# bad input ------------------------------------------------------------------
mkdir -p "$T/bad"
cp configs/example/images/*.png "$T/bad/" 2>/dev/null
img=$(ls configs/example/images | head -n 1)
expect_error() { # name, jsonl content, expected message part
  printf '%s' "$2" > "$T/bad/$1.jsonl"
  if "$B/maye-batch" data.train="$T/bad/$1.jsonl" model.tokenizer=configs/demo/tokenizer.json data.batch_size=1 \
      train.epochs=1 -o "$T/bad/$1.zst" 2> "$T/bad/$1.err"; then fail "$1: accepted"; fi
  grep -qF "$3" "$T/bad/$1.err" || { cat "$T/bad/$1.err"; fail "$1: message lacks '$3'"; }
  [ ! -e "$T/bad/$1.zst" ] || fail "$1: left an output file"
}
good="{\"question\": \"<image>q\", \"answer\": \"1\", \"image\": \"$img\"}"
expect_error malformed "$good
{\"question\": \"q\", \"answer\": 
" "bad/malformed.jsonl:2:"
expect_error missing "$good
{\"question\": \"q\", \"image\": \"$img\"}
" "missing.jsonl:2: field 'answer' is missing"
expect_error noimage "$good
{\"question\": \"q\", \"answer\": \"2\", \"image\": \"nope.png\"}
" "noimage.jsonl:2: field 'image': file"
expect_error empty "
" "the dataset is empty"
printf 'not a png' > "$T/bad/broken.png"
expect_error undecodable "$good
{\"question\": \"q\", \"answer\": \"2\", \"image\": \"broken.png\"}
" "undecodable.jsonl:2: field 'image'"
# through a pipe, the steps before the broken image arrive and then the stream is reported truncated
printf '%s\n%s\n' "$good" "{\"question\": \"q\", \"answer\": \"2\", \"image\": \"broken.png\"}" > "$T/bad/pipe.jsonl"
"$B/maye-batch" data.train="$T/bad/pipe.jsonl" model.tokenizer=configs/demo/tokenizer.json data.batch_size=1 \
  train.epochs=1 data.shuffle=false 2>/dev/null | "$B/maye" cat - > "$T/bad/pipe.out" 2> "$T/bad/pipe.err" && fail "truncated stream read cleanly"
[ "$(grep -c '"query"' "$T/bad/pipe.out")" -eq 1 ] || fail "expected the one good query before the error"
grep -q "truncated" "$T/bad/pipe.err" || { cat "$T/bad/pipe.err"; fail "no truncation error"; }
if "$B/maye-batch" --config $CFG data.batch_size=9 -o "$T/x.zst" 2> "$T/x.err"; then fail "batch larger than dataset"; fi
grep -q "fewer than one batch" "$T/x.err" || fail "batch size message"
echo ok
