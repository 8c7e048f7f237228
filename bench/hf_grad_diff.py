"""Differential check of maye's CPU backward against torch autograd on transformers' model.

Optional reference script, not on any user path (needs torch and transformers). For each case it makes a
random model and input as bench/hf_diff.py does, runs `maye grad` (the gradients of the mean next-token
log-prob with respect to the language model, the merger and the vision tower, through maye-update's
training forward and backward) and the same loss through transformers (fp32, eager attention) with
torch autograd, and compares every tensor's gradient: the largest difference relative to the tensor's
largest gradient, and the relative L2 error. Prints one JSON line per case; exits 1 if any tensor is off by
more than 1e-3 relative to its scale.

Usage: python3 bench/hf_grad_diff.py [--cases N] [--seed S] [--recompute] [--bin build/bin] [--keep DIR]
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_diff import load_model, make_case  # noqa: E402  (the same random models and inputs)


def hf_name(name):
    """transformers 5's parameter name for a checkpoint tensor name."""
    if name.startswith("visual."):
        return "model." + name
    if name.startswith("model."):
        return "model.language_model." + name[len("model."):]
    return name


def case(i, r, bin_dir, tmp, recompute):
    cfg, ck, in_path, t, extra, grids = make_case(i, r, bin_dir, tmp, max_side=240)
    out_path = os.path.join(os.path.dirname(in_path), "grad.safetensors")
    cmd = [f"{bin_dir}/maye", "grad", "--model", ck, "--in", in_path, "--out", out_path, "--threads", "2"]
    p = subprocess.run(cmd + (["--recompute"] if recompute else []), capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"maye grad: exit {p.returncode}\n{p.stderr[-2000:]}")
    got = load_file(out_path)

    model = load_model(cfg, ck)
    params = dict(model.named_parameters())
    logits = model(input_ids=t, **extra).logits[0]
    lp = F.log_softmax(logits[:-1].float(), -1).gather(1, t[0, 1:, None])[:, 0]
    loss = lp.mean()
    loss.backward()

    worst, worst_name, worst_l2 = 0.0, None, 0.0
    n = 0
    for name, g in got.items():
        if name == "loss":
            continue
        w = params[hf_name(name)].grad
        if w is None:  # e.g. the vision tower on a text-only input: maye writes zeros
            w = torch.zeros_like(params[hf_name(name)])
        w = w.reshape(-1)
        scale = max(w.abs().max().item(), 1e-12)
        rel = (g - w).abs().max().item() / scale
        l2 = ((g - w).norm() / max(w.norm().item(), 1e-12)).item()
        n += 1
        if rel > worst:
            worst, worst_name, worst_l2 = rel, name, l2
    ok = worst <= 1e-3 and abs(got["loss"].item() - loss.item()) <= 1e-5 * max(1.0, abs(loss.item()))
    print(json.dumps({"case": i, "model_type": cfg["model_type"], "tokens": int(t.shape[1]), "grids": grids,
                      "heads_per_kv": cfg["num_attention_heads"] // cfg["num_key_value_heads"],
                      "recompute": recompute, "tensors": n, "loss": got["loss"].item(), "loss_hf": loss.item(),
                      "worst_rel_max_diff": worst, "worst_tensor": worst_name, "its_rel_l2": worst_l2, "ok": ok}),
          flush=True)
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--recompute", action="store_true")
    ap.add_argument("--bin", default="build/bin")
    ap.add_argument("--keep", default=None, help="keep the cases' files in this directory")
    a = ap.parse_args()
    r = random.Random(a.seed)
    tmp = a.keep or tempfile.mkdtemp(prefix="maye-hf-grad-")
    os.makedirs(tmp, exist_ok=True)
    bad = sum(not case(i, r, os.path.abspath(a.bin), tmp, a.recompute) for i in range(a.cases))
    print(json.dumps({"cases": a.cases, "failed": bad, "dir": tmp if a.keep else None}))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
