// The log-prob kernels of lib/kernels/cuda/logprobs.cuh on the CPU emulator against the CPU logprobs_forward
// (kernels/cpu/logprobs.c): logprobs_init_kernel, logprobs_fold_kernel (online log-sum-exp over a block of
// logits, row states merged across chunks, threads with empty slices when the chunk is narrower than the
// block) and logprobs_finish_kernel, driven in the loop of cuda_logprobs_forward (logprobs.cu) over row
// blocks and vocabulary chunks that do not divide N and V. The lm_head GEMM of that loop is cuBLASLt and not
// emulated: the host computes each chunk's fp32 logits (double dot products, times 1 / temperature) into
// the poisoned logits scratch. Cases of test_cuda_logprobs.cu (fp32; the kernels never see the storage
// dtype), the full Qwen2 vocabulary once, and rows of equal logits (a uniform distribution).
// Dimension letters: N rows, C channels, V vocabulary.
#include "kernels/cuda/logprobs.cuh"

#include "cuda_emu_test.h"

static emu_stats lp_st = {"logprobs (init/fold/finish)", 1e-5};
static emu_stats ent_st = {"entropy (init/fold/finish)", 1e-5};

static void run_case(int N, int C, int V, float temperature, int rows, int vchunk, bool with_entropy,
                     bool zero_hidden) {
    std::string what = emu_what("N %d C %d V %d T %.2f rows %d vchunk %d%s", N, C, V, temperature, rows, vchunk,
                                zero_hidden ? " equal logits" : "");
    std::vector<float> h = emu_randn((size_t)N * C, zero_hidden ? 0.0f : 1.0f), w = emu_randn((size_t)V * C, 0.5f);
    std::vector<int64_t> tgt((size_t)N);
    for (int64_t &y : tgt) y = (int64_t)maye_rng_below(&emu_rng, (uint64_t)V);
    if (N > 0) tgt[0] = V - 1; // the last column of the last chunk
    std::vector<float> ref_lp((size_t)N), ref_ent((size_t)N);
    std::vector<float> scratch(logprobs_scratch_floats(16, 1000));
    logprobs_forward(ref_lp.data(), ref_ent.data(), h.data(), w.data(), tgt.data(), N, C, V, temperature, 16, 1000,
                     scratch.data());

    // cuda_logprobs_forward's scratch: logits (rows, vchunk), then m, s, t, zy (rows) each
    emu_array<float> logits((int64_t)rows * vchunk), sm(rows), ss(rows), st(rows), szy(rows);
    emu_array<float> lp(N), ent(N);
    for (int r0 = 0; r0 < N; r0 += rows) {
        int nr = N - r0 < rows ? N - r0 : rows;
        sm.poison(), ss.poison(), st.poison(), szy.poison();
        cuda_emu_launch(logprobs_init_kernel, dim3((unsigned)((nr + 255) / 256)), dim3(256), 0, sm.data(), ss.data(),
                        st.data(), szy.data(), nr);
        for (int v0 = 0; v0 < V; v0 += vchunk) {
            int nv = V - v0 < vchunk ? V - v0 : vchunk;
            logits.poison();
            emu_host_logits(logits.data(), h.data() + (size_t)r0 * C, w.data() + (size_t)v0 * C, nr, nv, C, temperature);
            cuda_emu_launch(logprobs_fold_kernel, dim3((unsigned)nr), dim3(LP_THREADS), 0, (const float *)logits.data(),
                            nv, v0, (const int64_t *)tgt.data() + r0, sm.data(), ss.data(), st.data(), szy.data());
        }
        cuda_emu_launch(logprobs_finish_kernel, dim3((unsigned)((nr + 255) / 256)), dim3(256), 0, lp.data() + r0,
                        with_entropy ? ent.data() + r0 : nullptr, (const float *)sm.data(), (const float *)ss.data(),
                        (const float *)st.data(), (const float *)szy.data(), nr);
    }
    emu_check(lp_st, "logprobs " + what, lp.get(), ref_lp);
    if (with_entropy) {
        emu_check(ent_st, "entropy " + what, ent.get(), ref_ent);
    } else {
        bool untouched = true;
        for (int i = 0; i < N; i++) untouched = untouched && emu_is_poison(ent.data()[i]);
        EXPECT(untouched, "logprobs %s without entropy: an entropy was written", what.c_str());
    }
    EXPECT(lp.guards_intact() && ent.guards_intact() && sm.guards_intact() && ss.guards_intact() &&
               st.guards_intact() && szy.guards_intact(),
           "logprobs %s: an element outside the arrays was written", what.c_str());
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    maye_rng_init(&emu_rng, 20240616, 5);
    run_case(1, 13, 1, 1.0f, 1, 1, true, false);
    run_case(7, 13, 37, 1.0f, 4, 7, true, false);
    run_case(33, 64, 1000, 0.7f, 8, 300, true, false);
    run_case(33, 64, 1000, 1.3f, 64, 4096, false, false);
    run_case(65, 48, 5003, 1.0f, 32, 1024, true, false);
    run_case(5, 16, 700, 1.0f, 4, 300, true, true);
    run_case(3, 32, 151936, 1.0f, 2, 32768, true, false);
    for (const emu_stats *st : {&lp_st, &ent_st}) emu_stats_print(*st);
    return TEST_RESULT();
}
