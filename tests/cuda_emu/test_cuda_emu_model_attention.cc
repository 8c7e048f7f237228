// The kernels of lib/kernels/cuda/model_attention.cuh (the GEMM-based attention backward of model_attention.cu)
// on the CPU emulator, launched with the grids of segment_backward: heads_gather_kernel and heads_scatter_kernel
// (one key/value head's G query heads stacked into (G * nq, D) rows and back, from and into strided rows whose
// other heads and padding must keep their values; head dims below, at and above the 128-thread block, and
// again with 3 blocks so the row loop strides), and softmax_backward_kernel against a direct double
// computation of P = exp(S - lse) on the visible keys and dS = P (dP - sum P dP): causal with cached keys,
// square and with more queries than keys (rows that see no key, lse -inf), bidirectional with a row whose lse
// is -inf, key counts above the 256-thread block. The lse array holds every head of the segment's rows and
// NaN in the heads of the other key/value group, so a wrong index shows. fp32 and bf16 storage of P and dS
// (the scores and dP are fp32 in both). The cuBLASLt GEMMs between the kernels are not emulated.
// Dimension letters: H query heads, KV key/value heads, G = H / KV, D head dim, nq queries, nk keys.
#include "kernels/cuda/model_attention.cuh"

#include "cuda_emu_test.h"

#include <type_traits>

template <typename T> static constexpr bool is_bf16() { return std::is_same<T, bf16>::value; }
template <typename T> static const char *dt_name() { return is_bf16<T>() ? "bf16" : "f32"; }

// ----------------------------------------------------------------------------
// head stacking

static emu_stats gather_st = {"heads_gather_kernel (exact)", 0};
static emu_stats scatter_st = {"heads_scatter_kernel (exact)", 0};

// segment_backward's grid over the G * nq stacked rows (or 3 blocks) and its block over D.
static unsigned stack_grid(int rows, bool small) { return small ? 3u : (unsigned)(rows < 65535 ? rows : 65535); }
static int stack_threads(int D) { return D >= 128 ? 128 : (D + 31) / 32 * 32; }

// Key/value group g of q (nq, ld) with ld = H * D + 3: gathered into (G * nq, D), and (G * nq, D) rows scattered
// back into it.
template <typename T> static void test_heads(int nq, int KV, int G, int D, int g, bool small) {
    int H = KV * G, ld = H * D + 3, rows = G * nq;
    std::string shape = emu_what("%s nq %d H %d KV %d D %d group %d grid %s", dt_name<T>(), nq, H, KV, D, g,
                                 small ? "3" : "model_attention.cu");
    std::vector<float> q = emu_randn((size_t)nq * ld, 1.0f), st = emu_randn((size_t)rows * D, 1.0f);
    emu_round_bf16(q), emu_round_bf16(st); // exact in both dtypes
    std::vector<float> want_g((size_t)rows * D), want_s = q;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < D; c++) {
            size_t at = (size_t)(r % nq) * ld + (size_t)(g * G + r / nq) * D + c;
            want_g[(size_t)r * D + c] = q[at];
            want_s[at] = st[(size_t)r * D + c];
        }
    emu_array<T> dq((int64_t)nq * ld), dst((int64_t)rows * D), dsrc((int64_t)rows * D);
    dq.set(q), dsrc.set(st);
    size_t goff = (size_t)g * G * D;
    cuda_emu_launch(heads_gather_kernel<T>, dim3(stack_grid(rows, small)), dim3(stack_threads(D)), 0, dst.data(),
                    (const T *)dq.data() + goff, (int64_t)ld, nq, G, D);
    emu_check(gather_st, "heads_gather " + shape, dst.get(), want_g);
    cuda_emu_launch(heads_scatter_kernel<T>, dim3(stack_grid(rows, small)), dim3(stack_threads(D)), 0,
                    dq.data() + goff, (int64_t)ld, (const T *)dsrc.data(), nq, G, D);
    emu_check(scatter_st, "heads_scatter " + shape, dq.get(), want_s);
    EXPECT(dst.guards_intact() && dq.guards_intact(), "heads %s: an element outside the arrays was written",
           shape.c_str());
}

// ----------------------------------------------------------------------------
// softmax backward

static emu_stats p_f32 = {"softmax_backward_kernel<float> P", 1e-5};
static emu_stats p_bf16 = {"softmax_backward_kernel<bf16> P", 4e-3};
static emu_stats ds_f32 = {"softmax_backward_kernel<float> dS", 1e-5};
static emu_stats ds_bf16 = {"softmax_backward_kernel<bf16> dS", 4e-3};

