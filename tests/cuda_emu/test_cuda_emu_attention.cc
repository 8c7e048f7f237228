// The attention forward kernels of lib/kernels/cuda/attention.cuh on the CPU emulator against a double-
// precision reference: attn_simt_kernel (fp32, and bf16 storage with fp32 math), attn_mma_kernel (tensor
// cores, D 64/80/128, in both block shapes: 4 warps / 64 query rows and 8 warps / 128 rows, which must also
// agree bit for bit) and attn_decode_kernel + attn_combine_kernel (one query row per segment, split-K with
// several split sizes). Cases: packed segments of odd lengths (around the 64- and 128-row tiles too), empty
// segments, a segment without keys, causal with cached keys (nk > nq) and with nk < nq (rows that see nothing),
// GQA ratios 1, 2, 3, 6, 7 and 16, strided rows and misaligned keys. Outputs are poisoned with NaN beforehand
// and their row padding must stay untouched. The launches use the grids of attention.cu.
#include "attention_ref.h"

// ----------------------------------------------------------------------------
// running the kernels

static emu_stats simt_f32 = {"attn_simt_kernel<float> out+lse", 1e-5};
static emu_stats simt_bf16 = {"attn_simt_kernel<bf16> out", 5e-3};
static emu_stats mma_out[2] = {{"attn_mma_kernel 64 rows out", 1e-2}, {"attn_mma_kernel 128 rows out", 1e-2}};
static emu_stats mma_lse[2] = {{"attn_mma_kernel 64 rows lse", 1e-5}, {"attn_mma_kernel 128 rows lse", 1e-5}};
static emu_stats dec_out = {"attn_decode (+combine) out", 1e-2};
static emu_stats dec_lse = {"attn_decode (+combine) lse", 1e-5};
static emu_stats bf16_lse = {"attn_simt_kernel<bf16> lse", 1e-5};

// Compares out (T, ldo) and lse (T, H) with the reference; the padding of each out row must stay poisoned.
template <typename T>
static void check_outputs(const emu_attn_problem &p, const char *kernel, const std::vector<T> &out,
                          const std::vector<float> &lse, emu_stats &st_out, emu_stats &st_lse) {
    std::vector<double> ref, ref_lse;
    emu_attn_reference(p, ref, ref_lse);
    int HD = p.c.H * p.c.D;
    std::vector<float> got((size_t)p.T * HD);
    for (int t = 0; t < p.T; t++) {
        for (int j = 0; j < HD; j++) got[(size_t)t * HD + j] = to_f32(out[(size_t)t * p.ldo + j]);
        for (int64_t j = HD; j < p.ldo; j++)
            EXPECT(emu_is_poison(out[(size_t)t * p.ldo + j]), "%s, %s: out row %d padding element %lld was written",
                   kernel, p.c.name, t, (long long)j);
    }
    std::string shape = emu_what("(T %d, H %d, KV %d, D %d) %s", p.T, p.c.H, p.c.KV, p.c.D, p.c.name);
    emu_check(st_out, emu_what("%s out %s", kernel, shape.c_str()), got, ref);
    emu_check(st_lse, emu_what("%s lse %s", kernel, shape.c_str()), lse, ref_lse);
}

template <typename T, int DPL> static void launch_simt(const emu_attn_problem &p, T *out, float *lse) {
    dim3 grid((unsigned)((p.max_nq + SIMT_BQ - 1) / SIMT_BQ), (unsigned)p.c.H, (unsigned)p.B);
    cuda_emu_launch(attn_simt_kernel<T, DPL>, grid, dim3(128), attn_simt_smem_bytes(p.c.D),
                    emu_attn_args<T>(p, out, lse));
}

template <typename T> static void run_simt(const emu_attn_case &c) {
    bool bf16 = std::is_same<T, __nv_bfloat16>::value;
    emu_attn_problem p;
    emu_attn_problem_init(p, c, bf16);
    std::vector<T> out((size_t)p.T * p.ldo);
    std::vector<float> lse((size_t)p.T * p.c.H);
    emu_poison(out), emu_poison(lse);
    int D = c.D;
    if (D <= 32) launch_simt<T, 1>(p, out.data(), lse.data());
    else if (D <= 64) launch_simt<T, 2>(p, out.data(), lse.data());
    else if (D <= 128) launch_simt<T, 4>(p, out.data(), lse.data());
    else launch_simt<T, 8>(p, out.data(), lse.data());
    if (bf16) check_outputs(p, "attn_simt_kernel<bf16>", out, lse, simt_bf16, bf16_lse);
    else check_outputs(p, "attn_simt_kernel<float>", out, lse, simt_f32, simt_f32);
}

