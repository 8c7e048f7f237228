// The kernels of lib/kernels/cuda/model_kernels.cuh (the GPU model's elementwise, row and reduction kernels) on
// the CPU emulator, launched with the grids of model_kernels.cu, against the CPU reference (kernels/cpu:
// gated_activation_forward/backward, rmsnorm_forward/backward, rope_backward, embedding_backward) or, where
// there is none, a direct computation: convert_kernel (all four dtype pairs, exact), fill_normal_kernel
// (Box-Muller on the host's Philox words, in double), fill_value_kernel, copy_rows_kernel (row lists and
// identity, accumulate or not, all dtype pairs), gated_rows_kernel and its backward (the four activations),
// rmsnorm_backward_kernel with the dweight column sums (column_partial_kernel + column_finish_kernel, several
// 64-row chunks and 256-column blocks) and the bias backward over a strided dout, the rotary backward
// (rope.cuh's rope_kernel by the opposite angle, as cuda_rope_backward launches it) on strided rows (the padding keeps its values), embedding_backward_kernel (ids grouped, skipped rows). fp32 and
// bf16 storage (inputs rounded to bf16 first, bf16 outputs compared with the rounded reference); odd widths;
// the RMSNorm backward's vector and scalar paths with aligned and misaligned (one float off) fp32 weights and
// misaligned activations. The grid-stride kernels run again with 3 blocks so their loops take several turns.
// Outputs are poisoned (NaN) where written, accumulated ones start random, and the guards around every array
// must stay poisoned. Dimension letters: N elements, T rows, C channels, I intermediate width, NH heads,
// D head dim, V vocabulary, U distinct ids.
#include "kernels/cuda/model_kernels.cuh"
#include "kernels/cuda/rope.cuh"

#include "cuda_emu_test.h"

#include <type_traits>

// ----------------------------------------------------------------------------
// launch geometry (model_kernels.cu)

// grid_for(n, 256, cap) of a flat grid-stride launch, or 3 blocks so that the loop strides.
static unsigned flat_grid(int64_t n, int64_t cap, bool small) { return small ? 3u : grid_for(n, 256, cap); }
// One block per row up to 65535 blocks (ROW_GRID_CAP), or 3 blocks.
static unsigned row_grid(int n, bool small) { return small ? 3u : (unsigned)(n < 65535 ? n : 65535); }
#define ROW_THREADS 256 // threads per row in the row kernels

template <typename T> static constexpr bool is_bf16() { return std::is_same<T, bf16>::value; }
template <typename T> static const char *dt_name() { return is_bf16<T>() ? "bf16" : "f32"; }
template <typename T> static void round_as(std::vector<float> &x) {
    if (is_bf16<T>()) emu_round_bf16(x);
}

static void expect_guards(const char *what, const std::string &shape, bool intact) {
    EXPECT(intact, "%s %s: an element outside the array was written", what, shape.c_str());
}

static const char *act_names[] = {"silu", "gelu", "gelu_tanh", "quick_gelu"};

// ----------------------------------------------------------------------------
// conversion and fills

static emu_stats convert_st = {"convert_kernel (exact)", 0};
static emu_stats normal_f32 = {"fill_normal_kernel<float>", 1e-5};
static emu_stats normal_bf16 = {"fill_normal_kernel<bf16>", 4e-3};
static emu_stats value_st = {"fill_value_kernel (exact)", 0};

template <typename TD, typename TS> static void test_convert(int64_t N, int off, bool small) {
    std::string shape = emu_what("%s -> %s N %lld%s grid %s", dt_name<TS>(), dt_name<TD>(), (long long)N,
                                 off ? " misaligned" : "", small ? "3" : "model_kernels.cu");
    std::vector<float> x = emu_randn((size_t)N, 3.0f);
    round_as<TS>(x);
    emu_array<TS> src(N, off);
    emu_array<TD> dst(N, off);
    src.set(x);
    cuda_emu_launch(convert_kernel<TD, TS>, dim3(flat_grid(N, 16384, small)), dim3(256), 0, dst.data(),
                    (const TS *)src.data(), N);
    round_as<TD>(x);
    emu_check(convert_st, "convert " + shape, dst.get(), x);
    expect_guards("convert", shape, dst.guards_intact());
}

