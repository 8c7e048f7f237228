"""Checks that a checkpoint written by maye-update loads in Hugging Face transformers and gives the same
logits as maye's CPU forward (issue 8's interoperability check; run where transformers is installed).

Optional reference script, not on any user path. Usage:
  python3 bench/hf_checkpoint_parity.py CHECKPOINT_DIR IN.safetensors OUT.safetensors
IN holds input_ids / pixel_values / image_grid_thw (maye forward's input), OUT is `maye forward`'s output
for the same checkpoint. Prints one JSON line; exits 1 if the logits differ by more than 1e-4.
"""
import json
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoConfig, Qwen2_5_VLForConditionalGeneration, Qwen2VLForConditionalGeneration


def main():
    ckpt, inp, out = sys.argv[1:4]
    cfg = AutoConfig.from_pretrained(ckpt)
    cls = Qwen2_5_VLForConditionalGeneration if cfg.model_type == "qwen2_5_vl" else Qwen2VLForConditionalGeneration
    model = cls.from_pretrained(ckpt, torch_dtype=torch.float32, attn_implementation="eager").eval()
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
    print(json.dumps({"check": "hf_checkpoint_parity", "model_type": cfg.model_type, "tokens": int(logits.shape[0]),
                      "vocab": int(logits.shape[1]), "max_abs_diff": diff, "ok": diff <= 1e-4}))
    sys.exit(0 if diff <= 1e-4 else 1)


if __name__ == "__main__":
    main()
