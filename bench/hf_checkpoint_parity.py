"""Checks that a checkpoint written by maye-update loads in Hugging Face transformers and gives the same
logits as maye's CPU forward (issue 8's interoperability check; run where transformers is installed).

Optional reference script, not on any user path. Usage:
  python3 bench/hf_checkpoint_parity.py CHECKPOINT_DIR IN.safetensors OUT.safetensors
IN holds input_ids / pixel_values / image_grid_thw (maye forward's input), OUT is `maye forward`'s output
for the same checkpoint. Prints one JSON line; exits 1 if the logits differ by more than 1e-4.

A checkpoint saved in bf16 also holds master.safetensors (the trained weights in fp32, same tensor names),
which maye lays over model.safetensors when it loads the directory and transformers does not read. The check
then gives transformers the masters too (a temporary directory with config.json and the masters as
model.safetensors), so both sides run the same fp32 weights; without that the demo's RL checkpoint differs by
~1e-2 in its logits, the bf16 rounding of its weights.
"""
import json
import os
import sys
import tempfile

import torch
from safetensors.torch import load_file
from transformers import AutoConfig, Qwen2_5_VLForConditionalGeneration, Qwen2VLForConditionalGeneration


def load_model(ckpt):
    """The checkpoint in transformers, fp32, with the masters in place of the weights where they exist."""
    cfg = AutoConfig.from_pretrained(ckpt)
    cls = Qwen2_5_VLForConditionalGeneration if cfg.model_type == "qwen2_5_vl" else Qwen2VLForConditionalGeneration
    master = os.path.join(ckpt, "master.safetensors")
    if not os.path.exists(master):
        return cfg, cls.from_pretrained(ckpt, dtype=torch.float32, attn_implementation="eager").eval(), "model"
    with tempfile.TemporaryDirectory() as tmp:
        os.symlink(os.path.abspath(os.path.join(ckpt, "config.json")), os.path.join(tmp, "config.json"))
        os.symlink(os.path.abspath(master), os.path.join(tmp, "model.safetensors"))
        model = cls.from_pretrained(tmp, dtype=torch.float32, attn_implementation="eager").eval()
    return cfg, model, "master"


def main():
    ckpt, inp, out = sys.argv[1:4]
    cfg, model, weights = load_model(ckpt)
    x = load_file(inp)
    want = load_file(out)["logits"]
    ids = x["input_ids"][None]
    extra = {}
    if "pixel_values" in x:  # transformers 5 wants the image-token mask the processor would return
        extra = {"pixel_values": x["pixel_values"], "image_grid_thw": x["image_grid_thw"],
                 "mm_token_type_ids": (ids == cfg.image_token_id).long()}
    with torch.no_grad():
        logits = model(input_ids=ids, **extra).logits[0]
    diff = (logits - want).abs().max().item()
    print(json.dumps({"check": "hf_checkpoint_parity", "model_type": cfg.model_type, "weights": weights,
                      "tokens": int(logits.shape[0]), "vocab": int(logits.shape[1]), "max_abs_diff": diff,
                      "ok": diff <= 1e-4}))
    sys.exit(0 if diff <= 1e-4 else 1)


if __name__ == "__main__":
    main()
