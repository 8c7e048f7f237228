#!/bin/sh
# Issue 8's interoperability check on the device: a checkpoint that maye-update writes while training on the
# GPU loads in Hugging Face transformers and gives the logits of maye's forward (1e-4). A few SFT steps of a
# small Qwen2-VL (configs/demo/model.json with head dim 64, so bf16 training runs the flash attention
# backward) on a rendered counting set, with model.device=$DEVICE and model.dtype=$DTYPE, whose losses must be
# finite and end below where they started (a backward gone wrong rarely trains); then maye forward (CPU,
# fp32) and bench/hf_checkpoint_parity.py (transformers, fp32; a bf16 checkpoint's fp32 masters on both
# sides) on one sequence with an image. Optional: needs python3 with torch and transformers.
#
#   sh bench/gpu_checkpoint_parity.sh [BIN_DIR]     BIN_DIR: maye and the stages (default build/bin)
#   DEVICE=cpu sh bench/gpu_checkpoint_parity.sh    the same on the CPU backend (no GPU needed)
#
# Prints two JSON lines on stdout (the training losses, the parity check) and diagnostics on stderr; exit
# status 0 when both passed, 77 when python3/transformers are missing, 1 otherwise. Scratch files go to a
# temporary directory, removed at the end (also when stopped by a signal).
set -eu
B=${1:-build/bin}
DEVICE=${DEVICE:-cuda}
DTYPE=${DTYPE:-bf16}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
python3 -c "import torch, transformers, safetensors" 2>/dev/null ||
  { echo "gpu_checkpoint_parity: python3 with torch and transformers is needed; skipped" >&2; exit 77; }
[ -x "$B/maye" ] || { echo "gpu_checkpoint_parity: $B/maye is missing" >&2; exit 1; }
T=$(mktemp -d "${TMPDIR:-/tmp}/maye-ckpt-parity.XXXXXX")
trap 'rm -rf "$T"' EXIT
trap 'exit 143' TERM INT HUP

# the demo model with 2 heads of 64 (the flash backward's head dim) and its tokenizer
sed 's/"num_attention_heads": 4/"num_attention_heads": 2/; s/"num_key_value_heads": 2/"num_key_value_heads": 1/;
     s/"mrope_section": \[4, 6, 6\]/"mrope_section": [8, 12, 12]/' "$root/configs/demo/model.json" >"$T/model.json"
grep -q '"mrope_section": \[8, 12, 12\]' "$T/model.json" ||
  { echo "gpu_checkpoint_parity: configs/demo/model.json changed shape" >&2; exit 1; }
"$B/maye" synth -o "$T/data" --train 64 --validation 8 --test 8 --kinds count --seed 3 --size 84 >"$T/prep.log" 2>&1 &&
  "$B/maye" init --config "$T/model.json" -o "$T/init" --seed 1 >>"$T/prep.log" 2>&1 ||
  { cat "$T/prep.log" >&2; echo "gpu_checkpoint_parity: maye synth / init failed" >&2; exit 1; }
cp "$root/configs/demo/tokenizer.json" "$T/init/"
cat >"$T/sft.yaml" <<EOF
seed: 0
run_dir: $T/sft
model:
  path: $T/init
  device: $DEVICE
  dtype: $DTYPE
data:
  train: $T/data/train.jsonl
  validation: $T/data/validation.jsonl
  test: $T/data/test.jsonl
  batch_size: 16
  prompt_suffix: "\nPut the final answer in \\\\boxed{}."
update:
  lr: 2e-3
  weight_decay: 0.0
  ppo_batch_size: 16
  ppo_backward_batch_size: 16
train:
  epochs: 1
EOF
"$B/maye" sft "$T/sft.yaml" --no-eval >"$T/sft.log" 2>&1 ||
  { tail -n 20 "$T/sft.log" >&2; echo "gpu_checkpoint_parity: maye sft failed" >&2; exit 1; }
ckpt="$T/sft/checkpoints/$(cat "$T/sft/checkpoints/latest")"
python3 - "$T/sft/metrics/train.jsonl" "$DEVICE" "$DTYPE" <<'EOF'
import json, math, sys
losses = [json.loads(line)["loss"] for line in open(sys.argv[1])]
ok = len(losses) >= 2 and all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
print(json.dumps({"check": "sft_losses", "device": sys.argv[2], "dtype": sys.argv[3], "losses": losses, "ok": ok}))
sys.exit(0 if ok else 1)
EOF

# one sequence: text, <|vision_start|>, the image's 4 merged tokens, <|vision_end|>, text; a 56x56 image
python3 - "$T/init/config.json" "$T/in.safetensors" <<'EOF'
import json, sys
import torch
from safetensors.torch import save_file
cfg = json.load(open(sys.argv[1]))
v = cfg["vision_config"]
g = torch.Generator().manual_seed(5)
grid = torch.tensor([[1, 4, 4]], dtype=torch.int64)
merged = int(grid.prod()) // v["spatial_merge_size"] ** 2
text = lambda n: torch.randint(20, cfg["vocab_size"], (n,), generator=g).tolist()
ids = text(7) + [cfg["vision_start_token_id"]] + [cfg["image_token_id"]] * merged + [cfg["vision_end_token_id"]] + text(9)
pix = torch.randn(int(grid.prod()), v["in_chans"] * v["temporal_patch_size"] * v["patch_size"] ** 2, generator=g)
save_file({"input_ids": torch.tensor(ids, dtype=torch.int64), "pixel_values": pix, "image_grid_thw": grid},
          sys.argv[2])
EOF
"$B/maye" forward --model "$ckpt" --in "$T/in.safetensors" --out "$T/out.safetensors" >/dev/null
python3 "$here/hf_checkpoint_parity.py" "$ckpt" "$T/in.safetensors" "$T/out.safetensors"
