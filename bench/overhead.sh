#!/bin/sh
# Share of step time spent outside the model on the demo's pipeline (issue 7): runs `maye train` on the
# demo's model and data shape (a counting dataset, the demo's 1M-parameter Qwen2-VL, rollout n=4 x 16
# queries per step), then reads the per-step timing lines every stage writes to its log (see
# lib/io/steps.h: wall = model + records + idle) and prints one JSON line per stage (busy = model + records,
# idle = waiting for input, a full pipe or a policy version) and one for the whole pipeline: records
# (protobuf encode/decode + zstd) over busy time, the target being <= 0.05.
#   usage: BUILD=build sh bench/overhead.sh [steps]
set -e
BUILD=${BUILD:-build}
B="$BUILD/bin"
steps=${1:-16}
T=$(mktemp -d "${TMPDIR:-/tmp}/maye-overhead.XXXXXX")
trap 'rm -rf "$T"' EXIT
"$B/maye" synth -o "$T/data" --train $((steps * 16)) --validation 8 --test 8 --kinds count --size 84 --seed 3 2>/dev/null
"$B/maye" init --config configs/demo/model.json -o "$T/init" --seed 0 2>/dev/null
cp configs/demo/tokenizer.json "$T/init/"
"$B/maye" train configs/demo/rl.yaml model.path="$T/init" run_dir="$T/run" train.seeds=1 train.epochs=1 \
  data.train="$T/data/train.jsonl" data.validation="$T/data/validation.jsonl" data.test="$T/data/test.jsonl" \
  --no-eval 2>"$T/train.log" || { tail -n 20 "$T/train.log" >&2; exit 1; }
total=0
for stage in batch rollout traj update; do
  grep -h 'timing {' "$T/run/logs/$stage.log" | sed 's/.*timing //' | awk -v stage="$stage" '
    { gsub(/[{}",:]/, " "); for (i = 1; i < NF; i++) { if ($i == "wall_s") w += $(i+1); if ($i == "model_s") m += $(i+1);
      if ($i == "records_s") r += $(i+1); if ($i == "idle_s") d += $(i+1) } n++ }
    END { busy = m + r; printf "{\"bench\": \"overhead\", \"stage\": \"%s\", \"steps\": %d, \"wall_s\": %.3f, \"busy_s\": %.3f, \"model_s\": %.3f, \"records_s\": %.3f, \"idle_s\": %.3f, \"records_share_of_busy\": %.4f}\n", stage, n, w, busy, m, r, d, (busy > 0 ? r / busy : 0) }'
done > "$T/stages.jsonl"
cat "$T/stages.jsonl"
awk '{ gsub(/[{}",:]/, " "); for (i = 1; i < NF; i++) { if ($i == "busy_s") b += $(i+1); if ($i == "records_s") r += $(i+1) } }
  END { printf "{\"bench\": \"overhead\", \"stage\": \"pipeline\", \"busy_s\": %.3f, \"records_s\": %.3f, \"share_outside_model\": %.4f, \"target\": 0.05, \"meets_target\": %s}\n", b, r, r / b, (r / b <= 0.05) ? "true" : "false" }' \
  "$T/stages.jsonl"
