// The elementwise, row and reduction kernels of model_kernels.h: dtype conversion, Philox normal fills, row
// gathers/scatters, the MLP activation over fused gate|up rows and its backward, the RMSNorm, bias and
// embedding backwards (the rotary backward is rope.cu's rotation by the opposite angle). Column sums (weight
// and bias gradients) go through fixed 64-row partial sums and one ordered pass over them, so they do not
// depend on scheduling (no float atomics anywhere).
// The kernels themselves are in model_kernels.cuh; this file holds their launchers.
#include "kernels/cuda/model_kernels.h"

#include "kernels/cuda/model_kernels.cuh"

#define ROW_THREADS 256   // threads per row in the row kernels
#define ROW_GRID_CAP 65535 // row blocks per grid dimension (grid-stride beyond)

// ----------------------------------------------------------------------------
// conversion and fills

extern "C" int cuda_convert(cuda_dtype ddt, void *dst, cuda_dtype sdt, const void *src, int64_t N,
                            cuda_stream stream) {
    CHECK_OR_FAIL(dtype_valid(ddt) && dtype_valid(sdt), "convert: unknown dtype (%d, %d)", (int)ddt, (int)sdt);
    CHECK_OR_FAIL(N >= 0, "convert: negative size %lld", (long long)N);
    if (N == 0 || (ddt == sdt && dst == src)) return 0;
    unsigned grid = grid_for(N, 256, 16384);
    if (ddt == CUDA_BF16 && sdt == CUDA_F32) convert_kernel<<<grid, 256, 0, stream>>>((bf16 *)dst, (const float *)src, N);
    else if (ddt == CUDA_F32 && sdt == CUDA_BF16) convert_kernel<<<grid, 256, 0, stream>>>((float *)dst, (const bf16 *)src, N);
    else if (ddt == CUDA_BF16) convert_kernel<<<grid, 256, 0, stream>>>((bf16 *)dst, (const bf16 *)src, N);
    else convert_kernel<<<grid, 256, 0, stream>>>((float *)dst, (const float *)src, N);
    CUDA_LAUNCHED("convert %s -> %s of %lld values", dtype_name(sdt), dtype_name(ddt), (long long)N);
    return 0;
}

extern "C" int cuda_fill_normal(cuda_dtype dt, void *out, int64_t N, float std, uint64_t seed, uint64_t stream_id,
                                cuda_stream stream) {
    CHECK_OR_FAIL(dtype_valid(dt) && N >= 0, "fill_normal: bad dtype %d or size %lld", (int)dt, (long long)N);
    if (N == 0) return 0;
    unsigned grid = grid_for(N, 256, 16384);
    if (dt == CUDA_BF16) fill_normal_kernel<<<grid, 256, 0, stream>>>((bf16 *)out, N, std, seed, stream_id);
    else fill_normal_kernel<<<grid, 256, 0, stream>>>((float *)out, N, std, seed, stream_id);
    CUDA_LAUNCHED("fill_normal of %lld values", (long long)N);
    return 0;
}

extern "C" int cuda_fill_value(cuda_dtype dt, void *out, int64_t N, float value, cuda_stream stream) {
    CHECK_OR_FAIL(dtype_valid(dt) && N >= 0, "fill_value: bad dtype %d or size %lld", (int)dt, (long long)N);
    if (N == 0) return 0;
    unsigned grid = grid_for(N, 256, 16384);
    if (dt == CUDA_BF16) fill_value_kernel<<<grid, 256, 0, stream>>>((bf16 *)out, N, value);
    else fill_value_kernel<<<grid, 256, 0, stream>>>((float *)out, N, value);
    CUDA_LAUNCHED("fill_value of %lld values", (long long)N);
    return 0;
}

// ----------------------------------------------------------------------------
// rows

extern "C" int cuda_copy_rows(cuda_dtype ddt, void *dst, int64_t ldd, const int *dst_rows, cuda_dtype sdt,
                              const void *src, int64_t lds, const int *src_rows, int n, int W, int accumulate,
                              cuda_stream stream) {
    CHECK_OR_FAIL(dtype_valid(ddt) && dtype_valid(sdt), "copy_rows: unknown dtype (%d, %d)", (int)ddt, (int)sdt);
    CHECK_OR_FAIL(n >= 0 && W >= 0 && ldd >= W && lds >= W, "copy_rows: bad shape n %d W %d ldd %lld lds %lld", n, W,
                  (long long)ldd, (long long)lds);
    if (n == 0 || W == 0) return 0;
    unsigned grid = (unsigned)(n < ROW_GRID_CAP ? n : ROW_GRID_CAP);
    int threads = W >= 256 ? 256 : (W + 31) / 32 * 32;
    if (ddt == CUDA_BF16 && sdt == CUDA_BF16)
        copy_rows_kernel<<<grid, threads, 0, stream>>>((bf16 *)dst, ldd, dst_rows, (const bf16 *)src, lds, src_rows, n,
                                                       W, accumulate);
    else if (ddt == CUDA_BF16)
        copy_rows_kernel<<<grid, threads, 0, stream>>>((bf16 *)dst, ldd, dst_rows, (const float *)src, lds, src_rows,
                                                       n, W, accumulate);
    else if (sdt == CUDA_BF16)
        copy_rows_kernel<<<grid, threads, 0, stream>>>((float *)dst, ldd, dst_rows, (const bf16 *)src, lds, src_rows,
                                                       n, W, accumulate);
    else
        copy_rows_kernel<<<grid, threads, 0, stream>>>((float *)dst, ldd, dst_rows, (const float *)src, lds, src_rows,
                                                       n, W, accumulate);
    CUDA_LAUNCHED("copy_rows of %d rows x %d", n, W);
    return 0;
}

