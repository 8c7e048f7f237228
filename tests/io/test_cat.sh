#!/bin/sh
# `maye cat` end to end: hand-written JSON lines of every record kind -> records (--to-records) ->
# JSON (--full) -> records -> JSON must be identical; summaries, stdin and pipes; and clear errors with a
# non-zero exit for truncated, garbage and empty streams, bad JSON (line and field path), summarised
# tensors, wrong record keys and schema versions. No stage writes streams yet, so the streams come from
# --to-records.
set -u
maye="$MAYE_BIN/maye"
T="$MAYE_TEST_TMP"
fail=0
say_fail() { echo "FAIL: $*"; fail=1; }
# expect_error NAME EXIT SUBSTRING CMD...: CMD exits with EXIT and its stderr contains SUBSTRING
expect_error() {
  name=$1 want_rc=$2 needle=$3; shift 3
  "$@" >"$T/out" 2>"$T/err"; rc=$?
  [ "$rc" -eq "$want_rc" ] || say_fail "$name: exit $rc, expected $want_rc ($(cat "$T/err"))"
  grep -qF -- "$needle" "$T/err" || say_fail "$name: stderr lacks [$needle]: $(cat "$T/err")"
}

hdr() { # hdr KIND
  printf '{"header":{"kind":"%s","schema_version":1,"producer":"test_cat 0","config_digest":"0x00000000deadbeef","run_id":"r1","vocab_size":151665,"tokenizer_digest":"0x0123456789abcdef","model":"m"}}\n' "$1"
}
QUERY='{"pos":{"sample_id":"q\"1","index":4,"epoch":1,"step":9,"step_offset":2,"step_records":8,"split":"train"},"version":3,"prompt_ids":[151644,872,-1,2147483647],"images":[{"height":2,"width":2,"rgb":{"dtype":"U8","shape":[2,2,3],"data":[0,1,2,3,4,5,6,7,8,9,250,255]},"grid_thw":[1,2,2],"source":"a.png"}],"question":"<image>Find x: é 角 😀 \u0001 \udcff","answer":"\\frac{1}{2}","solution":"s","prompt_text":"p"}'
{ hdr QUERY; echo "{\"query\":$QUERY}"; echo; echo '{"query":{}}'; } >"$T/query.jsonl"
{ hdr ROLLOUT
  echo "{\"rollout\":{\"query\":$QUERY,\"responses\":[{\"sample_index\":1,\"ids\":[5,6],\"text\":\"t\",\"finish\":\"LENGTH\",\"logprobs\":[-0.5,\"-Infinity\",-0,1e-40],\"seconds\":0.25}],\"version\":3,\"temperature\":0.6,\"top_p\":1,\"top_k\":0,\"seed\":18446744073709551615,\"prefill_seconds\":1.5,\"decode_seconds\":2.5}}"
} >"$T/rollout.jsonl"
{ hdr TRAJECTORY
  echo "{\"trajectory\":{\"query\":$QUERY,\"sample_index\":1,\"version\":3,\"response_ids\":[5,6],\"response_text\":\"Wait.\",\"finish\":\"STOP\",\"policy_logprobs\":[-0.1,\"NaN\"],\"ref_logprobs\":[-0.2,-0.3],\"rollout_logprobs\":[-0.1,-0.2],\"response_mask\":[1,0],\"score\":1,\"rewards\":{\"accuracy\":1,\"length\":-0.5},\"correct\":true,\"extracted_answer\":\"1/2\",\"response_length\":2,\"reflection\":true,\"reflection_counts\":[1,0,0,0,0,0,0,0,0,0,0,0,0,0,2],\"temperature\":1}}"
} >"$T/trajectory.jsonl"
{ hdr WEIGHT_SYNC
  echo '{"weight_sync":{"version":4,"kind":"CUDA_IPC","path":"w.safetensors","ipc_handle":"AAECA/8=","ipc_bytes":1024,"nccl_id":"","digest":"0xffffffffffffffff","step":3}}'
  echo '{"weight_sync":{"version":5,"kind":"FILE","path":"w5.safetensors"}}'
} >"$T/weight_sync.jsonl"
{ hdr METRICS
  echo '{"metrics":{"step":3,"epoch":0,"version":4,"split":"validation","setting":"pass@8_t1.0","values":{"accuracy":0.5,"kl":1e-300,"len":612.25},"example":"Hmm"}}'
} >"$T/metrics.jsonl"

