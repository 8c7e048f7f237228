// The normalisation kernels of lib/kernels/cuda/norm.cuh on the CPU emulator against the CPU reference
// (kernels/cpu: rmsnorm_forward, layernorm_forward): rmsnorm_kernel, rmsnorm_row_kernel (fewer than 1024 rows)
// and layernorm_kernel, in fp32 and bf16 storage with fp32 weights and biases. Widths: 1, odd ones (scalar
// path only), multiples of 4 but not 8 (vector path in fp32 only), multiples of 8 with a partial last 256-wide
// stride; pointers aligned, weights and biases one float off (scalar path although the width allows vectors) and
// activations one element off.
// The launches pick the kernel variant and grid as norm.cu does; outputs are poisoned and their guards must
// stay poisoned. bf16 outputs are compared with the reference rounded to bf16. Dimension letters: T rows, C channels.
#include "kernels/cuda/norm.cuh"

#include "cuda_emu_test.h"

// ----------------------------------------------------------------------------
// launches (norm.cu)

static emu_stats rms_f32 = {"rmsnorm_kernel<float> out", 1e-5};
static emu_stats rms_bf16 = {"rmsnorm_kernel<bf16> out", 4e-3};
static emu_stats ln_f32 = {"layernorm_kernel<float> out", 1e-5};
static emu_stats ln_bf16 = {"layernorm_kernel<bf16> out", 4e-3};
static emu_stats stats_st = {"rstd and mean (both kernels)", 1e-5};

// Launches of the 16-byte vector variant and of the scalar one, by dtype (0 fp32, 1 bf16).
static int vec_launches[2], scalar_launches[2];
// RMSNorm launches by norm_row_vectors: 0 the warp kernel, else the block-per-row one with 1, 2 or 4 vectors.
static int row_launches[5];

template <typename T>
static void rmsnorm_launch(T *out, float *rstd, const T *inp, const float *weight, int rows, int C, float eps) {
    constexpr int VW = VecWidth<T>::value;
    bool vec = C % VW == 0 && aligned16(out) && aligned16(inp) && aligned16(weight);
    dim3 grid((unsigned)((rows + NORM_ROWS_PER_BLOCK - 1) / NORM_ROWS_PER_BLOCK)), block(32 * NORM_ROWS_PER_BLOCK);
    (vec ? vec_launches : scalar_launches)[sizeof(T) == 2]++;
    int K = norm_row_vectors(rows, C, vec ? VW : 1);
    row_launches[K]++;
    if (K > 0) {
        dim3 rgrid((unsigned)rows), rblock((unsigned)norm_row_threads(C, vec ? VW : 1, K));
        auto kernel = vec ? (K == 1 ? rmsnorm_row_kernel<T, VW, 1> : K == 2 ? rmsnorm_row_kernel<T, VW, 2>
                                                                            : rmsnorm_row_kernel<T, VW, 4>)
                          : (K == 1 ? rmsnorm_row_kernel<T, 1, 1> : K == 2 ? rmsnorm_row_kernel<T, 1, 2>
                                                                           : rmsnorm_row_kernel<T, 1, 4>);
        cuda_emu_launch(kernel, rgrid, rblock, 0, out, rstd, inp, weight, C, eps);
    } else if (vec) cuda_emu_launch(rmsnorm_kernel<T, VW>, grid, block, 0, out, rstd, inp, weight, rows, C, eps);
    else cuda_emu_launch(rmsnorm_kernel<T, 1>, grid, block, 0, out, rstd, inp, weight, rows, C, eps);
}

template <typename T>
static void layernorm_launch(T *out, float *mean, float *rstd, const T *inp, const float *weight, const float *bias,
                             int rows, int C, float eps) {
    constexpr int VW = VecWidth<T>::value;
    bool vec = C % VW == 0 && aligned16(out) && aligned16(inp) && aligned16(weight) && aligned16(bias);
    dim3 grid((unsigned)((rows + NORM_ROWS_PER_BLOCK - 1) / NORM_ROWS_PER_BLOCK)), block(32 * NORM_ROWS_PER_BLOCK);
    (vec ? vec_launches : scalar_launches)[sizeof(T) == 2]++;
    if (vec) cuda_emu_launch(layernorm_kernel<T, VW>, grid, block, 0, out, mean, rstd, inp, weight, bias, rows, C, eps);
    else cuda_emu_launch(layernorm_kernel<T, 1>, grid, block, 0, out, mean, rstd, inp, weight, bias, rows, C, eps);
}

// ----------------------------------------------------------------------------
// one shape

// Alignment of the pointers: all 16-byte aligned, the weight and bias one float off, or the activations
// (inputs and outputs) one element off.
enum align_mode { ALIGNED, WEIGHT_OFF, ACT_OFF };
static const char *align_names[] = {"aligned", "weight+1", "activations+1"};