// Key/value group 1 of KV = 2 (heads h0 = G.. of H = 2G): S, dP (G * nq, nk) fp32, lse (nq, H) with each row's
// log-sum-exp over its visible keys (-inf where it sees none, and at stacked row inf_row when >= 0).
template <typename T> static void test_softmax_backward(int G, int nq, int nk, int causal, int inf_row) {
    int H = 2 * G, h0 = G, rows = G * nq;
    std::string shape = emu_what("%s G %d nq %d nk %d %s%s", dt_name<T>(), G, nq, nk, causal ? "causal" : "bidirectional",
                                 inf_row >= 0 ? emu_what(" lse -inf at row %d", inf_row).c_str() : "");
    std::vector<float> S = emu_randn((size_t)rows * nk, 2.0f), dP = emu_randn((size_t)rows * nk, 1.0f);
    std::vector<float> lse((size_t)nq * H, NAN);
    for (int r = 0; r < rows; r++) {
        int j = r / nq, i = r % nq, lim = emu_visible_keys(causal, nq, nk, i);
        double m = -INFINITY, s = 0;
        for (int c = 0; c < lim; c++) m = fmax(m, S[(size_t)r * nk + c]);
        for (int c = 0; c < lim; c++) s += exp(S[(size_t)r * nk + c] - m);
        lse[(size_t)i * H + h0 + j] = lim > 0 && r != inf_row ? (float)(m + log(s)) : -INFINITY;
    }
    std::vector<double> want_p((size_t)rows * nk), want_ds((size_t)rows * nk);
    int none_rows = 0;
    for (int r = 0; r < rows; r++) {
        int j = r / nq, i = r % nq, lim = emu_visible_keys(causal, nq, nk, i);
        double l = lse[(size_t)i * H + h0 + j], delta = 0;
        none_rows += l == -INFINITY;
        for (int c = 0; c < nk; c++) {
            double p = l != -INFINITY && c < lim ? exp(S[(size_t)r * nk + c] - l) : 0.0;
            want_p[(size_t)r * nk + c] = p;
            delta += p * dP[(size_t)r * nk + c];
        }
        for (int c = 0; c < nk; c++)
            want_ds[(size_t)r * nk + c] = want_p[(size_t)r * nk + c] * (dP[(size_t)r * nk + c] - delta);
    }
    EXPECT(none_rows == (inf_row >= 0 ? 1 : 0) + (causal && nq > nk ? G * (nq - nk) : 0),
           "softmax_backward %s: %d rows without keys", shape.c_str(), none_rows);
    if (is_bf16<T>())
        for (size_t k = 0; k < want_p.size(); k++)
            want_p[k] = emu_round_bf16((float)want_p[k]), want_ds[k] = emu_round_bf16((float)want_ds[k]);

    emu_array<T> P((int64_t)rows * nk), dS((int64_t)rows * nk);
    cuda_emu_launch(softmax_backward_kernel<T>, dim3((unsigned)rows), dim3(SB_THREADS), 0, P.data(), dS.data(),
                    (const float *)S.data(), (const float *)dP.data(), (const float *)lse.data(), H, h0, nq, nk, causal);
    std::vector<float> gp = P.get(), gds = dS.get();
    emu_check(is_bf16<T>() ? p_bf16 : p_f32, "softmax_backward P " + shape, gp, want_p);
    emu_check(is_bf16<T>() ? ds_bf16 : ds_f32, "softmax_backward dS " + shape, gds, want_ds);
    // masked keys and rows without keys: exactly zero
    for (size_t k = 0; k < want_p.size(); k++)
        if (want_p[k] == 0.0 && (gp[k] != 0.0f || gds[k] != 0.0f)) {
            EXPECT(false, "softmax_backward %s: row %zu key %zu is masked but P = %g, dS = %g", shape.c_str(),
                   k / (size_t)nk, k % (size_t)nk, gp[k], gds[k]);
            break;
        }
    EXPECT(P.guards_intact() && dS.guards_intact(), "softmax_backward %s: an element outside P or dS was written",
           shape.c_str());
}

// ----------------------------------------------------------------------------
// cases

template <typename T> static void run_dtype(void) {
    // nq, KV, G, D, group: odd head dim, the 64/80/128 of the models (128: a full block), 300 (3 turns)
    test_heads<T>(5, 2, 3, 10, 1, false);
    test_heads<T>(7, 1, 7, 80, 0, false);
    test_heads<T>(3, 2, 6, 64, 1, false);
    test_heads<T>(4, 4, 1, 128, 2, false);
    test_heads<T>(3, 2, 2, 300, 1, false);
    test_heads<T>(5, 2, 3, 10, 1, true);

    test_softmax_backward<T>(3, 5, 7, 1, -1);   // causal, cached keys
    test_softmax_backward<T>(1, 9, 9, 1, -1);   // causal, square
    test_softmax_backward<T>(2, 6, 4, 1, -1);   // causal, two rows per head without keys
    test_softmax_backward<T>(3, 4, 600, 0, -1); // bidirectional, 3 turns of the key loop
    test_softmax_backward<T>(7, 2, 530, 1, -1); // causal, GQA 7
    test_softmax_backward<T>(2, 3, 1, 0, 4);    // bidirectional, one key, a row with lse -inf
    test_softmax_backward<T>(3, 4, 300, 0, 5);  // bidirectional, a row with lse -inf
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    maye_rng_init(&emu_rng, 20240621, 3);
    run_dtype<float>();
    run_dtype<bf16>();
    for (const emu_stats *st : {&gather_st, &scatter_st, &p_f32, &p_bf16, &ds_f32, &ds_bf16}) emu_stats_print(*st);
    return TEST_RESULT();
}