// Element i of fill_normal_kernel in double: Box-Muller on words 0 and 1 of the Philox block
// (i / 2, stream) under the key seed, cos for even i and sin for odd i.
static double normal_at(int64_t i, float std, uint64_t seed, uint64_t stream) {
    uint64_t pair = (uint64_t)i / 2;
    uint32_t ctr[4] = {(uint32_t)pair, (uint32_t)(pair >> 32), (uint32_t)stream, (uint32_t)(stream >> 32)};
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)}, c[4];
    maye_philox4x32(ctr, key, c);
    double u1 = ((double)(c[0] >> 8) + 1.0) / 16777216.0, u2 = (double)(c[1] >> 8) / 16777216.0;
    double rad = sqrt(-2.0 * log(u1)), a = 6.283185307179586 * u2;
    return std * rad * ((i & 1) ? sin(a) : cos(a));
}

template <typename T> static void test_fills(int64_t N, bool small) {
    std::string shape = emu_what("%s N %lld grid %s", dt_name<T>(), (long long)N, small ? "3" : "model_kernels.cu");
    float std = 0.5f;
    // a seed and a stream with high words, so every word of the counter and key matters
    uint64_t seed = 0x0123456789abcdefull, stream = (5ull << 32) | 3u;
    emu_array<T> out(N);
    cuda_emu_launch(fill_normal_kernel<T>, dim3(flat_grid(N, 16384, small)), dim3(256), 0, out.data(), N, std, seed,
                    stream);
    std::vector<double> want((size_t)N);
    for (int64_t i = 0; i < N; i++) {
        want[(size_t)i] = normal_at(i, std, seed, stream);
        if (is_bf16<T>()) want[(size_t)i] = emu_round_bf16((float)want[(size_t)i]);
    }
    emu_check(is_bf16<T>() ? normal_bf16 : normal_f32, "fill_normal " + shape, out.get(), want);
    expect_guards("fill_normal", shape, out.guards_intact());

    out.poison();
    cuda_emu_launch(fill_value_kernel<T>, dim3(flat_grid(N, 16384, small)), dim3(256), 0, out.data(), N, -2.5f);
    emu_check(value_st, "fill_value " + shape, out.get(), std::vector<float>((size_t)N, -2.5f));
    expect_guards("fill_value", shape, out.guards_intact());
}

// ----------------------------------------------------------------------------
// rows

static emu_stats copy_st = {"copy_rows_kernel (exact)", 0};

// n rows of width W from src (rows_src, lds) to dst (rows_dst, ldd), through the row lists or (identity)
// without them; the rows of dst not listed keep their values.
template <typename TD, typename TS> static void test_copy_rows(int W, bool lists, int acc, bool small) {
    int n = 5, lds = W + 4, ldd = W + 6, rows_src = 9, rows_dst = 11;
    int src_list[5] = {8, 0, 3, 3, 6}, dst_list[5] = {10, 2, 0, 7, 5};
    std::string shape = emu_what("%s -> %s W %d %s accumulate %d grid %s", dt_name<TS>(), dt_name<TD>(), W,
                                 lists ? "row lists" : "identity", acc, small ? "3" : "model_kernels.cu");
    std::vector<float> src = emu_randn((size_t)rows_src * lds, 1.0f), dst = emu_randn((size_t)rows_dst * ldd, 1.0f);
    round_as<TS>(src), round_as<TD>(dst);
    std::vector<float> want = dst;
    for (int i = 0; i < n; i++) {
        int sr = lists ? src_list[i] : i, dr = lists ? dst_list[i] : i;
        for (int c = 0; c < W; c++)
            want[(size_t)dr * ldd + c] = src[(size_t)sr * lds + c] + (acc ? dst[(size_t)dr * ldd + c] : 0.0f);
    }
    round_as<TD>(want);
    emu_array<TS> ds((int64_t)rows_src * lds);
    emu_array<TD> dd((int64_t)rows_dst * ldd);
    ds.set(src), dd.set(dst);
    int threads = W >= 256 ? 256 : (W + 31) / 32 * 32;
    cuda_emu_launch(copy_rows_kernel<TD, TS>, dim3(row_grid(n, small)), dim3(threads), 0, dd.data(), (int64_t)ldd,
                    (const int *)(lists ? dst_list : nullptr), (const TS *)ds.data(), (int64_t)lds,
                    (const int *)(lists ? src_list : nullptr), n, W, acc);
    emu_check(copy_st, "copy_rows " + shape, dd.get(), want);
    expect_guards("copy_rows", shape, dd.guards_intact());
}

// ----------------------------------------------------------------------------
// MLP activation over fused gate|up rows