// grid (H, B, ceil(max_nq / BM)) with BM = 16 WARPS query rows and 32 WARPS threads per block.
template <int D, int WARPS> static void launch_mma(const emu_attn_problem &p, __nv_bfloat16 *out, float *lse) {
    constexpr int BM = attn_mma_block_rows<WARPS>();
    dim3 grid((unsigned)p.c.H, (unsigned)p.B, (unsigned)((p.max_nq + BM - 1) / BM));
    cuda_emu_launch(attn_mma_kernel<D, WARPS>, grid, dim3(32 * WARPS), attn_mma_smem_bytes<D, WARPS>(),
                    emu_attn_args(p, out, lse));
}

template <int WARPS> static void launch_mma(const emu_attn_problem &p, __nv_bfloat16 *out, float *lse) {
    if (p.c.D == 64) launch_mma<64, WARPS>(p, out, lse);
    else if (p.c.D == 80) launch_mma<80, WARPS>(p, out, lse);
    else launch_mma<128, WARPS>(p, out, lse);
}

// The prefill kernel in both block shapes, each against the reference; the 128-row blocks must give the same
// bits as the 64-row ones (every warp sees the same tiles in the same order).
static void run_mma(const emu_attn_case &c) {
    emu_attn_problem p;
    emu_attn_problem_init(p, c, true);
    std::vector<__nv_bfloat16> out[2];
    std::vector<float> lse[2];
    for (int shape = 0; shape < 2; shape++) {
        out[shape].resize((size_t)p.T * p.ldo), lse[shape].resize((size_t)p.T * p.c.H);
        emu_poison(out[shape]), emu_poison(lse[shape]);
        if (shape == 0) launch_mma<4>(p, out[0].data(), lse[0].data());
        else launch_mma<8>(p, out[1].data(), lse[1].data());
        std::string kernel = emu_what("attn_mma_kernel (%d rows)", shape == 0 ? 64 : 128);
        check_outputs(p, kernel.c_str(), out[shape], lse[shape], mma_out[shape], mma_lse[shape]);
    }
    int HD = p.c.H * p.c.D, bad = 0; // the first 5 differences are reported
    for (int t = 0; t < p.T && bad < 5; t++) {
        for (int j = 0; j < HD && bad < 5; j++) {
            size_t i = (size_t)t * p.ldo + j;
            bool same = memcmp(&out[0][i], &out[1][i], sizeof out[0][i]) == 0;
            bad += !same;
            EXPECT(same, "attn_mma_kernel %s: out row %d element %d is %.9g with 64 rows, %.9g with 128", c.name, t, j,
                   to_f32(out[0][i]), to_f32(out[1][i]));
        }
        for (int h = 0; h < p.c.H && bad < 5; h++) {
            size_t i = (size_t)t * p.c.H + h;
            bool same = memcmp(&lse[0][i], &lse[1][i], sizeof lse[0][i]) == 0;
            bad += !same;
            EXPECT(same, "attn_mma_kernel %s: lse row %d head %d is %.9g with 64 rows, %.9g with 128", c.name, t, h,
                   lse[0][i], lse[1][i]);
        }
    }
}

// grid (splits, KV, B), each segment's tiles dealt over the splits; several splits write the workspace
// (poisoned beforehand), which attn_combine_kernel (grid (H, B)) merges into out and lse.
template <int D>
static void launch_decode(const emu_attn_problem &p, int splits, __nv_bfloat16 *out, float *lse) {
    int H = p.c.H;
    std::vector<float> ws((size_t)splits * p.B * H * (D + 1));
    emu_poison(ws);
    float *ws_o = ws.data(), *ws_lse = ws_o + (size_t)splits * p.B * H * D;
    AttnArgs<__nv_bfloat16> a = emu_attn_args(p, out, lse);
    cuda_emu_launch(attn_decode_kernel<D>, dim3((unsigned)splits, (unsigned)p.c.KV, (unsigned)p.B), dim3(128),
                    attn_decode_smem_bytes<D>(), a, ws_o, ws_lse);
    if (splits > 1)
        cuda_emu_launch(attn_combine_kernel, dim3((unsigned)H, (unsigned)p.B), dim3(128), 0, out, p.ldo, lse,
                        (const float *)ws_o, (const float *)ws_lse, p.cu_q.data(), p.B, H, D, splits);
}

