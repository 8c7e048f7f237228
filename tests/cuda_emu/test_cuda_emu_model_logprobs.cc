// The kernels of lib/kernels/cuda/model_logprobs.cuh (the log-prob backward of model_logprobs.cu) on the CPU
// emulator, driven in the loop of cuda_logprobs_backward over row blocks and vocabulary chunks that do not
// divide N and V: row_lse_kernel (each row's log-sum-exp from the forward's log-prob and the target's logit)
// against the log-sum-exp of the logits in double, logit_grad_kernel (dz = g ([j = y] - exp(z - lse)) of one
// chunk, the target inside or outside it) against the same formula in double, and the gradients the loop's
// GEMMs make of dz against the CPU logprobs_backward (kernels/cpu/logprobs.c), with and without dwte. The
// three cuBLASLt GEMMs are not emulated: the host computes the chunk's fp32 logits (double dot products,
// times 1 / temperature) into the poisoned logits scratch, and dhidden, dwte from the kernel's dz in double.
// fp32 and bf16 storage (hidden, wte and dz; inputs rounded to bf16 first). Dimension letters: N rows,
// C channels, V vocabulary.
#include "kernels/cuda/model_logprobs.cuh"

#include "cuda_emu_test.h"

#include <type_traits>

template <typename T> static constexpr bool is_bf16() { return std::is_same<T, bf16>::value; }

static emu_stats lse_f32 = {"row_lse_kernel<float>", 1e-5};
static emu_stats lse_bf16 = {"row_lse_kernel<bf16>", 1e-5};
static emu_stats dz_f32 = {"logit_grad_kernel<float>", 1e-5};
static emu_stats dz_bf16 = {"logit_grad_kernel<bf16>", 4e-3};
static emu_stats grad_f32 = {"dhidden, dwte from dz: f32", 1e-4};
static emu_stats grad_bf16 = {"dhidden, dwte from dz: bf16", 1e-2};

