// The flash-style attention backward of lib/kernels/cuda/attention_backward.cuh (attn_bwd_prep_kernel,
// attn_bwd_dkv_mma_kernel and attn_bwd_dq_mma_kernel for D 64/80/128, attn_bwd_dkv_kernel) on the CPU
// emulator against a double-precision backward of the reference forward, launched with attention.cu's grids.
// Inputs (q, k, v, dO and the forward output O) are bf16; lse is the reference's. Cases: packed causal
// segments across several 64-key and 64-query tiles, causal with cached keys (nk > nq) and with nk < nq (rows
// that see no key), bidirectional, GQA ratios 1, 2, 3, 6, 7, 16, strided rows, an empty segment, a segment with
// keys but no queries (its key and value gradients are zeros), one with queries but no keys (zero query
// gradients), and key/value rows that are not 16-byte aligned (a misaligned base, or a stride that is not a
// multiple of 8: plain loads instead of cp.async). Outputs are poisoned with NaN beforehand; the row padding
// must stay untouched. Run twice, the outputs must be equal to the bit (no atomics).
#include "kernels/cuda/attention_backward.cuh"

#include "attention_ref.h"

static emu_stats st_dq = {"attn_bwd dq", 2e-2};
static emu_stats st_dk = {"attn_bwd dk", 2e-2};
static emu_stats st_dv = {"attn_bwd dv", 2e-2};

// ----------------------------------------------------------------------------
// reference

// With the reference forward's lse: P = exp(scale q.k - lse) over the visible keys, dP = dO.v,
// delta = sum P dP, dS = P (dP - delta); dq = scale sum dS k, dk = scale sum dS q, dv = sum P dO, in double.
// dq (T, H*D), dk and dv (TK, KV*D), packed without row padding.
static void backward_reference(const emu_attn_problem &p, const std::vector<float> &dout,
                               const std::vector<double> &lse, std::vector<double> &dq, std::vector<double> &dk,
                               std::vector<double> &dv) {
    int H = p.c.H, D = p.c.D, KV = p.c.KV, G = H / KV;
    dq.assign((size_t)p.T * H * D, 0.0), dk.assign((size_t)p.TK * KV * D, 0.0), dv.assign((size_t)p.TK * KV * D, 0.0);
    std::vector<double> pr, dp;
    for (int b = 0; b < p.B; b++) {
        int nq = p.c.nq[b], nk = p.c.nk[b];
        for (int i = 0; i < nq; i++) {
            int row = p.cu_q[b] + i, lim = emu_visible_keys(p.c.causal, nq, nk, i);
            for (int h = 0; h < H && lim > 0; h++) {
                const float *qr = p.q.data() + (size_t)row * p.ldq + (size_t)h * D;
                const float *gr = dout.data() + (size_t)row * p.ldo + (size_t)h * D;
                double l = lse[(size_t)row * H + h], delta = 0.0;
                pr.assign(lim, 0.0), dp.assign(lim, 0.0);
                for (int j = 0; j < lim; j++) {
                    const float *kr = p.kp[b] + (size_t)j * p.ldkv + (size_t)(h / G) * D;
                    const float *vr = p.vp[b] + (size_t)j * p.ldkv + (size_t)(h / G) * D;
                    double s = 0.0, g = 0.0;
                    for (int d = 0; d < D; d++) s += (double)qr[d] * kr[d], g += (double)gr[d] * vr[d];
                    pr[j] = exp(s * p.scale - l), dp[j] = g;
                    delta += pr[j] * g;
                }
                for (int j = 0; j < lim; j++) {
                    double ds = pr[j] * (dp[j] - delta);
                    const float *kr = p.kp[b] + (size_t)j * p.ldkv + (size_t)(h / G) * D;
                    size_t kv_row = ((size_t)(p.kv_off[b] + j) * KV + (size_t)(h / G)) * D;
                    for (int d = 0; d < D; d++) {
                        dq[((size_t)row * H + h) * D + d] += p.scale * ds * kr[d];
                        dk[kv_row + d] += p.scale * ds * qr[d];
                        dv[kv_row + d] += pr[j] * gr[d];
                    }
                }
            }
        }
    }
}

// ----------------------------------------------------------------------------
// running the kernels

