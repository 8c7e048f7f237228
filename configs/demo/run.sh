#!/bin/sh
# The CPU demo (make demo): synth -> init -> SFT warm start -> RL (3 seeds) -> report, under runs/demo.
# It renders a counting dataset (how many shapes of one colour on a 3x3 grid; 84x84 pixels, so each cell is
# one visual token of the model; the test split shows an unseen shape on a denser grid), makes a
# 1M-parameter Qwen2-VL from scratch with the demo tokenizer, fine-tunes it on the first 800 training
# samples, trains it with RL on the other 1600 from the SFT model (3 seeds), evaluates every epoch under the
# MAYE settings, and prints the accuracy table. About 15 minutes on 2 cores.
set -e
cd "$(dirname "$0")/../.."
B=${MAYE_BIN:-build/bin}
D=runs/demo
[ -x "$B/maye" ] || { echo "demo: $B/maye is missing; run make first"; exit 1; }
if [ -e "$D" ]; then
  echo "demo: $D exists; moving it to $D.old"
  rm -rf "$D.old"
  mv "$D" "$D.old"
fi
mkdir -p "$D"
start=$(date +%s)

echo "demo: 1/5 rendering the dataset"
"$B/maye" synth -o "$D/data" --train 2400 --validation 512 --test 128 --kinds count --seed 7 --size 84
head -n 800 "$D/data/train.jsonl" > "$D/data/sft.jsonl"
tail -n 1600 "$D/data/train.jsonl" > "$D/data/rl.jsonl"

echo "demo: 2/5 making a tiny Qwen2-VL from scratch"
"$B/maye" init --config configs/demo/model.json -o "$D/init" --seed 0
cp configs/demo/tokenizer.json "$D/init/"

echo "demo: 3/5 SFT warm start (the first 800 training samples)"
"$B/maye" sft configs/demo/sft.yaml
sft_ckpt="$D/sft/checkpoints/$(cat "$D/sft/checkpoints/latest")"

echo "demo: 4/5 RL from the SFT model, 3 seeds (the other 1600 training samples)"
"$B/maye" train configs/demo/rl.yaml model.path="$sft_ckpt"

echo "demo: 5/5 report"
"$B/maye" report "$D/rl" --sft "$D/sft" -o "$D/report"
echo "demo: done in $(( $(date +%s) - start )) s; open $D/report/index.html"