static emu_stats gated_f32 = {"gated_rows_kernel<float>", 1e-5};
static emu_stats gated_bf16 = {"gated_rows_kernel<bf16>", 4e-3};
static emu_stats gated_bwd_f32 = {"gated_rows_backward_kernel<float>", 1e-5};
static emu_stats gated_bwd_bf16 = {"gated_rows_backward_kernel<bf16>", 4e-3};

// gu (T, 2I) rows gate|up, out (T, I), dgu (T, 2I).
template <typename T> static void test_gated_rows(int rows, int I, act_kind act, bool small) {
    int64_t n = (int64_t)rows * I;
    std::string shape = emu_what("%s %s T %d I %d grid %s", act_names[act], dt_name<T>(), rows, I,
                                 small ? "3" : "model_kernels.cu");
    std::vector<float> gu = emu_randn((size_t)(2 * n), 2.0f), dout = emu_randn((size_t)n, 1.0f);
    round_as<T>(gu), round_as<T>(dout);
    std::vector<float> gate((size_t)n), up((size_t)n), out((size_t)n), dg((size_t)n, 0.0f), du((size_t)n, 0.0f);
    for (int t = 0; t < rows; t++)
        for (int i = 0; i < I; i++)
            gate[(size_t)t * I + i] = gu[(size_t)t * 2 * I + i], up[(size_t)t * I + i] = gu[(size_t)t * 2 * I + I + i];
    gated_activation_forward(out.data(), gate.data(), up.data(), n, act);
    gated_activation_backward(dg.data(), du.data(), dout.data(), gate.data(), up.data(), n, act);
    std::vector<float> want((size_t)(2 * n));
    for (int t = 0; t < rows; t++)
        for (int i = 0; i < I; i++)
            want[(size_t)t * 2 * I + i] = dg[(size_t)t * I + i], want[(size_t)t * 2 * I + I + i] = du[(size_t)t * I + i];
    round_as<T>(out), round_as<T>(want);

    emu_array<T> dgu(2 * n), dd(n), dout_fwd(n), dgrad(2 * n), dact(n), dgrad2(2 * n);
    dgu.set(gu), dd.set(dout);
    // the launcher's choice in model_kernels.cu: 16-byte vectors when I allows (the arrays are aligned)
    constexpr int VW = VecWidth<T>::value;
    bool vec = I % VW == 0;
    int W = vec ? VW : 1, per_block = GATED_THREADS * W;
    dim3 grid((unsigned)((I + per_block - 1) / per_block), (unsigned)(small ? 3 : rows));
    auto fwd = vec ? gated_rows_kernel<T, VW> : gated_rows_kernel<T, 1>;
    auto bwd = vec ? gated_rows_backward_kernel<T, VW> : gated_rows_backward_kernel<T, 1>;
    cuda_emu_launch(fwd, grid, dim3(GATED_THREADS), 0, dout_fwd.data(), (const T *)dgu.data(), rows, I, act);
    cuda_emu_launch(bwd, grid, dim3(GATED_THREADS), 0, dgrad.data(), (T *)nullptr, (const T *)dd.data(),
                    (const T *)dgu.data(), rows, I, act);
    cuda_emu_launch(bwd, grid, dim3(GATED_THREADS), 0, dgrad2.data(), dact.data(), (const T *)dd.data(),
                    (const T *)dgu.data(), rows, I, act);
    emu_check(is_bf16<T>() ? gated_bf16 : gated_f32, "gated_rows " + shape, dout_fwd.get(), out);
    emu_check(is_bf16<T>() ? gated_bwd_bf16 : gated_bwd_f32, "gated_rows_backward " + shape, dgrad.get(), want);
    EXPECT(dact.get() == dout_fwd.get() && dgrad2.get() == dgrad.get(),
           "gated_rows_backward %s: with act_out, the forward's output and the same gradients bit for bit",
           shape.c_str());
    expect_guards("gated_rows", shape, dact.guards_intact() && dgrad2.guards_intact());
    expect_guards("gated_rows", shape, dout_fwd.guards_intact() && dgrad.guards_intact());
}

// ----------------------------------------------------------------------------
// column sums, RMSNorm backward, bias backward

static emu_stats rmsb_f32 = {"rmsnorm_backward_kernel<float>", 1e-5};
static emu_stats rmsb_bf16 = {"rmsnorm_backward_kernel<bf16>", 4e-3};
static emu_stats dweight_st = {"column sums: rmsnorm dweight", 1e-5};
static emu_stats dbias_st = {"column sums: bias", 1e-5};

