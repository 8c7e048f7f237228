#!/bin/sh
# maye train end to end on a tiny model: the run directory (metrics, evaluations, checkpoints, saved
# streams), a plain shell pipeline of the four stages giving the same metrics for step 0, replaying the saved
# trajectories into maye-update giving the same weights, maye cat on every saved stream, a stage killed in
# the middle (the orchestrator names it) and --resume finishing the run, and the SFT baseline.
set -e
T=$MAYE_TEST_TMP
B="$MAYE_BIN"
fail() { echo "FAIL: $*"; exit 1; }

"$B/maye" synth -o "$T/data" --train 12 --validation 4 --test 4 --kinds count --seed 2 2>/dev/null
"$B/maye" init --config configs/demo/model.json -o "$T/init" --seed 1 2>/dev/null
cp configs/demo/tokenizer.json "$T/init/"
cat > "$T/rl.yaml" <<YAML
run_dir: $T/run
model:
  path: $T/init
  threads: 1
data:
  train: $T/data/train.jsonl
  validation: $T/data/validation.jsonl
  test: $T/data/test.jsonl
  batch_size: 4
rollout:
  n: 2
  max_tokens: 12
update:
  lr: 1e-3
  ppo_batch_size: 4
  ppo_backward_batch_size: 2
  save_every: 1
  save_dtype: fp32
train:
  epochs: 2
  eval_every_epochs: 1
  save_streams: true
YAML

# the run directory ------------------------------------------------------------------------------------
"$B/maye" train "$T/rl.yaml" 2> "$T/train.log" || { cat "$T/train.log"; fail "maye train"; }
R="$T/run"
grep -Eq '"status":[[:space:]]*"done"' "$R/run.json" || fail "run.json status"
[ "$(wc -l < "$R/metrics/train.jsonl")" -eq 6 ] || fail "6 steps of metrics expected"
# 3 evaluation points (before, after epoch 1, after epoch 2) x 2 splits x 3 settings
[ "$(wc -l < "$R/metrics/eval.jsonl")" -eq 18 ] || fail "18 evaluation lines expected"
[ -f "$R/eval/epoch-0002/validation-pass@8_t1.0.jsonl" ] || fail "responses of an evaluation"
[ "$(wc -l < "$R/eval/epoch-0002/validation-pass@8_t1.0.jsonl")" -eq 32 ] || fail "pass@8: 4 questions x 8 responses"
[ "$(cat "$R/checkpoints/latest")" = "step-000006" ] || fail "latest checkpoint"
grep -q "step 6/6" "$T/train.log" || fail "progress lines"
for s in queries rollouts trajectories metrics; do
  "$B/maye" cat "$R/streams/$s-from-step-000000.zst" > "$T/$s.jsonl" || fail "maye cat on the saved $s"
done
[ "$(grep -c '"trajectory"' "$T/trajectories.jsonl")" -eq 48 ] || fail "6 steps x 4 queries x 2 responses"

# a plain shell pipeline for step 0 gives the same metrics -------------------------------------------
P="$T/pipe"
"$B/maye-batch" --config "$R/config.yaml" --steps 1 2>/dev/null \
  | "$B/maye-rollout" --config "$R/config.yaml" run_dir="$P" 2>/dev/null \
  | "$B/maye-traj" --config "$R/config.yaml" run_dir="$P" 2>/dev/null \
  | "$B/maye-update" --config "$R/config.yaml" run_dir="$P" 2>/dev/null > "$T/pipe-metrics.zst"
"$B/maye" cat "$T/pipe-metrics.zst" | grep '"metrics"' | sed 's/"seconds[^"]*":[0-9.e+-]*//g' > "$T/pipe0.jsonl"
sed -n 2p "$T/metrics.jsonl" | sed 's/"seconds[^"]*":[0-9.e+-]*//g' > "$T/run0.jsonl"
cmp -s "$T/pipe0.jsonl" "$T/run0.jsonl" || { diff "$T/pipe0.jsonl" "$T/run0.jsonl" | head -5; fail "pipeline metrics differ"; }

# replaying the saved trajectories gives the live run's weights --------------------------------------
"$B/maye-update" --config "$R/config.yaml" run_dir="$T/replay" -i "$R/streams/trajectories-from-step-000000.zst" \
  > /dev/null 2>"$T/replay.log" || { cat "$T/replay.log"; fail "replay"; }
cmp -s "$R/checkpoints/step-000006/model.safetensors" "$T/replay/checkpoints/step-000006/model.safetensors" \
  || fail "replayed weights differ from the live run's"