// attention.cu's launches: prep, the key-major kernel and the key/value sums (when there are keys), the
// query-major kernel (when there are queries).
template <int D>
static void launch_backward(const emu_attn_problem &p, const AttnBwdArgs &a, const __nv_bfloat16 *out,
                            __nv_bfloat16 *const *dk, __nv_bfloat16 *const *dv) {
    if (p.max_nq > 0)
        cuda_emu_launch(attn_bwd_prep_kernel, dim3((unsigned)p.max_nq, (unsigned)p.B), dim3(BWD_THREADS), 0,
                        (float *)a.delta, a.dout, a.ldo, out, p.ldo, p.cu_q.data(), p.c.H, D);
    if (p.max_nk > 0) {
        cuda_emu_launch(attn_bwd_dkv_mma_kernel<D>, dim3((unsigned)p.c.H, (unsigned)p.B,
                                                          (unsigned)((p.max_nk + BWD_BN - 1) / BWD_BN)),
                        dim3(BWD_THREADS), attn_bwd_dkv_smem_bytes<D>(), a);
        cuda_emu_launch(attn_bwd_dkv_kernel, dim3((unsigned)p.max_nk, (unsigned)p.B), dim3(BWD_THREADS), 0, dk, dv,
                        p.ldkv, (const float *)a.dk_part, (const float *)a.dv_part, p.kv_off.data(), p.c.nk.data(),
                        p.c.H, p.c.KV, D, p.scale);
    }
    if (p.max_nq > 0)
        cuda_emu_launch(attn_bwd_dq_mma_kernel<D>, dim3((unsigned)p.c.H, (unsigned)p.B,
                                                         (unsigned)((p.max_nq + BWD_BM - 1) / BWD_BM)),
                        dim3(BWD_THREADS), attn_bwd_dq_smem_bytes<D>(), a);
}

// The rows' first HD values of x (rows of stride ld) into a packed vector; the padding must stay poisoned.
static std::vector<float> unpad(const emu_attn_problem &p, const char *what, const std::vector<__nv_bfloat16> &x,
                                size_t first, int rows, int64_t ld, int HD) {
    std::vector<float> got((size_t)rows * HD);
    for (int r = 0; r < rows; r++) {
        for (int j = 0; j < HD; j++) got[(size_t)r * HD + j] = __bfloat162float(x[first + (size_t)r * ld + j]);
        for (int64_t j = HD; j < ld; j++)
            EXPECT(emu_is_poison(x[first + (size_t)r * ld + j]), "%s, %s: row %d padding element %lld was written",
                   what, p.c.name, r, (long long)j);
    }
    return got;
}