// ----------------------------------------------------------------------------
// MLP activation over fused gate|up rows

static int gated_check(const char *what, cuda_dtype dt, int T, int I, act_kind act) {
    CHECK_OR_FAIL(dtype_valid(dt), "%s: unknown dtype %d", what, (int)dt);
    CHECK_OR_FAIL(T >= 0 && I >= 1, "%s: bad shape %d x %d", what, T, I);
    CHECK_OR_FAIL(act >= ACT_SILU && act <= ACT_QUICK_GELU, "%s: unknown activation %d", what, (int)act);
    return 0;
}

// The gated kernels' grid for W columns per thread.
static dim3 gated_grid(int T, int I, int W) {
    int per_block = GATED_THREADS * W;
    return dim3((unsigned)((I + per_block - 1) / per_block), (unsigned)(T < ROW_GRID_CAP ? T : ROW_GRID_CAP));
}

template <typename T>
static int gated_forward(T *out, const T *gu, int rows, int I, act_kind act, cudaStream_t stream) {
    constexpr int VW = VecWidth<T>::value;
    if (I % VW == 0 && aligned16(out) && aligned16(gu))
        gated_rows_kernel<T, VW><<<gated_grid(rows, I, VW), GATED_THREADS, 0, stream>>>(out, gu, rows, I, act);
    else gated_rows_kernel<T, 1><<<gated_grid(rows, I, 1), GATED_THREADS, 0, stream>>>(out, gu, rows, I, act);
    CUDA_LAUNCHED("gated_rows_forward %d x %d", rows, I);
    return 0;
}

template <typename T>
static int gated_backward(T *dgu, T *act_out, const T *dout, const T *gu, int rows, int I, act_kind act,
                          cudaStream_t stream) {
    constexpr int VW = VecWidth<T>::value;
    if (I % VW == 0 && aligned16(dgu) && aligned16(dout) && aligned16(gu) && (!act_out || aligned16(act_out)))
        gated_rows_backward_kernel<T, VW>
            <<<gated_grid(rows, I, VW), GATED_THREADS, 0, stream>>>(dgu, act_out, dout, gu, rows, I, act);
    else
        gated_rows_backward_kernel<T, 1>
            <<<gated_grid(rows, I, 1), GATED_THREADS, 0, stream>>>(dgu, act_out, dout, gu, rows, I, act);
    CUDA_LAUNCHED("gated_rows_backward %d x %d", rows, I);
    return 0;
}

extern "C" int cuda_gated_rows_forward(cuda_dtype dt, void *out, const void *gu, int T, int I, act_kind act,
                                       cuda_stream stream) {
    TRY(gated_check("gated_rows_forward", dt, T, I, act));
    if (T == 0) return 0;
    if (dt == CUDA_BF16) return gated_forward((bf16 *)out, (const bf16 *)gu, T, I, act, stream);
    return gated_forward((float *)out, (const float *)gu, T, I, act, stream);
}

extern "C" int cuda_gated_rows_backward(cuda_dtype dt, void *dgu, void *act_out, const void *dout, const void *gu,
                                        int T, int I, act_kind act, cuda_stream stream) {
    TRY(gated_check("gated_rows_backward", dt, T, I, act));
    if (T == 0) return 0;
    if (dt == CUDA_BF16)
        return gated_backward((bf16 *)dgu, (bf16 *)act_out, (const bf16 *)dout, (const bf16 *)gu, T, I, act, stream);
    return gated_backward((float *)dgu, (float *)act_out, (const float *)dout, (const float *)gu, T, I, act, stream);
}

// ----------------------------------------------------------------------------
// column sums (weight and bias gradients)

extern "C" size_t cuda_column_scratch_bytes(int T, int C) {
    int64_t chunks = T > 0 ? ((int64_t)T + COL_ROWS - 1) / COL_ROWS : 1;
    return sizeof(float) * (size_t)chunks * (size_t)(C > 0 ? C : 1);
}

