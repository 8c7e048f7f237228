"""PyTorch baseline for bench/gpu_kernels.cu on the same GPU and shapes, one JSON line per result with
"impl": "torch": bf16 GEMMs (torch.matmul), scaled_dot_product_attention (padded batch, GQA) for prefill,
vision and decode, chunked log-probs + entropy (matmul, logsumexp, gather), top-p sampling as transformers
does it (sort, cumsum, multinomial), RMSNorm, the SiLU-gated product and fused AdamW. Optional: run by
bench/gpu.sh when torch sees a GPU; never on the user's path.
"""
import json
import sys

import torch
import torch.nn.functional as F

dev = "cuda"
name = torch.cuda.get_device_name(0)


def time_ms(fn, reps):
    """Median over 5 trials of the time per call (CUDA events), after 2 warm-up calls."""
    fn(), fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(5):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(reps):
            fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / reps)
    return sorted(times)[2]


def emit(bench, shape, ms, **extra):
    rec = {"bench": bench, "impl": "torch", "device": name, "shape": shape, "ms": round(ms, 4)}
    rec.update({k: round(v, 3) if isinstance(v, float) else v for k, v in extra.items()})
    print(json.dumps(rec), flush=True)


def section(fn):
    try:
        fn()
    except Exception as e:  # a failing section must not hide the others
        print(json.dumps({"bench": fn.__name__, "impl": "torch", "error": repr(e)}), flush=True)
        torch.cuda.empty_cache()


def gemm():
    peak = None
    for label, M, N, K in [("8192x8192x8192 bf16", 8192, 8192, 8192), ("qkv 8192x1536->2048", 8192, 2048, 1536),
                           ("gate_up 8192x1536->17920", 8192, 17920, 1536), ("down 8192x8960->1536", 8192, 1536, 8960)]:
        a = torch.randn(M, K, device=dev, dtype=torch.bfloat16)
        b = torch.randn(N, K, device=dev, dtype=torch.bfloat16)
        ms = time_ms(lambda: a @ b.t(), 10)
        tf = 2 * M * N * K / (ms * 1e-3) / 1e12
        peak = peak or tf
        emit("gemm", label, ms, tflops=tf, vs_peak=tf / peak)


def attention():
    def run(label, B, H, KV, D, nq, nk, causal, reps):
        q = torch.randn(B, H, nq, D, device=dev, dtype=torch.bfloat16)
        k = torch.randn(B, KV, nk, D, device=dev, dtype=torch.bfloat16)
        v = torch.randn(B, KV, nk, D, device=dev, dtype=torch.bfloat16)
        ms = time_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal and nq > 1,
                                                            enable_gqa=KV != H), reps)
        pairs = B * nq * (nq + 1) / 2 if causal and nq > 1 else B * nq * nk
        emit("attention", label, ms, tokens_per_s=B * nq / (ms * 1e-3), tflops=4 * D * H * pairs / (ms * 1e-3) / 1e12,
             kv_gb_per_s=2 * B * nk * KV * D * 2 / (ms * 1e-3) / 1e9)

    run("prefill causal 8x1024 H12 KV2 D128", 8, 12, 2, 128, 1024, 1024, True, 20)
    run("vision bidirectional 4x1024 H16 KV16 D80", 4, 16, 16, 80, 1024, 1024, False, 20)
    run("decode 64 seqs x 512 keys H12 KV2 D128", 64, 12, 2, 128, 1, 512, False, 50)
    run("decode 64 seqs x 2048 keys H12 KV2 D128", 64, 12, 2, 128, 1, 2048, False, 50)


def logprobs():
    N, C, V, chunk = 8192, 1536, 151936, 2048
    h = torch.randn(N, C, device=dev, dtype=torch.bfloat16)
    w = torch.randn(V, C, device=dev, dtype=torch.bfloat16) * 0.05
    y = torch.randint(0, V, (N,), device=dev)

    def fn():
        for r0 in range(0, N, chunk):
            z = (h[r0:r0 + chunk] @ w.t()).float()
            lse = torch.logsumexp(z, -1)
            lp = z.gather(1, y[r0:r0 + chunk, None])[:, 0] - lse
            p = torch.softmax(z, -1)
            ent = lse - (p * z).sum(-1)
        return lp, ent

    ms = time_ms(fn, 3)
    emit("logprobs", f"N {N} C {C} V {V} chunks of {chunk} rows", ms, tokens_per_s=N / (ms * 1e-3),
         tflops=2 * N * V * C / (ms * 1e-3) / 1e12)


def sampling():
    B, V = 64, 151936
    z = torch.rand(B, V, device=dev) * 16 - 8

    def top_p(p):
        def fn():
            s, idx = torch.sort(z, descending=False)
            probs = s.softmax(-1)
            remove = probs.cumsum(-1) <= 1 - p
            s = s.masked_fill(remove, float("-inf"))
            t = torch.multinomial(s.softmax(-1), 1)
            return idx.gather(1, t)
        return fn

    ms = time_ms(lambda: torch.multinomial(z.softmax(-1), 1), 10)
    emit("sampling", f"{B} rows x {V} logits, temperature 1", ms, rows_per_s=B / (ms * 1e-3))
    ms = time_ms(top_p(0.9), 10)
    emit("sampling", f"{B} rows x {V} logits, top-p 0.9", ms, rows_per_s=B / (ms * 1e-3))


def elementwise():
    T, C, I = 8192, 1536, 8960
    x = torch.randn(T, C, device=dev, dtype=torch.bfloat16)
    w = torch.randn(C, device=dev, dtype=torch.bfloat16)

    def rms():
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6)).to(torch.bfloat16) * w

    ms = time_ms(rms, 20)
    emit("rmsnorm", "8192x1536 bf16 (Qwen2RMSNorm)", ms, gb_per_s=2 * T * C * 2 / (ms * 1e-3) / 1e9)
    g = torch.randn(T, I, device=dev, dtype=torch.bfloat16)
    u = torch.randn(T, I, device=dev, dtype=torch.bfloat16)
    ms = time_ms(lambda: F.silu(g) * u, 20)
    emit("silu_gated", "8192x8960 bf16", ms, gb_per_s=3 * T * I * 2 / (ms * 1e-3) / 1e9)
    del x, g, u
    n = 256 << 20
    p = torch.nn.Parameter(torch.randn(n, device=dev))
    p.grad = torch.randn(n, device=dev) * 0.01
    opt = torch.optim.AdamW([p], lr=1e-6, fused=True)
    ms = time_ms(opt.step, 5)
    emit("adamw", "256M params, fused (no bf16 copy)", ms, gb_per_s=28 * n / (ms * 1e-3) / 1e9)


if __name__ == "__main__":
    if not torch.cuda.is_available():
        print("gpu_torch_baseline: no CUDA device", file=sys.stderr)
        sys.exit(77)
    for s in (gemm, attention, logprobs, sampling, elementwise):
        section(s)