static int rmsb_vec[2], rmsb_scalar[2]; // launches of each variant by dtype (0 fp32, 1 bf16)

// column_sums of model_kernels.cu: out (C) += column sums of a (rows, lda) (times b (rows, ldb) * rowscale).
template <typename T>
static void column_sums(float *out, const T *a, int64_t lda, const T *b, int64_t ldb, const float *rowscale, int rows,
                        int C, float *scratch) {
    int chunks = (rows + COL_ROWS - 1) / COL_ROWS;
    dim3 grid((unsigned)((C + COL_THREADS - 1) / COL_THREADS), (unsigned)chunks);
    cuda_emu_launch(column_partial_kernel<T>, grid, dim3(COL_THREADS), 0, scratch, a, lda, b, ldb, rowscale, rows, C);
    cuda_emu_launch(column_finish_kernel, dim3((unsigned)((C + 255) / 256)), dim3(256), 0, out, (const float *)scratch,
                    chunks, C);
}

// rmsnorm_backward_launch of model_kernels.cu.
template <typename T>
static void rmsnorm_backward_launch(T *dx, float *dweight, const T *d, const T *x, const float *w, const float *rstd,
                                    int rows, int C, float *scratch) {
    constexpr int VW = VecWidth<T>::value;
    bool vec = C % VW == 0 && aligned16(dx) && aligned16(d) && aligned16(x) && aligned16(w);
    (vec ? rmsb_vec : rmsb_scalar)[is_bf16<T>()]++;
    dim3 grid((unsigned)((rows + 3) / 4));
    if (vec) cuda_emu_launch(rmsnorm_backward_kernel<T, VW>, grid, dim3(128), 0, dx, d, x, w, rstd, rows, C);
    else cuda_emu_launch(rmsnorm_backward_kernel<T, 1>, grid, dim3(128), 0, dx, d, x, w, rstd, rows, C);
    if (dweight) column_sums<T>(dweight, d, C, x, C, rstd, rows, C, scratch);
}

static int64_t column_scratch_floats(int rows, int C) { return (int64_t)((rows + COL_ROWS - 1) / COL_ROWS) * C; }

// Alignment: all 16-byte aligned, the fp32 weight one float off, or the activations one element off.
enum align_mode { ALIGNED, WEIGHT_OFF, ACT_OFF };
static const char *align_names[] = {"aligned", "weight+1", "activations+1"};

template <typename T> static void test_rmsnorm_backward(int rows, int C, align_mode mode, bool with_dweight) {
    int64_t n = (int64_t)rows * C;
    int woff = mode == WEIGHT_OFF ? 1 : 0, aoff = mode == ACT_OFF ? 1 : 0;
    std::string shape = emu_what("%s T %d C %d %s%s", dt_name<T>(), rows, C, align_names[mode],
                                 with_dweight ? "" : " no dweight");
    std::vector<float> x = emu_randn((size_t)n, 1.0f), w = emu_randn((size_t)C, 1.0f), dy = emu_randn((size_t)n, 1.0f);
    std::vector<float> dx = emu_randn((size_t)n, 1.0f), dw = emu_randn((size_t)C, 1.0f);
    round_as<T>(x), round_as<T>(dy), round_as<T>(dx); // the weight stays fp32
    std::vector<float> y((size_t)n), rstd((size_t)rows), want_dx = dx, want_dw = dw;
    rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), rows, C, 1e-6f);
    rmsnorm_backward(want_dx.data(), want_dw.data(), dy.data(), x.data(), w.data(), rstd.data(), rows, C);
    round_as<T>(want_dx);

    emu_array<T> gx(n, aoff), gdy(n, aoff), gdx(n, aoff);
    emu_array<float> gw(C, woff), gdw(C), grstd(rows), scratch(column_scratch_floats(rows, C));
    gx.set(x), gdy.set(dy), gdx.set(dx), gw.set(w), gdw.set(dw), grstd.set(rstd);
    rmsnorm_backward_launch<T>(gdx.data(), with_dweight ? gdw.data() : nullptr, gdy.data(), gx.data(), gw.data(),
                               grstd.data(), rows, C, scratch.data());
    emu_check(is_bf16<T>() ? rmsb_bf16 : rmsb_f32, "rmsnorm_backward dinp " + shape, gdx.get(), want_dx);
    if (with_dweight) emu_check(dweight_st, "rmsnorm_backward dweight " + shape, gdw.get(), want_dw);
    else test_close_f32(("rmsnorm_backward without dweight leaves it " + shape).c_str(), gdw.get().data(), dw.data(),
                        C, 0, 0);
    expect_guards("rmsnorm_backward", shape, gdx.guards_intact() && gdw.guards_intact() && scratch.guards_intact());
}