static void expect_guards(const char *what, const std::string &shape, bool intact) {
    EXPECT(intact, "%s %s: an element outside the array was written", what, shape.c_str());
}

template <typename T> static void run_shape(int rows, int C, align_mode mode, bool with_stats) {
    bool is_bf16 = sizeof(T) == 2;
    int64_t n = (int64_t)rows * C;
    float eps = 1e-6f;
    int woff = mode == WEIGHT_OFF ? 1 : 0, aoff = mode == ACT_OFF ? 1 : 0;
    std::string shape = emu_what("%s %dx%d %s%s", is_bf16 ? "bf16" : "f32", rows, C, align_names[mode],
                                 with_stats ? "" : " no stats");
    std::vector<float> x = emu_randn((size_t)n, 2.0f);
    std::vector<float> w = emu_randn((size_t)C, 1.0f), bias = emu_randn((size_t)C, 1.0f);
    if (is_bf16) emu_round_bf16(x); // the weight and bias stay fp32
    emu_array<T> dx(n, aoff), dout(n, aoff);
    emu_array<float> dw(C, woff), db(C, woff), drstd(rows), dmean(rows);
    dx.set(x), dw.set(w), db.set(bias);
    float *prstd = with_stats ? drstd.data() : nullptr, *pmean = with_stats ? dmean.data() : nullptr;
    std::vector<float> ref((size_t)n), rstd((size_t)rows), mean((size_t)rows);
    emu_stats &rms = is_bf16 ? rms_bf16 : rms_f32, &ln = is_bf16 ? ln_bf16 : ln_f32;

    rmsnorm_forward(ref.data(), rstd.data(), x.data(), w.data(), rows, C, eps);
    if (is_bf16) emu_round_bf16(ref);
    rmsnorm_launch<T>(dout.data(), prstd, dx.data(), dw.data(), rows, C, eps);
    emu_check(rms, "rmsnorm " + shape, dout.get(), ref);
    if (with_stats) emu_check(stats_st, "rmsnorm rstd " + shape, drstd.get(), rstd);
    expect_guards("rmsnorm", shape, dout.guards_intact() && drstd.guards_intact());

    layernorm_forward(ref.data(), mean.data(), rstd.data(), x.data(), w.data(), bias.data(), rows, C, eps);
    if (is_bf16) emu_round_bf16(ref);
    dout.poison(), drstd.poison();
    layernorm_launch<T>(dout.data(), pmean, prstd, dx.data(), dw.data(), db.data(), rows, C, eps);
    emu_check(ln, "layernorm " + shape, dout.get(), ref);
    if (with_stats) {
        emu_check(stats_st, "layernorm rstd " + shape, drstd.get(), rstd);
        emu_check(stats_st, "layernorm mean " + shape, dmean.get(), mean);
    }
    expect_guards("layernorm", shape, dout.guards_intact() && drstd.guards_intact() && dmean.guards_intact());
}

// ----------------------------------------------------------------------------
// cases

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    maye_rng_init(&emu_rng, 20240612, 1);
    // rows, C: one row; odd widths; a multiple of 4 only; multiples of 8 (520: a partial last stride of the
    // 8-wide vectors, 1536: the Qwen2 hidden size)
    // 1030 x 136: the warp RMSNorm kernel (1024 rows and more); 2 x 2056: the block-per-row one with 2 (bf16) or
    // 4 (fp32) vectors per thread; 3 x 9000: rows too long for it
    int shapes[][2] = {{1, 1}, {1, 13}, {7, 67}, {3, 129}, {6, 20}, {9, 64}, {5, 520}, {2, 1536}, {1030, 136},
                       {2, 2056}, {3, 9000}};
    for (const auto &s : shapes)
        for (align_mode mode : {ALIGNED, WEIGHT_OFF, ACT_OFF}) {
            bool with_stats = !(s[0] == 9 && mode == ALIGNED); // once without rstd / mean
            run_shape<float>(s[0], s[1], mode, with_stats);
            run_shape<bf16>(s[0], s[1], mode, with_stats);
        }
    for (int d = 0; d < 2; d++)
        EXPECT(vec_launches[d] > 0 && scalar_launches[d] > 0, "%s: %d vector and %d scalar launches (want both)",
               d ? "bf16" : "f32", vec_launches[d], scalar_launches[d]);
    for (int K : {0, 1, 2, 4}) EXPECT(row_launches[K] > 0, "no RMSNorm launch with norm_row_vectors %d", K);
    printf("launches: f32 %d vector, %d scalar; bf16 %d vector, %d scalar\n", vec_launches[0], scalar_launches[0],
           vec_launches[1], scalar_launches[1]);
    for (const emu_stats *st : {&rms_f32, &rms_bf16, &ln_f32, &ln_bf16, &stats_st}) emu_stats_print(*st);
    return TEST_RESULT();
}
