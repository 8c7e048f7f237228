"""PyTorch / transformers baseline for bench/gpu_model.cu on the same GPU: the same Qwen2-VL-2B-shaped model
(random weights, bf16, the config.json that `gpu_model --write-config` writes) and the same two jobs.
  rollout  transformers generate() on 64 prompts of the same shape (one 448x448 image + 42 text tokens),
           256 new tokens each (min_new_tokens = max_new_tokens), temperature 1, top-p 1, no top-k
  update   forward + backward + clip + fused AdamW on 8 x 1024 text tokens with gradient checkpointing, the
           vision tower frozen; tokens/s, model TFLOP/s (the same 6 N + attention count as gpu_model.cu) and
           the fraction of torch's own 8192^3 bf16 matmul rate, torch.cuda.max_memory_allocated
One JSON line per result with "impl": "torch"; with --ours FILE (gpu_model's output) also "compare" lines with
maye / torch ratios and the targets of issue 8. Optional: run by bench/gpu_model.sh when torch sees a GPU;
never on the user's path.
  python3 bench/gpu_model_baseline.py --config CONFIG.json [--ours gpu_model.jsonl] [--prompts 64] [--new 256]
"""
import argparse
import json
import os
import shutil
import tempfile
import time

import torch

from gpu_digest import load as load_jsonl  # bench/ is this script's directory, first on sys.path

dev = "cuda"


def emit(rec):
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in rec.items()}), flush=True)


def section(name, fn):
    try:
        fn()
    except Exception as e:  # a failing section must not hide the others
        emit({"bench": name, "impl": "torch", "error": repr(e)[:500]})
    torch.cuda.empty_cache()


def gemm_peak():
    a = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b.t()
    torch.cuda.synchronize()
    times = []
    for _ in range(5):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        for _ in range(5):
            a @ b.t()
        e1.record()
        e1.synchronize()
        times.append(e0.elapsed_time(e1) / 5)
    ms = sorted(times)[2]
    return 2 * 8192 ** 3 / (ms * 1e-3) / 1e12


def build_model(config_path):
    from transformers import AutoConfig, Qwen2VLForConditionalGeneration
    d = tempfile.mkdtemp()
    shutil.copy(config_path, os.path.join(d, "config.json"))
    cfg = AutoConfig.from_pretrained(d)
    shutil.rmtree(d)
    torch.manual_seed(0)
    with torch.device(dev):
        model = Qwen2VLForConditionalGeneration(cfg)
    return cfg, model.to(torch.bfloat16)


def prompts(cfg, n):
    """The prompts of gpu_model.cu's make_prompts (random ids of the same layout), their pixels and grids."""
    g = torch.Generator(device="cpu").manual_seed(17)
    im_start, im_end, text = 151644, 151645, 151643
    pads = 32 * 32 // 4
    rows = []
    for _ in range(n):
        r = [im_start] + torch.randint(0, text, (4,), generator=g).tolist() + [cfg.vision_start_token_id]
        r += [cfg.image_token_id] * pads + [cfg.vision_end_token_id]
        r += torch.randint(0, text, (30,), generator=g).tolist() + [im_end, im_start]
        r += torch.randint(0, text, (3,), generator=g).tolist()
        rows.append(r)
    ids = torch.tensor(rows, device=dev)
    pixels = torch.rand(n * 32 * 32, 1176, device=dev, dtype=torch.bfloat16) * 2 - 1
    grid = torch.tensor([[1, 32, 32]] * n, device=dev)
    return ids, pixels, grid


def rollout(cfg, model, n, new, results):
    model.eval()
    ids, pixels, grid = prompts(cfg, n)
    base = dict(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixels, image_grid_thw=grid)
    sample = dict(do_sample=True, temperature=1.0, top_p=1.0, top_k=0)

    # transformers 5 wants the image-token mask its processor returns; older versions reject the argument:
    # the warm-up finds out which form works
    extra = {"mm_token_type_ids": (ids == cfg.image_token_id).long()}

    def generate(max_new):
        return model.generate(**base, **extra, max_new_tokens=max_new, min_new_tokens=max_new, **sample)

    with torch.no_grad():
        try:
            generate(4)
        except Exception:
            extra = {}
            generate(4)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        out = generate(new)
        torch.cuda.synchronize()
        secs = time.perf_counter() - t0
    tokens = (out.shape[1] - ids.shape[1]) * n
    rec = {"bench": "rollout", "impl": "torch", "device": torch.cuda.get_device_name(0), "prompts": n,
           "prompt_tokens": ids.shape[1], "new_tokens": new, "seconds": secs, "tokens": tokens,
           "tokens_per_s": tokens / secs, "peak_gb": torch.cuda.max_memory_allocated() / 1e9}
    results.append(rec)
    emit(rec)


