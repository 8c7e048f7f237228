#!/usr/bin/env python3
"""A short digest of one bench/gpu.sh run: the few numbers a GPU window is for, from its JSON logs.

Reads LOGS/bench.jsonl (gpu_kernels), LOGS/torch.jsonl (gpu_torch_baseline.py), LOGS/model_bench.jsonl
(gpu_model) and LOGS/model_torch.jsonl (gpu_model_baseline.py), whichever exist, and prints: the issue-8
comparisons, the decode step's GEMMs per cuBLASLt answer, the prefill attention per tile shape next to SDPA,
the attention backward (flash vs GEMMs), the decode attention per split, then where the rollout's and the
update's GPU time goes (the profile lines: per phase, the decode step's regions per step, the update's
largest regions). Optional (python3 only); bench/gpu.sh runs it last.

  python3 bench/gpu_digest.py LOGS [--regions N]
"""
import argparse
import json
import os


def load(path):
    """The JSON objects of a JSON-lines file (other lines skipped); [] when the file does not exist."""
    out = []
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def section(title):
    print("-- " + title)


def comparisons(model_torch):
    rows = [r for r in model_torch if r.get("bench") == "compare"]
    if not rows:
        return
    section("issue 8 targets (maye vs PyTorch, same GPU)")
    for r in rows:
        extra = ""
        if "maye_mfu" in r:
            extra = ", MFU %.3f vs %.3f, %.1f GB vs %.1f GB" % (r["maye_mfu"], r["torch_mfu"], r["maye_gb"], r["torch_gb"])
        elif r.get("maye_hbm_fraction") is not None:
            extra = ", decode at %.2f of copy bandwidth" % r["maye_hbm_fraction"]
            if r.get("maye_vision_s") is not None:
                extra += ", vision %.3f s" % r["maye_vision_s"]
        print("  %-58s %10.1f vs %10.1f  ratio %5.2f (target %.2f)%s" % (r["what"], r["maye"], r["torch"], r["ratio"],
                                                                         r["target"], extra))


def kernels(bench, torch_rows):
    gd = [r for r in bench if r.get("bench") == "gemm_decode"]
    if gd:
        section("decode-step GEMMs (64 rows): cuBLASLt's first answer, the fastest ranked answer, the fastest K split")
        for r in (r for r in gd if "error" in r):
            what = "split %d" % r["splitk"] if "splitk" in r else "rank %d" % r["algo_rank"]
            print("  %-40s %s failed: %s" % (r["shape"], what, r["error"]))
        for shape in dict.fromkeys(r["shape"] for r in gd if "ms" in r):
            rows = [r for r in gd if r["shape"] == shape and "ms" in r and "splitk" not in r]
            splits = [r for r in gd if r["shape"] == shape and "ms" in r and "splitk" in r]
            if not rows or rows[0]["algo_rank"] != 0:
                continue
            first = rows[0]
            best = max(rows, key=lambda r: r["vs_rank0"])
            line = "  %-40s rank 0 %8.4f ms (%.2f of copy bw); best rank %d %8.4f ms (x%.2f)" % (
                shape, first["ms"], first["vs_copy_bandwidth"], best["algo_rank"], best["ms"], best["vs_rank0"])
            if splits:
                bs = max(splits, key=lambda r: r["vs_rank0"])
                line += "; best split %d %8.4f ms (x%.2f, %.2f of copy bw)" % (
                    bs["splitk"], bs["ms"], bs["vs_rank0"], bs["vs_copy_bandwidth"])
            print(line)
    pre = [r for r in bench if r.get("bench") == "attention_prefill"]
    sdpa = {r["shape"]: r["ms"] for r in torch_rows if r.get("bench") == "attention"}
    if pre:
        section("prefill attention (ms)")
        for r in pre:
            base = r["shape"].split(" (")[0]
            ref = sdpa.get(base)
            print("  %-70s %8.4f%s" % (r["shape"], r["ms"], "   SDPA %.4f (x%.2f)" % (ref, r["ms"] / ref) if ref else ""))
    bwd = [r for r in bench if r.get("bench") == "attention_backward"]
    if bwd:
        section("attention backward (ms)")
        for r in bwd:
            print("  %-70s %8.4f" % (r["shape"], r["ms"]))
    dec = [r for r in bench if r.get("bench") in ("attention_decode", "attention_decode_split")]
    if dec:
        section("decode attention per layer (ms, fraction of copy bandwidth)")
        for r in dec:
            print("  %-70s %8.4f  %.3f" % (r["shape"], r["ms"], r.get("vs_copy_bandwidth", 0)))
    ew = [r for r in bench if r.get("bench") in ("rmsnorm", "silu_gated", "silu_gated_rows", "silu_gated_rows_backward",
                                                  "adamw")]
    if ew:
        section("memory-bound kernels (ms, fraction of copy bandwidth)")
        for r in ew:
            print("  %-70s %8.4f  %.3f" % (r["bench"] + " " + r["shape"], r["ms"], r.get("vs_copy_bandwidth", 0)))


def profiles(model_bench, n_regions):
    for p in (r for r in model_bench if r.get("bench") == "profile"):
        steps = p.get("decode_steps")
        section("profile: %s (%.1f ms of GPU time charged, %d holds, %d stalls)" % (p["job"], p["total_ms"],
                                                                                  p["holds"], p["stalls"]))
        print("  phases (ms): " + ", ".join("%s %.2f" % kv for kv in p["phases_ms"].items()))
        regions = p["regions"]
        dec = [r for r in regions if r["name"].startswith("decode.")]
        per_step = sum(r["ms"] for r in dec) / steps if steps else 0
        if p["job"] == "rollout" and per_step > 0:
            print("  decode step: %.3f ms over %d steps; per step:" % (per_step, steps))
            for r in dec[:n_regions]:
                print("    %-32s %8.4f ms  %5.1f%%" % (r["name"], r["ms"] / steps, 100 * r["ms"] / steps / per_step))
            vis = [r for r in regions if r["name"].startswith("vision.")]
            if vis:
                print("  vision:")
                for r in vis[:n_regions]:
                    print("    %-32s %8.3f ms" % (r["name"], r["ms"]))
        else:
            for r in regions[:n_regions]:
                share = 100 * r["ms"] / p["total_ms"] if p["total_ms"] > 0 else 0
                print("    %-32s %8.3f ms  %5.1f%%  (%d calls)" % (r["name"], r["ms"], share, r["calls"]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("logs")
    ap.add_argument("--regions", type=int, default=12)
    a = ap.parse_args()
    bench = load(os.path.join(a.logs, "bench.jsonl"))
    torch_rows = load(os.path.join(a.logs, "torch.jsonl"))
    model_bench = load(os.path.join(a.logs, "model_bench.jsonl"))
    model_torch = load(os.path.join(a.logs, "model_torch.jsonl"))
    print("== digest of %s" % a.logs)
    comparisons(model_torch)
    kernels(bench, torch_rows)
    profiles(model_bench, a.regions)


if __name__ == "__main__":
    main()
