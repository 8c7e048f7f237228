// Packed variable-length attention problems for the emulated attention kernels (attention.cuh): random
// inputs laid out as AttnArgs expects (segments of query rows, per-segment key/value pointers, strided rows,
// optionally misaligned keys), and the double-precision reference of cuda_attention_forward (out, lse).
//
// Dimension letters: B segments, T query rows (all segments), TK key rows (all segments), H query heads,
// KV key/value heads, G = H / KV, D head dim.
#pragma once
#include "kernels/cuda/attention.cuh"

#include "cuda_emu_test.h"

// ----------------------------------------------------------------------------
// problems

struct emu_attn_case {
    const char *name;
    std::vector<int> nq, nk; // (B) query rows and keys of each segment
    int H, KV, D, causal;
    int pad_q, pad_kv; // extra elements per q/out row, per k/v row
    int misalign;      // k/v rows start this many elements into their buffers (0: 16-byte aligned)
};

struct emu_attn_problem {
    emu_attn_case c;
    int B = 0, T = 0, TK = 0, max_nq = 0, max_nk = 0;
    int64_t ldq = 0, ldo = 0, ldkv = 0;
    float scale = 0.0f;                    // 1 / sqrt(D), as the launcher computes it
    std::vector<int> cu_q, kv_off;         // (B+1) first query row, first key row of each segment
    std::vector<float> q, k, v;            // (T, ldq), (misalign + TK * ldkv) x2; bf16-exact when bf16
    std::vector<__nv_bfloat16> qh, kh, vh; // the same values in bf16 (when bf16)
    std::vector<const float *> kp, vp;     // (B) segment b's first key/value row in k, v
    std::vector<const __nv_bfloat16 *> kph, vph;

    emu_attn_problem() = default;
    emu_attn_problem(const emu_attn_problem &) = delete; // the pointers point into the vectors
};

// Random N(0, 1) inputs for case c; bf16: rounded to bf16 (the reference then sees the kernel's inputs).
inline void emu_attn_problem_init(emu_attn_problem &p, const emu_attn_case &c, bool bf16) {
    p.c = c;
    p.B = (int)c.nq.size();
    p.cu_q.assign(p.B + 1, 0), p.kv_off.assign(p.B + 1, 0);
    for (int b = 0; b < p.B; b++) {
        p.cu_q[b + 1] = p.cu_q[b] + c.nq[b];
        p.kv_off[b + 1] = p.kv_off[b] + c.nk[b];
        p.max_nq = max(p.max_nq, c.nq[b]), p.max_nk = max(p.max_nk, c.nk[b]);
    }
    p.T = p.cu_q[p.B], p.TK = p.kv_off[p.B];
    p.ldq = p.ldo = (int64_t)c.H * c.D + c.pad_q;
    p.ldkv = (int64_t)c.KV * c.D + c.pad_kv;
    p.scale = 1.0f / sqrtf((float)c.D);
    size_t kvn = (size_t)c.misalign + (size_t)p.TK * p.ldkv;
    p.q = emu_randn((size_t)p.T * p.ldq, 1.0f), p.k = emu_randn(kvn, 1.0f), p.v = emu_randn(kvn, 1.0f);
    if (bf16) {
        emu_round_bf16(p.q), emu_round_bf16(p.k), emu_round_bf16(p.v);
        p.qh = emu_to_bf16(p.q), p.kh = emu_to_bf16(p.k), p.vh = emu_to_bf16(p.v);
    }
    p.kp.resize(p.B), p.vp.resize(p.B), p.kph.resize(p.B), p.vph.resize(p.B);
    for (int b = 0; b < p.B; b++) {
        size_t off = (size_t)c.misalign + (size_t)p.kv_off[b] * p.ldkv;
        p.kp[b] = p.k.data() + off, p.vp[b] = p.v.data() + off;
        if (bf16) p.kph[b] = p.kh.data() + off, p.vph[b] = p.vh.data() + off;
    }
}

// The kernel arguments for storage type T (float or __nv_bfloat16) writing out (T, ldo) and lse (T, H).
template <typename T> inline AttnArgs<T> emu_attn_args(const emu_attn_problem &p, T *out, float *lse);
template <> inline AttnArgs<float> emu_attn_args(const emu_attn_problem &p, float *out, float *lse) {
    return {out, p.ldo, lse, p.q.data(), p.ldq, p.kp.data(), p.vp.data(), p.ldkv, p.cu_q.data(), p.c.nk.data(),
            p.B, p.c.H, p.c.KV, p.c.D, p.c.causal, p.scale};
}
template <>
inline AttnArgs<__nv_bfloat16> emu_attn_args(const emu_attn_problem &p, __nv_bfloat16 *out, float *lse) {
    return {out, p.ldo, lse, p.qh.data(), p.ldq, p.kph.data(), p.vph.data(), p.ldkv, p.cu_q.data(), p.c.nk.data(),
            p.B, p.c.H, p.c.KV, p.c.D, p.c.causal, p.scale};
}

// ----------------------------------------------------------------------------
// reference

// out (T, H*D) and lse (T, H), natural log, in double: query i of segment b and head h attends to keys
// j < lim (lim = nk for bidirectional, min(nk, nk - nq + i + 1) when causal) of key/value head h / G with
// weights softmax(scale q.k_j); a row without keys gets out = 0, lse = -inf.
inline void emu_attn_reference(const emu_attn_problem &p, std::vector<double> &out, std::vector<double> &lse) {
    int H = p.c.H, D = p.c.D, G = H / p.c.KV;
    out.assign((size_t)p.T * H * D, 0.0), lse.assign((size_t)p.T * H, -INFINITY);
    std::vector<double> s;
    for (int b = 0; b < p.B; b++) {
        int nq = p.c.nq[b], nk = p.c.nk[b];
        for (int i = 0; i < nq; i++) {
            int row = p.cu_q[b] + i, lim = emu_visible_keys(p.c.causal, nq, nk, i);
            for (int h = 0; h < H && lim > 0; h++) {
                const float *qr = p.q.data() + (size_t)row * p.ldq + (size_t)h * D;
                s.assign(lim, 0.0);
                double m = -INFINITY;
                for (int j = 0; j < lim; j++) {
                    const float *kr = p.kp[b] + (size_t)j * p.ldkv + (size_t)(h / G) * D;
                    double dot = 0.0;
                    for (int d = 0; d < D; d++) dot += (double)qr[d] * kr[d];
                    s[j] = dot * p.scale;
                    m = fmax(m, s[j]);
                }
                double l = 0.0;
                double *o = out.data() + ((size_t)row * H + h) * D;
                for (int j = 0; j < lim; j++) {
                    double w = exp(s[j] - m);
                    l += w;
                    const float *vr = p.vp[b] + (size_t)j * p.ldkv + (size_t)(h / G) * D;
                    for (int d = 0; d < D; d++) o[d] += w * vr[d];
                }
                for (int d = 0; d < D; d++) o[d] /= l;
                lse[(size_t)row * H + h] = m + log(l);
            }
        }
    }
}