// dbias (N) += column sums of dout (T, ld), N <= ld.
template <typename T> static void test_bias_backward(int rows, int N, int ld) {
    std::string shape = emu_what("%s T %d N %d ld %d", dt_name<T>(), rows, N, ld);
    std::vector<float> dout = emu_randn((size_t)rows * ld, 1.0f), db = emu_randn((size_t)N, 1.0f);
    round_as<T>(dout);
    std::vector<double> want(db.begin(), db.end());
    for (int t = 0; t < rows; t++)
        for (int c = 0; c < N; c++) want[(size_t)c] += dout[(size_t)t * ld + c];
    emu_array<T> gd((int64_t)rows * ld);
    emu_array<float> gdb(N), scratch(column_scratch_floats(rows, N));
    gd.set(dout), gdb.set(db);
    column_sums<T>(gdb.data(), gd.data(), ld, nullptr, 0, nullptr, rows, N, scratch.data());
    emu_check(dbias_st, "bias_backward " + shape, gdb.get(), want);
    expect_guards("bias_backward", shape, gdb.guards_intact() && scratch.guards_intact());
}

// ----------------------------------------------------------------------------
// rotary backward

static emu_stats rope_f32 = {"rope_kernel<float> backward", 1e-5};
static emu_stats rope_bf16 = {"rope_kernel<bf16> backward", 4e-3};

// dx (T, ld) rotated in place on its NH heads of D; cos, sin (T, D/2).
template <typename T> static void test_rope_backward(int rows, int NH, int D, int ld, bool small) {
    int64_t n = (int64_t)rows * ld, pairs = (int64_t)rows * NH * (D / 2);
    std::string shape = emu_what("%s T %d NH %d D %d ld %d grid %s", dt_name<T>(), rows, NH, D, ld,
                                 small ? "3" : "rope.cu");
    std::vector<float> g = emu_randn((size_t)n, 1.0f), cs = emu_randn((size_t)rows * D / 2, 1.0f);
    std::vector<float> sn = emu_randn((size_t)rows * D / 2, 1.0f);
    round_as<T>(g);
    std::vector<float> want = g;
    rope_backward(want.data(), cs.data(), sn.data(), rows, NH, D, ld);
    round_as<T>(want);
    emu_array<T> dg(n);
    dg.set(g);
    cuda_emu_launch(rope_kernel<T>, dim3(flat_grid(pairs, 8192, small)), dim3(256), 0, dg.data(),
                    (const float *)cs.data(), (const float *)sn.data(), -1.0f, rows, NH, D, (int64_t)ld);
    emu_check(is_bf16<T>() ? rope_bf16 : rope_f32, "rope_backward " + shape, dg.get(), want);
    expect_guards("rope_backward", shape, dg.guards_intact());
}

// ----------------------------------------------------------------------------
// embedding backward

static emu_stats emb_st = {"embedding_backward_kernel", 1e-5};

// dtable (V, C) += dout (T, C) rows grouped by id (ids < 0 skipped), as the GPU model's caller groups them:
// the distinct ids in increasing order, starts (U + 1) into the list of their rows.
template <typename T> static void test_embedding_backward(int V, int C, int rows, bool small) {
    std::string shape = emu_what("%s V %d C %d T %d grid %s", dt_name<T>(), V, C, rows, small ? "3" : "model_kernels.cu");
    std::vector<int64_t> ids((size_t)rows);
    for (int t = 0; t < rows; t++) ids[(size_t)t] = t % 7 == 2 ? -1 : (int64_t)maye_rng_below(&emu_rng, (uint64_t)V);
    std::vector<float> dout = emu_randn((size_t)rows * C, 1.0f), table = emu_randn((size_t)V * C, 1.0f);
    round_as<T>(dout);
    std::vector<float> want = table;
    embedding_backward(want.data(), ids.data(), dout.data(), rows, C);
    std::vector<int64_t> uid;
    std::vector<int> starts, list;
    for (int v = 0; v < V; v++) {
        int first = (int)list.size();
        for (int t = 0; t < rows; t++)
            if (ids[(size_t)t] == v) list.push_back(t);
        if ((int)list.size() > first) uid.push_back(v), starts.push_back(first);
    }
    starts.push_back((int)list.size());
    int U = (int)uid.size();
    emu_array<T> gd((int64_t)rows * C);
    emu_array<float> gt((int64_t)V * C);
    gd.set(dout), gt.set(table);
    cuda_emu_launch(embedding_backward_kernel<T>, dim3(row_grid(U, small)), dim3(ROW_THREADS), 0, gt.data(),
                    (const int64_t *)uid.data(), (const int *)starts.data(), (const int *)list.data(), U,
                    (const T *)gd.data(), C);
    emu_check(emb_st, "embedding_backward " + shape, gt.get(), want);
    expect_guards("embedding_backward", shape, gt.guards_intact());
}