# a stage killed in the middle: the orchestrator names it; --resume finishes the run ------------------
sed -e "s|run_dir: $T/run|run_dir: $T/killed|" -e 's|epochs: 2|epochs: 3|' "$T/rl.yaml" > "$T/killed.yaml"
"$B/maye" train "$T/killed.yaml" --no-eval 2> "$T/killed.log" &
pid=$!
i=0
while [ ! -f "$T/killed/checkpoints/latest" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done
pkill -KILL -f "maye-rollout --config $T/killed/config.yaml" || true
if wait $pid; then fail "maye train survived a killed stage"; fi
grep -q "maye-rollout was killed by signal 9" "$T/killed.log" || { cat "$T/killed.log"; fail "the killed stage is not named"; }
grep -Eq '"status":[[:space:]]*"failed"' "$T/killed/run.json" || fail "status failed"
"$B/maye" train --resume "$T/killed" --no-eval 2> "$T/resume.log" || { cat "$T/resume.log"; fail "resume"; }
grep -Eq '"status":[[:space:]]*"done"' "$T/killed/run.json" || fail "resumed run not done"
[ "$(cat "$T/killed/checkpoints/latest")" = "step-000009" ] || fail "resumed run did not reach step 9"
# the resumed run ends with the weights of an uninterrupted one
sed -e "s|run_dir: $T/run|run_dir: $T/straight|" -e 's|epochs: 2|epochs: 3|' "$T/rl.yaml" > "$T/straight.yaml"
"$B/maye" train "$T/straight.yaml" --no-eval 2>/dev/null || fail "straight run"
cmp -s "$T/straight/checkpoints/step-000009/model.safetensors" "$T/killed/checkpoints/step-000009/model.safetensors" \
  || fail "kill + resume gave other weights than a straight run"

# Ctrl-C (SIGINT): a clean stop within seconds, status "stopped", and --resume finishes the same run ------
sed -e "s|run_dir: $T/run|run_dir: $T/interrupted|" -e 's|epochs: 2|epochs: 3|' "$T/rl.yaml" > "$T/interrupted.yaml"
"$B/maye" train "$T/interrupted.yaml" --no-eval 2> "$T/interrupted.log" &
pid=$!
i=0
while [ ! -f "$T/interrupted/checkpoints/latest" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done
kill -INT $pid
set +e
wait $pid
code=$?
set -e
[ $code -eq 130 ] || { cat "$T/interrupted.log"; fail "Ctrl-C: exit status $code, expected 130"; }
grep -Eq '"status":[[:space:]]*"stopped"' "$T/interrupted/run.json" || fail "status stopped"
grep -q "continue with: maye train --resume" "$T/interrupted.log" || fail "no resume hint"
"$B/maye" train --resume "$T/interrupted" --no-eval 2> "$T/resume2.log" || { cat "$T/resume2.log"; fail "resume after Ctrl-C"; }
cmp -s "$T/straight/checkpoints/step-000009/model.safetensors" "$T/interrupted/checkpoints/step-000009/model.safetensors" \
  || fail "Ctrl-C + resume gave other weights than a straight run"

# the SFT baseline -------------------------------------------------------------------------------------
sed -e "s|run_dir: $T/run|run_dir: $T/sft|" "$T/rl.yaml" > "$T/sft.yaml"
"$B/maye" sft "$T/sft.yaml" 2> "$T/sft.log" || { cat "$T/sft.log"; fail "maye sft"; }
grep -Eq '"kind":[[:space:]]*"sft"' "$T/sft/run.json" || fail "sft run kind"
grep -q '"loss"' "$T/sft/metrics/train.jsonl" || fail "sft metrics"
[ "$(wc -l < "$T/sft/metrics/eval.jsonl")" -eq 18 ] || fail "sft evaluations"

# an evaluation pointed at the training run's directory is refused, the run left as it was ------------------
cp "$R/config.yaml" "$T/config.before"
if "$B/maye" eval "$T/rl.yaml" --checkpoint "$T/init" 2> "$T/eval_into_run.log"; then fail "eval into an RL run directory"; fi
grep -q "holds a run of kind 'rl'" "$T/eval_into_run.log" || { cat "$T/eval_into_run.log"; fail "no message for eval into a run"; }
cmp -s "$R/config.yaml" "$T/config.before" || fail "the refused eval changed the run's config.yaml"
grep -Eq '"kind":[[:space:]]*"rl"' "$R/run.json" || fail "the refused eval changed run.json"
# --resume takes the run's own configuration: overrides are refused, not ignored
if "$B/maye" train --resume "$R" train.epochs=3 2> "$T/resume_ov.log"; then fail "--resume with an override"; fi
grep -q "leave out CONFIG, key=value overrides" "$T/resume_ov.log" || { cat "$T/resume_ov.log"; fail "no message for --resume overrides"; }

# bad configuration: a clear error, no run --------------------------------------------------------------
if "$B/maye" train "$T/rl.yaml" rollout.temprature=0.5 2> "$T/bad.log"; then fail "a typo was accepted"; fi
grep -q "did you mean 'rollout.temperature'" "$T/bad.log" || fail "no suggestion for a typo"
echo ok