def update(cfg, model, steps, peak, results):
    model.train()
    model.config.use_cache = False
    model.gradient_checkpointing_enable()
    visual = getattr(model, "visual", None) or model.model.visual
    for p in visual.parameters():
        p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-6, betas=(0.9, 0.95), weight_decay=0.01, fused=True)
    B, S = 8, 1024
    g = torch.Generator(device="cpu").manual_seed(5)
    ids = torch.randint(0, 151643, (B, S), generator=g).to(dev)

    def step():
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    step(), step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    torch.cuda.synchronize()
    secs = (time.perf_counter() - t0) / steps
    t = cfg.text_config if hasattr(cfg, "text_config") else cfg
    hd = t.num_attention_heads * (t.hidden_size // t.num_attention_heads)
    qkv = (t.num_attention_heads + 2 * t.num_key_value_heads) * (t.hidden_size // t.num_attention_heads)
    n_mm = t.num_hidden_layers * t.hidden_size * (qkv + hd + 3 * t.intermediate_size) + t.vocab_size * t.hidden_size
    flops_tok = 6.0 * n_mm + 6.0 * t.num_hidden_layers * hd * S
    tok_s = B * S / secs
    rec = {"bench": "update", "impl": "torch", "device": torch.cuda.get_device_name(0), "shape": "8x1024 tokens",
           "recompute": True, "ms": secs * 1e3, "tokens_per_s": tok_s, "model_tflops": tok_s * flops_tok / 1e12,
           "mfu": tok_s * flops_tok / 1e12 / peak, "peak_gb": torch.cuda.max_memory_allocated() / 1e9,
           "loss": float(loss)}
    results.append(rec)
    emit(rec)


def compare(ours_path, results):
    ours = load_jsonl(ours_path)
    torch_r = {r["bench"]: r for r in results}
    roll = [r for r in ours if r.get("bench") == "rollout" and r.get("graph") and r.get("new_tokens") ==
            torch_r.get("rollout", {}).get("new_tokens")]
    seen = []  # tile shapes in the order of their first run, the default's first
    for m in roll if "rollout" in torch_r else []:
        t = torch_r["rollout"]
        rows = (m.get("prefill_rows", 0), m.get("prefill_warp_rows", 0))
        if rows in seen:  # the first run of each tile shape (--new 32 also matches the short graph run)
            continue
        seen.append(rows)
        what = "rollout generated tokens/s"
        if rows[0]:
            what += " (%d query rows per prefill attention block)" % rows[0]
        if rows[1]:
            what += " (prefill attention in %d-row warps)" % rows[1]
        emit({"bench": "compare", "what": what, "maye": m["tokens_per_s"],
              "torch": t["tokens_per_s"], "ratio": m["tokens_per_s"] / t["tokens_per_s"], "target": 15.0,
              "maye_hbm_fraction": m.get("hbm_fraction"), "maye_vision_s": m.get("vision_s")})
    for rec in (r for r in ours if r.get("bench") == "update"):
        if "update" not in torch_r:
            break
        t = torch_r["update"]
        what = "update tokens/s (%s attention backward%s%s)" % (
            rec.get("attention_backward", "gemm"), ", recompute" if rec["recompute"] else "",
            ", forward attention in %d-row warps" % rec["prefill_warp_rows"] if rec.get("prefill_warp_rows") else "")
        emit({"bench": "compare", "what": what,
              "maye": rec["tokens_per_s"], "torch": t["tokens_per_s"], "ratio": rec["tokens_per_s"] / t["tokens_per_s"],
              "target": 1.3, "maye_mfu": rec["mfu"], "torch_mfu": t["mfu"], "maye_gb": rec["device_used_gb"],
              "torch_gb": t["peak_gb"]})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--ours")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--new", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--only", choices=["rollout", "update"])
    args = ap.parse_args()
    results = []
    peak = gemm_peak()
    emit({"bench": "gemm_peak", "impl": "torch", "device": torch.cuda.get_device_name(0), "tflops": peak})
    holder = {}
    section("model_init", lambda: holder.update(zip(("cfg", "model"), build_model(args.config))))
    if "model" in holder:
        if args.only in (None, "rollout"):
            section("rollout", lambda: rollout(holder["cfg"], holder["model"], args.prompts, args.new, results))
        if args.only in (None, "update"):
            section("update", lambda: update(holder["cfg"], holder["model"], args.steps, peak, results))
    if args.ours:
        compare(args.ours, results)


if __name__ == "__main__":
    main()