// ----------------------------------------------------------------------------
// cases

template <typename T> static void run_dtype(void) {
    for (bool small : {false, true}) {
        test_convert<T, float>(2000, 0, small);
        test_convert<T, bf16>(2000, 0, small);
        test_fills<T>(2001, small);
    }
    test_convert<T, float>(13, 1, false);
    test_convert<T, bf16>(13, 1, false);
    for (int W : {13, 300})
        for (bool lists : {true, false})
            for (int acc : {0, 1}) {
                test_copy_rows<T, float>(W, lists, acc, false);
                test_copy_rows<T, bf16>(W, lists, acc, false);
            }
    test_copy_rows<T, float>(13, true, 1, true);
    test_copy_rows<T, bf16>(13, true, 1, true);

    for (int a = ACT_SILU; a <= ACT_QUICK_GELU; a++)
        for (int I : {13, 64, 300, 1104}) test_gated_rows<T>(7, I, (act_kind)a, false);
    test_gated_rows<T>(7, 13, ACT_SILU, true);
    test_gated_rows<T>(7, 1104, ACT_SILU, true);

    // T, C: one row and one column; odd widths; a multiple of 4 only (fp32 vectors, bf16 scalars); multiples
    // of 8 with several 64-row chunks and 256-column blocks (520: a partial last 256-wide stride of the lanes'
    // 8-wide vectors), 1536 (the Qwen2 hidden size)
    int shapes[][2] = {{1, 1}, {1, 13}, {37, 67}, {6, 20}, {130, 64}, {66, 520}, {5, 1536}};
    for (const auto &s : shapes)
        for (align_mode mode : {ALIGNED, WEIGHT_OFF, ACT_OFF}) test_rmsnorm_backward<T>(s[0], s[1], mode, true);
    test_rmsnorm_backward<T>(37, 64, ALIGNED, false);
    test_bias_backward<T>(130, 300, 307);
    test_bias_backward<T>(37, 13, 13);

    // the GPU test's shape, the Qwen2 head dim, and 2240 pairs (3 turns of 3 blocks)
    test_rope_backward<T>(11, 5, 10, 57, false);
    test_rope_backward<T>(3, 2, 128, 300, false);
    for (bool small : {false, true}) test_rope_backward<T>(40, 7, 16, 117, small);

    for (bool small : {false, true}) test_embedding_backward<T>(17, 19, 50, small);
    test_embedding_backward<T>(9, 300, 20, false);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    maye_rng_init(&emu_rng, 20240620, 7);
    run_dtype<float>();
    run_dtype<bf16>();
    for (int d = 0; d < 2; d++)
        EXPECT(rmsb_vec[d] > 0 && rmsb_scalar[d] > 0, "rmsnorm_backward %s: %d vector and %d scalar launches (want both)",
               d ? "bf16" : "f32", rmsb_vec[d], rmsb_scalar[d]);
    printf("rmsnorm_backward launches: f32 %d vector, %d scalar; bf16 %d vector, %d scalar\n", rmsb_vec[0],
           rmsb_scalar[0], rmsb_vec[1], rmsb_scalar[1]);
    for (const emu_stats *st : {&convert_st, &normal_f32, &normal_bf16, &value_st, &copy_st, &gated_f32, &gated_bf16,
                                &gated_bwd_f32, &gated_bwd_bf16, &rmsb_f32, &rmsb_bf16, &dweight_st, &dbias_st,
                                &rope_f32, &rope_bf16, &emb_st})
        emu_stats_print(*st);
    return TEST_RESULT();
}