static void run_decode(const emu_attn_case &c, int splits) {
    emu_attn_problem p;
    emu_attn_problem_init(p, c, true);
    std::vector<__nv_bfloat16> out((size_t)p.T * p.ldo);
    std::vector<float> lse((size_t)p.T * p.c.H);
    emu_poison(out), emu_poison(lse);
    if (c.D == 64) launch_decode<64>(p, splits, out.data(), lse.data());
    else if (c.D == 80) launch_decode<80>(p, splits, out.data(), lse.data());
    else launch_decode<128>(p, splits, out.data(), lse.data());
    std::string kernel = emu_what("attn_decode_kernel (%d splits)", splits);
    check_outputs(p, kernel.c_str(), out, lse, dec_out, dec_lse);
}

// ----------------------------------------------------------------------------
// cases

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    maye_rng_init(&emu_rng, 20240611, 3);
    // name, nq, nk, H, KV, D, causal, pad_q, pad_kv, misalign
    std::vector<emu_attn_case> simt = {
        {"causal packed G2, empty segment", {1, 17, 40, 0}, {1, 17, 40, 0}, 4, 2, 64, 1, 3, 5, 0},
        {"causal cached keys G7", {5, 33}, {38, 70}, 7, 1, 80, 1, 0, 0, 0},
        {"causal nk < nq G1", {9}, {4}, 2, 2, 32, 1, 0, 0, 0},
        {"bidirectional G6, no keys", {7, 3}, {45, 0}, 6, 1, 200, 0, 1, 0, 1},
    };
    std::vector<emu_attn_case> prefill = {
        {"causal packed G6, empty segment", {1, 17, 64, 100, 0}, {1, 17, 64, 100, 0}, 6, 1, 128, 1, 0, 0, 0},
        {"causal cached keys G2 strided", {9, 70}, {75, 131}, 4, 2, 64, 1, 8, 16, 0},
        {"causal nk < nq G1", {20}, {7}, 2, 2, 64, 1, 0, 0, 0},
        {"bidirectional G7 misaligned keys, no keys", {31, 7, 4}, {90, 1, 0}, 7, 1, 80, 0, 0, 0, 1},
        // around the 128-row tile: partial last tiles, warps 4-7 with no rows, causal diagonals inside a block
        {"causal packed G2 odd lengths, empty segments", {1, 65, 0, 127, 129, 200, 0}, {1, 65, 0, 127, 129, 200, 0},
         4, 2, 64, 1, 0, 0, 0},
        {"causal cached keys G6 strided", {129, 200, 60, 0}, {300, 260, 190, 17}, 6, 1, 128, 1, 8, 8, 0},
        {"causal nk < nq G2", {200, 130, 1}, {70, 3, 0}, 4, 2, 80, 1, 0, 0, 0},
        {"bidirectional G3 misaligned keys", {127, 129, 256, 0}, {127, 129, 256, 0}, 3, 1, 80, 0, 0, 0, 1},
        {"bidirectional G1 nk < nq and nk > nq", {200, 65}, {40, 300}, 2, 2, 128, 0, 0, 16, 0},
        {"causal single segment G7", {255}, {255}, 7, 1, 128, 1, 0, 0, 0},
    };
    std::vector<emu_attn_case> decode = {
        {"decode G6, empty segment", {1, 1, 1, 0, 1}, {1, 63, 64, 5, 300}, 12, 2, 128, 1, 0, 0, 0},
        {"decode G7, no keys", {1, 1}, {200, 0}, 7, 1, 64, 1, 8, 0, 0},
        {"decode G1 misaligned keys", {1, 1, 1}, {3, 77, 513}, 2, 2, 80, 0, 0, 0, 1},
        {"decode G16", {1}, {130}, 16, 1, 64, 1, 0, 0, 0},
    };
    for (const emu_attn_case &c : simt) run_simt<float>(c), run_simt<__nv_bfloat16>(c);
    for (const emu_attn_case &c : prefill) run_mma(c);
    for (const emu_attn_case &c : decode) {
        for (int splits : {1, 2, 3, 5, 9}) run_decode(c, splits); // 9: more splits than most segments' tiles
        run_mma(c); // one-row segments through the prefill kernel (CUDA_ATTN_PREFILL), both shapes
    }
    for (const emu_stats *st : {&simt_f32, &simt_bf16, &bf16_lse, &mma_out[0], &mma_lse[0], &mma_out[1], &mma_lse[1],
                                &dec_out, &dec_lse})
        emu_stats_print(*st);
    return TEST_RESULT();
}