# ----------------------------------------------------------------------------
# round trips for every kind

for kind in query rollout trajectory weight_sync metrics; do
  "$maye" cat --to-records -o "$T/$kind.zst" "$T/$kind.jsonl" || say_fail "$kind: --to-records failed"
  "$maye" cat --full "$T/$kind.zst" >"$T/$kind.1.jsonl" || say_fail "$kind: cat --full failed"
  "$maye" cat --to-records "$T/$kind.1.jsonl" >"$T/$kind.2.zst" || say_fail "$kind: second --to-records failed"
  "$maye" cat --full "$T/$kind.2.zst" >"$T/$kind.2.jsonl" || say_fail "$kind: second cat failed"
  cmp -s "$T/$kind.1.jsonl" "$T/$kind.2.jsonl" || { say_fail "$kind: round trip differs"; diff "$T/$kind.1.jsonl" "$T/$kind.2.jsonl" | head -5; }
  cmp -s "$T/$kind.zst" "$T/$kind.2.zst" || say_fail "$kind: the two streams differ byte for byte"
  lines=$(grep -c . "$T/$kind.jsonl"); got=$(wc -l <"$T/$kind.1.jsonl")
  [ "$lines" -eq "$got" ] || say_fail "$kind: $got lines printed, expected $lines"
  head -n 1 "$T/$kind.1.jsonl" | grep -q '^{"header":{"kind":"' || say_fail "$kind: first line is not the header"
  sed -n 2p "$T/$kind.1.jsonl" | grep -q "^{\"$kind\":{" || say_fail "$kind: second line is not a $kind record"
done
# field values that must come back exactly
grep -qF '"seed":18446744073709551615' "$T/rollout.1.jsonl" || say_fail "uint64 seed changed"
grep -qF '"logprobs":[-0.5,"-Infinity",-0,1e-40]' "$T/rollout.1.jsonl" || say_fail "special floats changed: $(cat "$T/rollout.1.jsonl")"
grep -qF '"question":"<image>Find x: é 角 😀 \u0001 \udcff"' "$T/query.1.jsonl" || say_fail "question text changed"
grep -qF '"ipc_handle":"AAECA/8="' "$T/weight_sync.1.jsonl" || say_fail "bytes changed"
grep -qF '"rewards":{"accuracy":1,"length":-0.5}' "$T/trajectory.1.jsonl" || say_fail "map changed"
grep -qF '"digest":"0xffffffffffffffff"' "$T/weight_sync.1.jsonl" || say_fail "fixed64 changed"
sed -n 3p "$T/weight_sync.1.jsonl" | grep -qF '"ipc_bytes":0,"nccl_id":"","digest":"0x0000000000000000","step":0' ||
  say_fail "absent fields do not print as defaults: $(sed -n 3p "$T/weight_sync.1.jsonl")"

# summary mode, stdin, pipes
"$maye" cat "$T/query.zst" >"$T/sum.jsonl" || say_fail "cat (summary) failed"
grep -q '"rgb":{"dtype":"U8","shape":\[2,2,3\],"checksum":"0x[0-9a-f]\{16\}"}' "$T/sum.jsonl" || say_fail "no tensor summary: $(cat "$T/sum.jsonl")"
"$maye" cat - <"$T/query.zst" | cmp -s - "$T/sum.jsonl" || say_fail "reading stdin ('-') differs"
"$maye" cat <"$T/query.zst" | cmp -s - "$T/sum.jsonl" || say_fail "reading stdin (no FILE) differs"
"$maye" cat --to-records <"$T/trajectory.jsonl" | "$maye" cat --full - | cmp -s - "$T/trajectory.1.jsonl" ||
  say_fail "pipe --to-records | cat --full differs"
expect_error "summary back to records" 1 "maye cat --full" "$maye" cat --to-records -o "$T/sum.zst" "$T/sum.jsonl"
grep -qF "$T/sum.jsonl: line 2: query.images[0].rgb: this tensor is a summary" "$T/err" || say_fail "summary error: $(cat "$T/err")"
[ ! -e "$T/sum.zst" ] || say_fail "a failed --to-records left an output file"
ls "$T" | grep -q 'sum.zst.tmp' && say_fail "a failed --to-records left a temporary file"

# ----------------------------------------------------------------------------
# bad streams

