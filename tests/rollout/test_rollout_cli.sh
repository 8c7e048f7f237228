#!/bin/sh
# maye-rollout end to end: `maye synth` data and a `maye init` model over the demo tokenizer (vision ids and
# vocabulary looked up, Qwen2-VL image processor sizes) -> maye-batch | maye-rollout | maye cat: Rollout
# records with n responses each, in query order, two runs bit-identical, a newer policy version picked up
# from the run directory; maye generate on the same model; and bad input (a Query stream of another
# tokenizer, a model that does not fit the tokenizer, a truncated stream, a missing weight-sync file, bad
# options): a clear error, a non-zero exit and no Rollout record of the failed step.
set -u
B="$MAYE_BIN"
T="${MAYE_TEST_TMP:-/tmp}/rollout_cli.$$"
mkdir -p "$T"
. tests/support/cli.sh
count() { grep -c "$1" "$2" | tr -d ' '; }
TOK=configs/demo/tokenizer.json

# the data, and the demo tokenizer's vocabulary and vision ids
"$B/maye" synth -o "$T/data" --train 6 --validation 2 --test 2 --seed 1 2>/dev/null ||
    { echo "FAIL: maye synth"; exit 1; }
tid() { printf '{"text":"%s"}\n' "$1" | "$B/maye" tokenize --tokenizer $TOK | sed 's/[^0-9]//g'; }
IMG=$(tid '<|image_pad|>'); VID=$(tid '<|video_pad|>'); VS=$(tid '<|vision_start|>'); VE=$(tid '<|vision_end|>')
cat >"$T/batch.yaml" <<EOF
seed: 3
model:
  tokenizer: $TOK
data:
  train: $T/data/train.jsonl
  batch_size: 3
train:
  epochs: 1
EOF
"$B/maye-batch" --config "$T/batch.yaml" -o "$T/q.zst" 2>/dev/null || { echo "FAIL: maye-batch"; exit 1; }
VOCAB=$("$B/maye" cat "$T/q.zst" | head -n 1 | sed 's/.*"vocab_size":\([0-9]*\).*/\1/')
echo "demo tokenizer: vocab $VOCAB, image_pad $IMG, video_pad $VID, vision_start $VS, vision_end $VE"

model_json() { # model_json VOCAB
    cat <<EOF
{"architectures": ["Qwen2VLForConditionalGeneration"], "model_type": "qwen2_vl",
 "vocab_size": $1, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
 "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
 "hidden_act": "silu", "tie_word_embeddings": true, "initializer_range": 0.1,
 "rope_scaling": {"type": "mrope", "mrope_section": [2, 1, 1]},
 "image_token_id": $IMG, "video_token_id": $VID, "vision_start_token_id": $VS, "vision_end_token_id": $VE,
 "vision_config": {"depth": 1, "embed_dim": 32, "mlp_ratio": 2, "num_heads": 2, "in_chans": 3,
   "hidden_size": 32, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
   "hidden_act": "quick_gelu"}}
EOF
}
model_json "$VOCAB" >"$T/model.json"
"$B/maye" init --config "$T/model.json" -o "$T/model" --seed 1 2>/dev/null || { echo "FAIL: maye init"; exit 1; }
"$B/maye" init --config "$T/model.json" -o "$T/model2" --seed 2 2>/dev/null || { echo "FAIL: maye init"; exit 1; }
cat >"$T/c.yaml" <<EOF
seed: 3
run_dir: $T/run
model:
  path: $T/model
  tokenizer: $TOK
  threads: 2
data:
  train: $T/data/train.jsonl
  batch_size: 3
train:
  epochs: 1
rollout:
  n: 3
  max_tokens: 8
  max_batch_seqs: 4
  max_batch_tokens: 300
update:
  max_staleness: 1000
EOF

check "maye-rollout --help" "$B/maye-rollout" --help >/dev/null
check "maye generate --help" "$B/maye" generate --help >/dev/null

# the pipeline: 6 queries in 2 steps -> 6 rollouts of 3 responses, in query order
"$B/maye-batch" --config "$T/c.yaml" 2>/dev/null | "$B/maye-rollout" --config "$T/c.yaml" 2>"$T/log.txt" |
    "$B/maye" cat - >"$T/r.jsonl"
check "pipeline: 6 Rollout records" test "$(count '"rollout"' "$T/r.jsonl")" -eq 6
check "pipeline: 18 responses" test "$(grep -o '"sample_index"' "$T/r.jsonl" | wc -l)" -eq 18
check "pipeline: finish reasons" grep -q '"finish":"\(LENGTH\|STOP\)"' "$T/r.jsonl"
check "pipeline: log-probs" grep -q '"logprobs":\[-' "$T/r.jsonl"
check "pipeline: text" grep -q '"text":"' "$T/r.jsonl"
check "pipeline: header carries the tokenizer" grep -q '"vocab_size":'"$VOCAB" "$T/r.jsonl"
check "pipeline: progress on stderr" grep -q 'tokens/s' "$T/log.txt"
q_order=$("$B/maye" cat "$T/q.zst" | grep '"query"' | sed 's/.*"sample_id":"\([^"]*\)".*/\1/' | tr '\n' ' ')
r_order=$(grep '"rollout"' "$T/r.jsonl" | sed 's/"responses".*//; s/.*"sample_id":"\([^"]*\)".*/\1/' | tr '\n' ' ')
check "pipeline: rollouts in query order ($r_order)" test "$q_order" = "$r_order"

