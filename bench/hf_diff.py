"""Differential check of maye's CPU forward against Hugging Face transformers on random models and inputs.

Optional reference script, not on any user path (needs torch and transformers). For each case it draws a
Qwen2-VL or Qwen2.5-VL config with odd sizes (head dims, M-RoPE sections, vision widths, Qwen2.5-VL windows
and full-attention blocks), makes the checkpoint with `maye init`, moves every weight off maye's init values
(norm weights 1 and biases 0 would hide a misplaced gain or bias), draws 0-3 images of random sizes (through
`maye preprocess`) between random text, and compares `maye forward`'s logits with transformers' (fp32,
eager attention), then `maye generate`'s greedy tokens (the KV cache and the decode step of maye-rollout's
engine) with transformers' generate(): the same ids, or a first difference where transformers' two best
logits are within 1e-4 (a tie either side may break). Prints one JSON line per case and exits 1 if any case
differs: logits by more than 1e-4 relative to their scale, or greedy ids.

Usage: python3 bench/hf_diff.py [--cases N] [--seed S] [--new-tokens N] [--max-side PX] [--bin build/bin]
                                [--keep DIR]
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

import numpy as np
import torch
from PIL import Image
from safetensors.numpy import load_file as load_np
from safetensors.numpy import save_file as save_np
from safetensors.torch import load_file
from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2VLForConditionalGeneration

SPECIAL = {"bos_token_id": 1, "eos_token_id": 2, "vision_start_token_id": 3, "vision_end_token_id": 4,
           "vision_token_id": 5, "image_token_id": 6, "video_token_id": 7}


def mrope_section(half, r):
    """Three positive parts summing to half (temporal, height, width)."""
    a = r.randint(1, half - 2)
    b = r.randint(1, half - a - 1)
    return [a, b, half - a - b]


def random_config(r):
    q25 = r.random() < 0.5
    head_dim = r.choice([8, 16, 24, 32])
    kv = r.choice([1, 2])
    heads = kv * r.choice([1, 2, 3, 5, 6, 7])  # the released models have 6 (2B) and 7 (7B) per kv head
    hidden = heads * head_dim  # Qwen2-VL's head dim is hidden / heads
    vheads = r.choice([1, 2, 3])
    vhead_dim = r.choice([8, 16, 20])
    cfg = {"architectures": ["Qwen2_5_VLForConditionalGeneration" if q25 else "Qwen2VLForConditionalGeneration"],
           "model_type": "qwen2_5_vl" if q25 else "qwen2_vl", "vocab_size": r.choice([97, 256, 333]),
           "hidden_size": hidden, "intermediate_size": r.choice([48, 80, 100]),
           "num_hidden_layers": r.choice([1, 2, 3]), "num_attention_heads": heads, "num_key_value_heads": kv,
           "rms_norm_eps": 1e-6, "rope_theta": r.choice([10000.0, 1000000.0]),
           "hidden_act": "silu", "tie_word_embeddings": r.random() < 0.5, "initializer_range": 0.05,
           "max_position_embeddings": 4096, "rope_scaling": {"type": "mrope",
                                                             "mrope_section": mrope_section(head_dim // 2, r)},
           **SPECIAL}
    v = {"depth": r.choice([1, 2, 3]), "num_heads": vheads, "in_chans": 3, "patch_size": 14,
         "spatial_merge_size": 2, "temporal_patch_size": 2}
    if q25:
        v.update({"hidden_size": vheads * vhead_dim, "intermediate_size": r.choice([32, 56]), "hidden_act": "silu",
                  "out_hidden_size": hidden, "window_size": r.choice([56, 112]),
                  "fullatt_block_indexes": sorted(r.sample(range(v["depth"]), r.randint(0, v["depth"])))})
    else:
        v.update({"embed_dim": vheads * vhead_dim, "mlp_ratio": r.choice([2, 3]), "hidden_size": hidden,
                  "hidden_act": "quick_gelu"})
    cfg["vision_config"] = v
    return cfg


def head_dim(cfg):
    return cfg["hidden_size"] // cfg["num_attention_heads"]


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}\n{p.stderr[-2000:]}")


def perturb(path, r):
    """Every weight moved by up to +-0.1 of noise (norm weights and biases too)."""
    w = load_np(path)
    g = np.random.default_rng(r.randrange(1 << 30))
    save_np({k: (v + g.uniform(-0.1, 0.1, v.shape)).astype(np.float32) for k, v in w.items()}, path)


def greedy(model, t, extra, n):
    """transformers' greedy continuation of t: the ids and each step's margin between the two best logits."""
    with torch.no_grad():
        out = model.generate(input_ids=t, **extra, max_new_tokens=n, do_sample=False, output_scores=True,
                             return_dict_in_generate=True, eos_token_id=None, pad_token_id=0)
    ids = out.sequences[0, t.shape[1]:].tolist()
    margins = [float(s[0].topk(2).values[0] - s[0].topk(2).values[1]) for s in out.scores]
    return ids, margins


def make_case(i, r, bin_dir, tmp, max_side=420):
    """A random model (checkpoint directory) and one input sequence (a safetensors file for the maye debug
    commands). Returns the config, the checkpoint directory, the input's path and transformers' inputs."""
    cfg = random_config(r)
    d = os.path.join(tmp, f"case{i}")
    os.makedirs(d)
    with open(os.path.join(d, "config.in.json"), "w") as f:
        json.dump(cfg, f)
    ck = os.path.join(d, "model")
    run([f"{bin_dir}/maye", "init", "--config", os.path.join(d, "config.in.json"), "-o", ck, "--seed", str(i)])
    perturb(os.path.join(ck, "model.safetensors"), r)

    ids, pix, grids = [], [], []
    text = lambda n: [r.randrange(8, cfg["vocab_size"]) for _ in range(n)]
    ids += text(r.randint(1, 9))
    for k in range(r.choice([0, 1, 1, 2, 3])):
        big = r.random() < 0.3  # several Qwen2.5-VL windows, with partial ones at the edges
        w, h = r.randint(28, max_side if big else 180), r.randint(28, max_side if big else 180)
        png = os.path.join(d, f"img{k}.png")
        Image.fromarray(np.random.default_rng(r.randrange(1 << 30)).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(png)
        st = os.path.join(d, f"img{k}.safetensors")
        run([f"{bin_dir}/maye", "preprocess", png, "-o", st])
        p = load_np(st)
        pix.append(p["pixel_values"])
        grids.append(p["image_grid_thw"])
        ids += [SPECIAL["vision_start_token_id"]] + [SPECIAL["image_token_id"]] * (int(p["image_grid_thw"].prod()) // 4)
        ids += [SPECIAL["vision_end_token_id"]] + text(r.randint(0, 6))
    ids += text(r.randint(1, 5))
    inp = {"input_ids": np.array(ids, dtype=np.int64)}
    if pix:
        inp["pixel_values"] = np.concatenate(pix)
        inp["image_grid_thw"] = np.concatenate(grids)
    in_path = os.path.join(d, "in.safetensors")
    save_np(inp, in_path)
    x = load_file(in_path)
    t = x["input_ids"][None]
    extra = {}
    if pix:
        extra = {"pixel_values": x["pixel_values"], "image_grid_thw": x["image_grid_thw"],
                 "mm_token_type_ids": (t == SPECIAL["image_token_id"]).long()}
    return cfg, ck, in_path, t, extra, [g.tolist()[0] for g in grids]


def load_model(cfg, ck):
    cls = Qwen2_5_VLForConditionalGeneration if cfg["model_type"] == "qwen2_5_vl" else Qwen2VLForConditionalGeneration
    return cls.from_pretrained(ck, dtype=torch.float32, attn_implementation="eager").eval()


def case(i, r, bin_dir, tmp, new_tokens, max_side):
    cfg, ck, in_path, t, extra, grids = make_case(i, r, bin_dir, tmp, max_side)
    out_path = os.path.join(os.path.dirname(in_path), "out.safetensors")
    run([f"{bin_dir}/maye", "forward", "--model", ck, "--in", in_path, "--out", out_path, "--threads", "2"])

    model = load_model(cfg, ck)
    with torch.no_grad():
        logits = model(input_ids=t, **extra).logits[0]
    want = load_file(out_path)["logits"]
    diff = (logits - want).abs().max().item()
    scale = want.abs().max().item()
    ok = diff <= 1e-4 * max(1.0, scale)

    gen = subprocess.run([f"{bin_dir}/maye", "generate", "--model", ck, "--in", in_path, "--max-new-tokens",
                          str(new_tokens), "--stop-ids", "", "--threads", "2"], capture_output=True, text=True)
    if gen.returncode != 0:
        raise RuntimeError(f"maye generate: exit {gen.returncode}\n{gen.stderr[-2000:]}")
    got_ids = json.loads(gen.stdout.splitlines()[0])["ids"]
    want_ids, margins = greedy(model, t, extra, new_tokens)
    first = next((k for k in range(new_tokens) if got_ids[k] != want_ids[k]), None)
    same = first is None or margins[first] < 1e-4
    ok = ok and same
    v = cfg["vision_config"]
    print(json.dumps({"case": i, "model_type": cfg["model_type"], "tokens": int(t.shape[1]), "images": len(grids),
                      "grids": grids, "head_dim": head_dim(cfg),
                      "mrope_section": cfg["rope_scaling"]["mrope_section"], "vision_heads": v["num_heads"],
                      "max_abs_diff": diff, "logit_scale": scale, "greedy_tokens": new_tokens,
                      "greedy_first_difference": first, "ok": ok}), flush=True)
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--max-side", type=int, default=420, help="largest image side of the big images (pixels)")
    ap.add_argument("--bin", default="build/bin")
    ap.add_argument("--keep", default=None, help="keep the cases' files in this directory")
    a = ap.parse_args()
    r = random.Random(a.seed)
    tmp = a.keep or tempfile.mkdtemp(prefix="maye-hf-diff-")
    os.makedirs(tmp, exist_ok=True)
    bad = sum(not case(i, r, os.path.abspath(a.bin), tmp, a.new_tokens, a.max_side) for i in range(a.cases))
    print(json.dumps({"cases": a.cases, "failed": bad, "dir": tmp if a.keep else None}))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