static void run_case(const emu_attn_case &c) {
    emu_attn_problem p;
    emu_attn_problem_init(p, c, true);
    int H = c.H, KV = c.KV, D = c.D, HD = H * D, KVD = KV * D;
    std::vector<double> ref_out, ref_lse;
    emu_attn_reference(p, ref_out, ref_lse);
    // the forward's output as the GPU stores it (bf16, rows of stride ldo) and its lse
    std::vector<float> out((size_t)p.T * p.ldo, 0.0f), lse((size_t)p.T * H);
    for (int t = 0; t < p.T; t++)
        for (int j = 0; j < HD; j++) out[(size_t)t * p.ldo + j] = emu_round_bf16((float)ref_out[(size_t)t * HD + j]);
    for (size_t i = 0; i < lse.size(); i++) lse[i] = (float)ref_lse[i];
    std::vector<float> dout = emu_randn((size_t)p.T * p.ldo, 1.0f);
    emu_round_bf16(dout);
    std::vector<__nv_bfloat16> outh = emu_to_bf16(out), douth = emu_to_bf16(dout);

    // two runs on fresh, poisoned outputs and workspace: the second must repeat the first to the bit
    std::vector<__nv_bfloat16> dq, dkv, first_dq, first_dkv;
    for (int run = 0; run < 2; run++) {
        dq.assign((size_t)p.T * p.ldq, __nv_bfloat16()), dkv.assign(2 * ((size_t)p.TK * p.ldkv + 1), __nv_bfloat16());
        emu_poison(dq), emu_poison(dkv);
        __nv_bfloat16 *dk_base = dkv.data(), *dv_base = dkv.data() + (size_t)p.TK * p.ldkv + 1;
        std::vector<__nv_bfloat16 *> dkp(p.B), dvp(p.B);
        for (int b = 0; b < p.B; b++)
            dkp[b] = dk_base + (size_t)p.kv_off[b] * p.ldkv, dvp[b] = dv_base + (size_t)p.kv_off[b] * p.ldkv;
        std::vector<float> delta((size_t)max(p.T, 1) * H);
        std::vector<float> dk_part((size_t)max(p.TK, 1) * HD), dv_part((size_t)max(p.TK, 1) * HD);
        emu_poison(delta), emu_poison(dk_part), emu_poison(dv_part);
        AttnBwdArgs a = {p.kph.data(),  p.vph.data(),  p.ldkv,        p.qh.data(),     p.ldq,          douth.data(),
                         p.ldo,         dq.data(),     lse.data(),    delta.data(),    dk_part.data(), dv_part.data(),
                         p.cu_q.data(), p.kv_off.data(), c.nk.data(), p.B,             H,              KV,
                         c.causal,      p.scale};
        if (D == 64) launch_backward<64>(p, a, outh.data(), dkp.data(), dvp.data());
        else if (D == 80) launch_backward<80>(p, a, outh.data(), dkp.data(), dvp.data());
        else launch_backward<128>(p, a, outh.data(), dkp.data(), dvp.data());
        if (run == 0) first_dq = dq, first_dkv = dkv;
    }
    EXPECT(!memcmp(dq.data(), first_dq.data(), sizeof(__nv_bfloat16) * dq.size()) &&
               !memcmp(dkv.data(), first_dkv.data(), sizeof(__nv_bfloat16) * dkv.size()),
           "attn_bwd %s: a second run gave other bits", c.name);

    std::vector<double> rdq, rdk, rdv;
    backward_reference(p, dout, ref_lse, rdq, rdk, rdv);
    std::string shape = emu_what("(T %d, TK %d, H %d, KV %d, D %d) %s", p.T, p.TK, H, KV, D, c.name);
    emu_check(st_dq, emu_what("attn_bwd dq %s", shape.c_str()), unpad(p, "dq", dq, 0, p.T, p.ldq, HD), rdq);
    emu_check(st_dk, emu_what("attn_bwd dk %s", shape.c_str()), unpad(p, "dk", dkv, 0, p.TK, p.ldkv, KVD), rdk);
    emu_check(st_dv, emu_what("attn_bwd dv %s", shape.c_str()),
              unpad(p, "dv", dkv, (size_t)p.TK * p.ldkv + 1, p.TK, p.ldkv, KVD), rdv);
}

// ----------------------------------------------------------------------------
// cases

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    maye_rng_init(&emu_rng, 20261126, 5);
    // name, nq, nk, H, KV, D, causal, pad_q, pad_kv, misalign (of the key/value rows)
    std::vector<emu_attn_case> cases = {
        {"causal packed G6, empty segment", {1, 17, 64, 130, 0}, {1, 17, 64, 130, 0}, 6, 1, 128, 1, 0, 0, 0},
        {"causal cached keys G2 strided", {9, 70}, {75, 131}, 4, 2, 64, 1, 8, 16, 0},
        {"causal nk < nq G1", {70}, {7}, 2, 2, 64, 1, 0, 0, 0},
        {"bidirectional G7", {31, 7, 66}, {90, 1, 66}, 7, 1, 80, 0, 0, 0, 0},
        {"keys without queries, queries without keys G2", {0, 5, 20}, {40, 0, 20}, 4, 2, 80, 1, 0, 8, 0},
        {"causal long G6 (qwen2-vl-2b heads)", {200}, {200}, 12, 2, 128, 1, 0, 0, 0},
        {"causal cached keys G3, misaligned keys", {20, 45}, {70, 45}, 6, 2, 64, 1, 0, 0, 1},
        {"bidirectional G16 one key, nq 1 long keys", {5, 1}, {1, 300}, 16, 1, 80, 0, 0, 0, 0},
        {"causal key stride 68 (aligned base, misaligned rows)", {70, 9}, {70, 130}, 2, 1, 64, 1, 0, 4, 0},
    };
    for (const emu_attn_case &c : cases) run_case(c);
    for (const emu_stats *st : {&st_dq, &st_dk, &st_dv}) emu_stats_print(*st);
    return TEST_RESULT();
}