# determinism: without timing the streams are bit-identical; with timing, everything but the seconds
"$B/maye-rollout" --config "$T/c.yaml" rollout.timing=false -i "$T/q.zst" -o "$T/a.zst" 2>/dev/null
"$B/maye-rollout" --config "$T/c.yaml" rollout.timing=false -i "$T/q.zst" -o "$T/b.zst" 2>/dev/null
check "two runs are bit-identical" cmp -s "$T/a.zst" "$T/b.zst"
# with timing, the records (not the header, whose config digest changes) differ only in the seconds
records() { "$B/maye" cat "$1" | tail -n +2 | sed 's/"[a-z_]*seconds":[0-9.e-]*//g'; }
"$B/maye-rollout" --config "$T/c.yaml" -i "$T/q.zst" -o "$T/t.zst" 2>/dev/null
records "$T/t.zst" >"$T/t1"
records "$T/a.zst" >"$T/t2"
check "timing is the only difference" cmp -s "$T/t1" "$T/t2"
# one thread gives the same records as two: tokens, log-probs, text (the header's config digest differs)
"$B/maye-rollout" --config "$T/c.yaml" model.threads=1 rollout.timing=false -i "$T/q.zst" -o "$T/one.zst" 2>/dev/null
records "$T/one.zst" >"$T/r1"
records "$T/a.zst" >"$T/r2"
check "one thread and two give the same records" cmp -s "$T/r1" "$T/r2"
"$B/maye-rollout" --config "$T/c.yaml" rollout.timing=false seed=4 -i "$T/q.zst" -o "$T/s4.zst" 2>/dev/null
check "another seed samples other responses" sh -c "! cmp -s '$T/a.zst' '$T/s4.zst'"
"$B/maye-rollout" --config "$T/c.yaml" rollout.temperature=0 rollout.max_batch_seqs=1 -i "$T/q.zst" 2>/dev/null |
    "$B/maye" cat - | grep -o '"ids":\[[0-9,]*\]' >"$T/g1"
"$B/maye-rollout" --config "$T/c.yaml" rollout.temperature=0 rollout.max_batch_seqs=9 -i "$T/q.zst" 2>/dev/null |
    "$B/maye" cat - | grep -o '"ids":\[[0-9,]*\]' >"$T/g9"
check "greedy: one sequence at a time = nine at a time" cmp -s "$T/g1" "$T/g9"
check "greedy: the responses of a query are equal" test "$(sort -u "$T/g1" | wc -l)" -le 6

# weight sync: with policy version 1 in the run directory and strict on-policy, step 1 uses it
mkdir -p "$T/run/weights"
cp "$T/model2/model.safetensors" "$T/run/weights/policy-v000001.safetensors"
"$B/maye-rollout" --config "$T/c.yaml" update.max_staleness=0 rollout.timing=false -i "$T/q.zst" 2>/dev/null |
    "$B/maye" cat - >"$T/v.jsonl"
used() { grep "\"step\":$1," "$T/v.jsonl" | grep -c "\"version\":$2,\"temperature\""; } # used STEP VERSION
check "step 0 sampled with version 0" test "$(used 0 0)" -eq 3
check "step 1 sampled with version 1" test "$(used 1 1)" -eq 3
"$B/maye" cat "$T/a.zst" | grep '"step":1,' >"$T/v0_step1"
grep '"step":1,' "$T/v.jsonl" >"$T/v1_step1"
check "version 1 samples other responses" sh -c "! cmp -s '$T/v0_step1' '$T/v1_step1'"
rm -rf "$T/run/weights"
# the same version 1 announced by a handle on a WeightSync stream (--sync) gives the same records
printf '%s\n%s\n' '{"header":{"kind":"WEIGHT_SYNC","schema_version":1}}' \
    "{\"weight_sync\":{\"version\":1,\"kind\":\"FILE\",\"path\":\"$T/model2/model.safetensors\"}}" |
    "$B/maye" cat --to-records -o "$T/sync_ok.zst"
"$B/maye-rollout" --config "$T/c.yaml" update.max_staleness=0 rollout.timing=false --sync "$T/sync_ok.zst" \
    -i "$T/q.zst" 2>/dev/null | "$B/maye" cat - >"$T/s.jsonl"
check "--sync: the handle's version 1 samples step 1" cmp -s "$T/s.jsonl" "$T/v.jsonl"

# maye generate on the same model: text-only input_ids [5] in a safetensors file
for id in 1 405 212 342 302; do le64 $id; done >"$T/in_ids.bin"
mkst "$T/in.st" '{"input_ids":{"dtype":"I64","shape":[5],"data_offsets":[0,40]}}' "$T/in_ids.bin"
"$B/maye" generate --model "$T/model" --in "$T/in.st" --max-new-tokens 6 --n 2 --temperature 1 --seed 5 \
    --tokenizer $TOK >"$T/gen1.jsonl" 2>/dev/null