template <typename T>
static void run_case(int N, int C, int V, float temperature, int rows, int vchunk, bool with_dwte) {
    std::string what = emu_what("%s N %d C %d V %d T %.2f rows %d vchunk %d%s", is_bf16<T>() ? "bf16" : "f32", N, C,
                                V, temperature, rows, vchunk, with_dwte ? "" : " no dwte");
    std::vector<float> h = emu_randn((size_t)N * C, 1.0f), w = emu_randn((size_t)V * C, 0.5f);
    std::vector<float> g = emu_randn((size_t)N, 1.0f), dw0 = emu_randn((size_t)V * C, 1.0f);
    if (is_bf16<T>()) emu_round_bf16(h), emu_round_bf16(w);
    std::vector<int64_t> tgt((size_t)N);
    for (int64_t &y : tgt) y = (int64_t)maye_rng_below(&emu_rng, (uint64_t)V);
    tgt[0] = V - 1; // the last column of the last chunk
    if (N > 1) tgt[1] = 0;
    if (N > 2 && V > vchunk) tgt[2] = vchunk; // the first column of the second chunk

    // the forward's log-probs and the reference gradients (CPU)
    std::vector<float> lp((size_t)N), want_dh((size_t)N * C, 0.0f), want_dw = dw0;
    std::vector<float> scr(logprobs_scratch_floats(rows, vchunk)), bscr(logprobs_backward_scratch_floats(rows, vchunk));
    logprobs_forward(lp.data(), NULL, h.data(), w.data(), tgt.data(), N, C, V, temperature, rows, vchunk, scr.data());
    logprobs_backward(want_dh.data(), with_dwte ? want_dw.data() : NULL, g.data(), lp.data(), h.data(), w.data(),
                      tgt.data(), N, C, V, temperature, rows, vchunk, bscr.data());

    emu_array<T> hid((int64_t)N * C), wte((int64_t)V * C), dz((int64_t)rows * vchunk);
    emu_array<float> z((int64_t)rows * vchunk), lse(rows);
    hid.set(h), wte.set(w);
    std::vector<double> got_dh((size_t)N * C, 0.0), got_dw(dw0.begin(), dw0.end());
    std::vector<float> zrow((size_t)V);
    double inv_t = 1.0 / temperature;
    for (int r0 = 0; r0 < N; r0 += rows) {
        int nr = N - r0 < rows ? N - r0 : rows;
        const float *hb = h.data() + (size_t)r0 * C;
        lse.poison();
        cuda_emu_launch(row_lse_kernel<T>, dim3((unsigned)((nr + 3) / 4)), dim3(128), 0, lse.data(),
                        (const T *)hid.data() + (size_t)r0 * C, (const T *)wte.data(), (const int64_t *)tgt.data() + r0,
                        (const float *)lp.data() + r0, nr, C, temperature);
        // the log-sum-exp of each row's logits over the whole vocabulary
        std::vector<double> want_lse((size_t)nr);
        for (int r = 0; r < nr; r++) {
            emu_host_logits(zrow.data(), hb + (size_t)r * C, w.data(), 1, V, C, temperature);
            double m = -INFINITY, s = 0;
            for (float x : zrow) m = fmax(m, x);
            for (float x : zrow) s += exp(x - m);
            want_lse[(size_t)r] = m + log(s);
        }
        std::vector<float> got_lse = lse.get();
        got_lse.resize((size_t)nr);
        emu_check(is_bf16<T>() ? lse_bf16 : lse_f32, emu_what("row_lse rows %d.. ", r0) + what, got_lse, want_lse);

        for (int v0 = 0; v0 < V; v0 += vchunk) {
            int nv = V - v0 < vchunk ? V - v0 : vchunk;
            const float *wc = w.data() + (size_t)v0 * C;
            z.poison(), dz.poison();
            emu_host_logits(z.data(), hb, wc, nr, nv, C, temperature);
            cuda_emu_launch(logit_grad_kernel<T>, dim3((unsigned)nr), dim3(LB_THREADS), 0, dz.data(),
                            (const float *)z.data(), (const float *)lse.data(), (const float *)g.data() + r0,
                            (const int64_t *)tgt.data() + r0, nv, v0);
            std::vector<double> want_dz((size_t)nr * nv);
            for (int r = 0; r < nr; r++)
                for (int j = 0; j < nv; j++) {
                    double gr = g[(size_t)r0 + r];
                    double x = -gr * exp((double)z.data()[(size_t)r * nv + j] - (double)lse.data()[r]);
                    if (tgt[(size_t)r0 + r] == v0 + j) x += gr;
                    want_dz[(size_t)r * nv + j] = is_bf16<T>() ? emu_round_bf16((float)x) : x;
                }
            std::vector<float> got_dz = dz.get();
            got_dz.resize((size_t)nr * nv);
            emu_check(is_bf16<T>() ? dz_bf16 : dz_f32, emu_what("logit_grad rows %d.. vocabulary %d.. ", r0, v0) + what,
                      got_dz, want_dz);
            // dhidden (nr, C) += dz @ wte chunk / T; dwte chunk (nv, C) += dz^T @ hidden rows / T
            for (int r = 0; r < nr; r++)
                for (int j = 0; j < nv; j++) {
                    double d = (double)got_dz[(size_t)r * nv + j] * inv_t;
                    for (int c = 0; c < C; c++) {
                        got_dh[(size_t)(r0 + r) * C + c] += d * wc[(size_t)j * C + c];
                        if (with_dwte) got_dw[(size_t)(v0 + j) * C + c] += d * hb[(size_t)r * C + c];
                    }
                }
        }
    }
    emu_stats &gs = is_bf16<T>() ? grad_bf16 : grad_f32;
    std::vector<float> gdh(got_dh.begin(), got_dh.end()), gdw(got_dw.begin(), got_dw.end());
    emu_check(gs, "dhidden " + what, gdh, want_dh);
    emu_check(gs, "dwte " + what, gdw, want_dw);
    EXPECT(lse.guards_intact() && dz.guards_intact(), "logprobs_backward %s: an element outside lse or dz was written",
           what.c_str());
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    maye_rng_init(&emu_rng, 20240622, 9);
    for (int with_dwte : {1, 0}) {
        run_case<float>(37, 24, 1000, 0.8f, 16, 300, with_dwte);
        run_case<bf16>(37, 24, 1000, 0.8f, 16, 300, with_dwte);
    }
    run_case<float>(5, 13, 37, 1.0f, 4, 7, true);
    run_case<bf16>(5, 13, 37, 1.3f, 4, 7, true);
    run_case<float>(3, 40, 600, 1.0f, 3, 600, true); // one chunk wider than the block: 3 turns of the loop
    for (const emu_stats *st : {&lse_f32, &lse_bf16, &dz_f32, &dz_bf16, &grad_f32, &grad_bf16}) emu_stats_print(*st);
    return TEST_RESULT();
}