size=$(wc -c <"$T/trajectory.zst")
head -c $((size - 3)) "$T/trajectory.zst" >"$T/cut.zst"
expect_error "truncated" 1 "stream '$T/cut.zst': record 2: truncated: the stream ended without its end mark (did the producer crash?)" "$maye" cat "$T/cut.zst"
[ "$(wc -l <"$T/out")" -eq 2 ] || say_fail "truncated: the complete records before the cut were not printed"
head -c 30 "$T/trajectory.zst" >"$T/cut2.zst"
expect_error "truncated in the header" 1 "record 0: truncated" "$maye" cat "$T/cut2.zst"
printf 'hello, not a stream\n' >"$T/garbage.zst"
expect_error "garbage" 1 "record 0: not a record stream: it does not start with a zstd frame" "$maye" cat "$T/garbage.zst"
: >"$T/empty.zst"
expect_error "empty" 1 "stream '$T/empty.zst': record 0: the stream is empty" "$maye" cat "$T/empty.zst"
expect_error "empty stdin" 1 "stream '-': record 0: the stream is empty" sh -c "\"$maye\" cat - </dev/null"
cat "$T/metrics.zst" "$T/metrics.zst" >"$T/two.zst"
expect_error "concatenated" 1 "record 2: unexpected data after the end of the stream" "$maye" cat "$T/two.zst"
expect_error "missing file" 1 "cannot open stream '$T/nope.zst'" "$maye" cat "$T/nope.zst"

# ----------------------------------------------------------------------------
# bad JSON

{ hdr QUERY; echo '{"query":{}}'; echo '{"query":{"pos":{"step":"3"}}}'; } >"$T/bad1.jsonl"
expect_error "bad field" 1 "bad1.jsonl: line 3: query.pos.step: expected an integer, got \"3\"" "$maye" cat --to-records -o "$T/bad.zst" "$T/bad1.jsonl"
{ hdr QUERY; echo '{"rollout":{}}'; } >"$T/bad2.jsonl"
expect_error "wrong key" 1 'line 2: expected a "query" record, got "rollout"' "$maye" cat --to-records -o "$T/bad.zst" "$T/bad2.jsonl"
echo '{"query":{}}' >"$T/bad3.jsonl"
expect_error "no header" 1 'line 1: expected a "header" record, got "query"' "$maye" cat --to-records -o "$T/bad.zst" "$T/bad3.jsonl"
hdr QUERY | sed 's/"schema_version":1/"schema_version":2/' >"$T/bad4.jsonl"
expect_error "schema version" 1 "schema version 2, this build reads 1" "$maye" cat --to-records -o "$T/bad.zst" "$T/bad4.jsonl"
{ hdr QUERY; echo '{"query":{"pos":{"step":1}'; } >"$T/bad5.jsonl"
expect_error "bad JSON" 1 "line 2: column 27: invalid JSON: expected ',' or '}'" "$maye" cat --to-records -o "$T/bad.zst" "$T/bad5.jsonl"
: >"$T/bad6.jsonl"
expect_error "empty JSON" 1 "no header line" "$maye" cat --to-records -o "$T/bad.zst" "$T/bad6.jsonl"
[ ! -e "$T/bad.zst" ] || say_fail "a failed --to-records left $T/bad.zst"

# ----------------------------------------------------------------------------
# usage

"$maye" cat --help >"$T/help" || say_fail "--help failed"
for opt in --full --to-records "-o OUT" MAYE_ZSTD_LEVEL '{"header"'; do
  grep -qF -- "$opt" "$T/help" || say_fail "--help does not mention $opt"
done
"$maye" --help | grep -q "^  cat " || say_fail "maye --help does not list cat"
expect_error "unknown option" 2 "unknown option '--fast'" "$maye" cat --fast "$T/query.zst"
expect_error "-o without --to-records" 2 "-o applies to --to-records only" "$maye" cat -o x "$T/query.zst"
expect_error "two inputs" 2 "one input at a time" "$maye" cat "$T/query.zst" "$T/rollout.zst"
MAYE_ZSTD_LEVEL=19 "$maye" cat --to-records -o "$T/l19.zst" "$T/query.jsonl" || say_fail "MAYE_ZSTD_LEVEL=19"
"$maye" cat --full "$T/l19.zst" | cmp -s - "$T/query.1.jsonl" || say_fail "level 19 stream reads differently"
expect_error "bad level" 1 "zstd level 40 is out of range" env MAYE_ZSTD_LEVEL=40 "$maye" cat --to-records -o "$T/l40.zst" "$T/query.jsonl"

[ $fail -eq 0 ] && echo ok
exit $fail