// out (C) += column sums of a (times b * rowscale), through scratch.
template <typename T>
static int column_sums(float *out, const T *a, int64_t lda, const T *b, int64_t ldb, const float *rowscale, int rows,
                       int C, float *scratch, cudaStream_t stream) {
    int chunks = (rows + COL_ROWS - 1) / COL_ROWS;
    CHECK_OR_FAIL(chunks <= 65535, "column sums over %d rows: at most %d rows", rows, 65535 * COL_ROWS);
    dim3 grid((unsigned)((C + COL_THREADS - 1) / COL_THREADS), (unsigned)chunks);
    column_partial_kernel<T><<<grid, COL_THREADS, 0, stream>>>(scratch, a, lda, b, ldb, rowscale, rows, C);
    CUDA_LAUNCHED("column sums %d x %d: partials", rows, C);
    column_finish_kernel<<<(C + 255) / 256, 256, 0, stream>>>(out, scratch, chunks, C);
    CUDA_LAUNCHED("column sums %d x %d: total", rows, C);
    return 0;
}

extern "C" int cuda_bias_backward(float *dbias, cuda_dtype dt, const void *dout, int T, int N, int64_t ld,
                                  void *scratch, cuda_stream stream) {
    CHECK_OR_FAIL(dtype_valid(dt) && T >= 0 && N >= 1 && ld >= N, "bias_backward: bad dtype %d or shape %d x %d (ld %lld)",
                  (int)dt, T, N, (long long)ld);
    if (T == 0) return 0;
    if (dt == CUDA_BF16)
        return column_sums<bf16>(dbias, (const bf16 *)dout, ld, NULL, 0, NULL, T, N, (float *)scratch, stream);
    return column_sums<float>(dbias, (const float *)dout, ld, NULL, 0, NULL, T, N, (float *)scratch, stream);
}

// ----------------------------------------------------------------------------
// RMSNorm backward

template <typename T>
static int rmsnorm_backward_launch(void *dinp, float *dweight, const void *dout, const void *inp, const float *weight,
                                   const float *rstd, int T_, int C, void *scratch, cudaStream_t stream) {
    constexpr int VW = VecWidth<T>::value;
    bool vec = C % VW == 0 && aligned16(dinp) && aligned16(dout) && aligned16(inp) && aligned16(weight);
    unsigned grid = (unsigned)((T_ + 3) / 4);
    T *dx = (T *)dinp;
    const T *d = (const T *)dout, *x = (const T *)inp;
    const float *w = weight;
    if (vec) rmsnorm_backward_kernel<T, VW><<<grid, 128, 0, stream>>>(dx, d, x, w, rstd, T_, C);
    else rmsnorm_backward_kernel<T, 1><<<grid, 128, 0, stream>>>(dx, d, x, w, rstd, T_, C);
    CUDA_LAUNCHED("rmsnorm_backward %d x %d", T_, C);
    if (dweight) TRY(column_sums<T>(dweight, d, C, x, C, rstd, T_, C, (float *)scratch, stream));
    return 0;
}

extern "C" int cuda_rmsnorm_backward(cuda_dtype dt, void *dinp, float *dweight, const void *dout, const void *inp,
                                     const float *weight, const float *rstd, int T, int C, void *scratch,
                                     cuda_stream stream) {
    CHECK_OR_FAIL(dtype_valid(dt), "rmsnorm_backward: unknown dtype %d", (int)dt);
    CHECK_OR_FAIL(T >= 0 && C >= 1, "rmsnorm_backward: bad shape %d x %d", T, C);
    if (T == 0) return 0;
    if (dt == CUDA_BF16) return rmsnorm_backward_launch<bf16>(dinp, dweight, dout, inp, weight, rstd, T, C, scratch, stream);
    return rmsnorm_backward_launch<float>(dinp, dweight, dout, inp, weight, rstd, T, C, scratch, stream);
}

// ----------------------------------------------------------------------------
// embedding backward

extern "C" int cuda_embedding_backward(float *dtable, const int64_t *ids, const int *starts, const int *rows, int U,
                                       cuda_dtype dt, const void *dout, int C, cuda_stream stream) {
    CHECK_OR_FAIL(dtype_valid(dt) && U >= 0 && C >= 1, "embedding_backward: bad dtype %d or shape U %d C %d", (int)dt,
                  U, C);
    if (U == 0) return 0;
    unsigned grid = (unsigned)(U < ROW_GRID_CAP ? U : ROW_GRID_CAP);
    if (dt == CUDA_BF16)
        embedding_backward_kernel<<<grid, ROW_THREADS, 0, stream>>>(dtable, ids, starts, rows, U, (const bf16 *)dout, C);
    else
        embedding_backward_kernel<<<grid, ROW_THREADS, 0, stream>>>(dtable, ids, starts, rows, U, (const float *)dout, C);
    CUDA_LAUNCHED("embedding_backward U %d C %d", U, C);
    return 0;
}