"$B/maye" generate --model "$T/model" --in "$T/in.st" --max-new-tokens 6 --n 2 --temperature 1 --seed 5 \
    --tokenizer $TOK --threads 1 >"$T/gen2.jsonl" 2>/dev/null
check "maye generate: two responses" test "$(count '"ids"' "$T/gen1.jsonl")" -eq 2
check "maye generate: deterministic" cmp -s "$T/gen1.jsonl" "$T/gen2.jsonl"
check "maye generate: text" grep -q '"text":' "$T/gen1.jsonl"
expect_error "--prompt-tokens 9: input_ids has 5 tokens" "$B/maye" generate --model "$T/model" --in "$T/in.st" \
    --max-new-tokens 2 --prompt-tokens 9
expect_error "missing tensor 'input_ids'" "$B/maye" generate --model "$T/model" --in "$T/model/model.safetensors" \
    --max-new-tokens 2

# bad input -----------------------------------------------------------------
# a Query stream made with another tokenizer (its header names another vocabulary)
"$B/maye" cat --full "$T/q.zst" | sed "1s/\"vocab_size\":$VOCAB/\"vocab_size\":$((VOCAB + 7))/" |
    "$B/maye" cat --to-records -o "$T/other.zst"
expect_error "vocabulary of $((VOCAB + 7)) tokens" "$B/maye-rollout" --config "$T/c.yaml" -i "$T/other.zst" \
    -o "$T/x.zst"
check "no output for another tokenizer's stream" test ! -e "$T/x.zst"
# a model whose vocabulary is smaller than the tokenizer's
model_json $((VOCAB - 10)) >"$T/small.json"
"$B/maye" init --config "$T/small.json" -o "$T/small" 2>/dev/null
expect_error "the model's vocabulary is $((VOCAB - 10))" "$B/maye-rollout" --config "$T/c.yaml" model.path="$T/small" \
    -i "$T/q.zst" -o "$T/x.zst"
# a truncated stream: step 0 complete, step 1 cut -> step 0's rollouts, then the error; none of step 1
"$B/maye-batch" --config "$T/batch.yaml" --steps 1 -o "$T/q1.zst" 2>/dev/null
s1=$(wc -c <"$T/q1.zst"); s2=$(wc -c <"$T/q.zst")
head -c $(((s1 + s2) / 2)) "$T/q.zst" >"$T/trunc.zst"
"$B/maye-rollout" --config "$T/c.yaml" -i "$T/trunc.zst" 2>"$T/err.txt" >"$T/trunc_out.zst"
rc=$?
check "truncated input: non-zero exit" test $rc -ne 0
check "truncated input: message" grep -q "truncated\|ended inside step" "$T/err.txt"
"$B/maye" cat "$T/trunc_out.zst" >"$T/trunc.jsonl" 2>/dev/null
check "truncated input: the 3 rollouts of step 0 and none of step 1" test "$(count '"rollout"' "$T/trunc.jsonl")" -eq 3
# a weight-sync handle naming a missing file: step 1 fails, step 0 was written
printf '%s\n%s\n' '{"header":{"kind":"WEIGHT_SYNC","schema_version":1}}' \
    "{\"weight_sync\":{\"version\":1,\"kind\":\"FILE\",\"path\":\"$T/nowhere/policy-v000001.safetensors\"}}" |
    "$B/maye" cat --to-records -o "$T/sync.zst"
"$B/maye-rollout" --config "$T/c.yaml" update.max_staleness=0 --sync "$T/sync.zst" -i "$T/q.zst" \
    2>"$T/err.txt" >"$T/sync_out.zst"
rc=$?
check "missing weight file: non-zero exit" test $rc -ne 0
check "missing weight file: message names it" grep -q "nowhere/policy-v000001.safetensors" "$T/err.txt"
check "missing weight file: message names the step" grep -q "step 1" "$T/err.txt"
"$B/maye" cat "$T/sync_out.zst" >"$T/sync.jsonl" 2>/dev/null
check "missing weight file: only step 0's rollouts" test "$(count '"rollout"' "$T/sync.jsonl")" -eq 3
expect_error "rollout.max_batch_tokens" "$B/maye-rollout" --config "$T/c.yaml" rollout.max_batch_tokens=50 \
    -i "$T/q.zst" -o "$T/x.zst"
expect_error "rollout.top_p must be in (0, 1]" "$B/maye-rollout" --config "$T/c.yaml" rollout.top_p=0 \
    -i "$T/q.zst" -o "$T/x.zst"
expect_error "unknown option or missing value: '--bogus'" "$B/maye-rollout" --bogus
expect_error "no model: set model.path" "$B/maye-rollout" model.tokenizer=$TOK -i "$T/q.zst" -o "$T/x.zst"
check "no output file after errors" test ! -e "$T/x.zst"

[ $fail -eq 0 ] && rm -rf "$T"
[ $fail -eq 0 ] && echo "rollout CLI: ok"
exit $fail
