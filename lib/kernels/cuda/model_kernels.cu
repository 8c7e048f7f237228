// The elementwise, row and reduction kernels of model_kernels.h: dtype conversion, Philox normal fills, row
// gathers/scatters, the MLP activation over fused gate|up rows and its backward, the RMSNorm, bias, rotary
// and embedding backwards. Column sums (weight and bias gradients) go through fixed 64-row partial sums and
// one ordered pass over them, so they do not depend on scheduling (no float atomics anywhere).
#include "kernels/cuda/model_kernels.h"

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/elementwise.cuh"
#include "kernels/cuda/philox.cuh"

#define COL_ROWS 64       // rows per partial column sum
#define COL_THREADS 256   // columns per block of the partial sums
#define ROW_THREADS 256   // threads per row in the row kernels
#define ROW_GRID_CAP 65535

// ----------------------------------------------------------------------------
// conversion and fills

template <typename TD, typename TS> __global__ void convert_kernel(TD *dst, const TS *src, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = from_f32<TD>(to_f32(src[i]));
}

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

// Element i: Box-Muller on words 0 and 1 of the Philox block (index i / 2, stream), cos for even i, sin for odd.
template <typename T> __global__ void fill_normal_kernel(T *out, int64_t n, float std, uint64_t seed, uint64_t stream) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        uint64_t pair = (uint64_t)i / 2;
        uint32_t c[4] = {(uint32_t)pair, (uint32_t)(pair >> 32), (uint32_t)stream, (uint32_t)(stream >> 32)};
        philox4x32_10(c, (uint32_t)seed, (uint32_t)(seed >> 32));
        float u1 = ((float)(c[0] >> 8) + 1.0f) * (1.0f / 16777216.0f), u2 = (float)(c[1] >> 8) * (1.0f / 16777216.0f);
        float rad = sqrtf(-2.0f * logf(u1)), a = 6.2831853071795865f * u2;
        out[i] = from_f32<T>(std * rad * ((i & 1) ? sinf(a) : cosf(a)));
    }
}

template <typename T> __global__ void fill_value_kernel(T *out, int64_t n, float value) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = from_f32<T>(value);
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

// One block per row (grid-stride over rows), threads over the W columns.
template <typename TD, typename TS>
__global__ void copy_rows_kernel(TD *dst, int64_t ldd, const int *dst_rows, const TS *src, int64_t lds,
                                 const int *src_rows, int n, int W, int accumulate) {
    for (int i = blockIdx.x; i < n; i += gridDim.x) {
        TD *d = dst + (int64_t)(dst_rows ? dst_rows[i] : i) * ldd;
        const TS *s = src + (int64_t)(src_rows ? src_rows[i] : i) * lds;
        for (int c = threadIdx.x; c < W; c += blockDim.x) {
            float x = to_f32(s[c]);
            if (accumulate) x += to_f32(d[c]);
            d[c] = from_f32<TD>(x);
        }
    }
}

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

// d act(x) / dx, as act_grad_one in kernels/cpu/activation.c.
__device__ __forceinline__ float act_grad_apply(float x, act_kind act) {
    switch (act) {
    case ACT_SILU: {
        float s = 1.0f / (1.0f + expf(-x));
        return s * (1.0f + x * (1.0f - s));
    }
    case ACT_GELU:
        return 0.5f * (1.0f + erff(x * 0.70710678118654752f)) + x * 0.39894228040143268f * expf(-0.5f * x * x);
    case ACT_GELU_TANH: {
        const float k = 0.7978845608028654f;
        float th = tanhf(k * (x + 0.044715f * x * x * x));
        return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * k * (1.0f + 3.0f * 0.044715f * x * x);
    }
    case ACT_QUICK_GELU: {
        float s = 1.0f / (1.0f + expf(-1.702f * x));
        return s * (1.0f + 1.702f * x * (1.0f - s));
    }
    }
    return 1.0f;
}

// One block per row (grid-stride), threads over the I columns.
template <typename T> __global__ void gated_rows_kernel(T *out, const T *gu, int rows, int I, act_kind act) {
    for (int t = blockIdx.x; t < rows; t += gridDim.x) {
        const T *g = gu + (int64_t)t * 2 * I, *u = g + I;
        T *o = out + (int64_t)t * I;
        for (int i = threadIdx.x; i < I; i += blockDim.x) o[i] = from_f32<T>(act_apply(to_f32(g[i]), act) * to_f32(u[i]));
    }
}

template <typename T>
__global__ void gated_rows_backward_kernel(T *dgu, const T *dout, const T *gu, int rows, int I, act_kind act) {
    for (int t = blockIdx.x; t < rows; t += gridDim.x) {
        const T *g = gu + (int64_t)t * 2 * I, *u = g + I, *d = dout + (int64_t)t * I;
        T *dg = dgu + (int64_t)t * 2 * I, *du = dg + I;
        for (int i = threadIdx.x; i < I; i += blockDim.x) {
            float x = to_f32(g[i]), y = to_f32(u[i]), dy = to_f32(d[i]);
            dg[i] = from_f32<T>(act_grad_apply(x, act) * y * dy);
            du[i] = from_f32<T>(act_apply(x, act) * dy);
        }
    }
}

static int gated_check(const char *what, cuda_dtype dt, int T, int I, act_kind act) {
    CHECK_OR_FAIL(dtype_valid(dt), "%s: unknown dtype %d", what, (int)dt);
    CHECK_OR_FAIL(T >= 0 && I >= 1, "%s: bad shape %d x %d", what, T, I);
    CHECK_OR_FAIL(act >= ACT_SILU && act <= ACT_QUICK_GELU, "%s: unknown activation %d", what, (int)act);
    return 0;
}

extern "C" int cuda_gated_rows_forward(cuda_dtype dt, void *out, const void *gu, int T, int I, act_kind act,
                                       cuda_stream stream) {
    TRY(gated_check("gated_rows_forward", dt, T, I, act));
    if (T == 0) return 0;
    unsigned grid = (unsigned)(T < ROW_GRID_CAP ? T : ROW_GRID_CAP);
    if (dt == CUDA_BF16) gated_rows_kernel<<<grid, ROW_THREADS, 0, stream>>>((bf16 *)out, (const bf16 *)gu, T, I, act);
    else gated_rows_kernel<<<grid, ROW_THREADS, 0, stream>>>((float *)out, (const float *)gu, T, I, act);
    CUDA_LAUNCHED("gated_rows_forward %d x %d", T, I);
    return 0;
}

extern "C" int cuda_gated_rows_backward(cuda_dtype dt, void *dgu, const void *dout, const void *gu, int T, int I,
                                        act_kind act, cuda_stream stream) {
    TRY(gated_check("gated_rows_backward", dt, T, I, act));
    if (T == 0) return 0;
    unsigned grid = (unsigned)(T < ROW_GRID_CAP ? T : ROW_GRID_CAP);
    if (dt == CUDA_BF16)
        gated_rows_backward_kernel<<<grid, ROW_THREADS, 0, stream>>>((bf16 *)dgu, (const bf16 *)dout, (const bf16 *)gu, T,
                                                                     I, act);
    else
        gated_rows_backward_kernel<<<grid, ROW_THREADS, 0, stream>>>((float *)dgu, (const float *)dout,
                                                                     (const float *)gu, T, I, act);
    CUDA_LAUNCHED("gated_rows_backward %d x %d", T, I);
    return 0;
}

// ----------------------------------------------------------------------------
// column sums (weight and bias gradients)

// grid (ceil(C / COL_THREADS), chunks): partial[chunk][c] = sum over the chunk's COL_ROWS rows t of a[t, c],
// times b[t, c] * rowscale[t] when b is given.
template <typename T>
__global__ void __launch_bounds__(COL_THREADS)
    column_partial_kernel(float *partial, const T *a, int64_t lda, const T *b, int64_t ldb, const float *rowscale,
                          int rows, int C) {
    int c = blockIdx.x * COL_THREADS + threadIdx.x, chunk = blockIdx.y;
    if (c >= C) return;
    int t0 = chunk * COL_ROWS, t1 = min(rows, t0 + COL_ROWS);
    float s = 0.0f;
    for (int t = t0; t < t1; t++) {
        float v = to_f32(a[(int64_t)t * lda + c]);
        if (b) v *= to_f32(b[(int64_t)t * ldb + c]) * rowscale[t];
        s += v;
    }
    partial[(int64_t)chunk * C + c] = s;
}

// out[c] += sum over the chunks, in order, of partial[chunk][c].
__global__ void column_finish_kernel(float *out, const float *partial, int chunks, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float s = 0.0f;
    for (int k = 0; k < chunks; k++) s += partial[(int64_t)k * C + c];
    out[c] += s;
}

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

// One warp per row: dx += r * (w * dy) - x * r^3 / C * sum(w * dy * x), the sum in double (as the CPU).
template <typename T, int W>
__global__ void __launch_bounds__(128)
    rmsnorm_backward_kernel(T *dinp, const T *dout, const T *inp, const float *weight, const float *rstd, int rows,
                            int C) {
    int row = blockIdx.x * 4 + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    const T *x = inp + (int64_t)row * C, *d = dout + (int64_t)row * C;
    T *dx = dinp + (int64_t)row * C;
    double s = 0;
    for (int i = lane * W; i < C; i += 32 * W) {
        float u[W], g[W], w[W];
        load_f32<T, W>(u, x + i);
        load_f32<T, W>(g, d + i);
        load_fp32<W>(w, weight + i);
#pragma unroll
        for (int k = 0; k < W; k++) s += (double)g[k] * w[k] * u[k];
    }
    s = warp_sum_f64(s);
    float r = rstd[row], kk = (float)(s * r * r * r / C);
    for (int i = lane * W; i < C; i += 32 * W) {
        float u[W], g[W], w[W], o[W];
        load_f32<T, W>(u, x + i);
        load_f32<T, W>(g, d + i);
        load_fp32<W>(w, weight + i);
        load_f32<T, W>(o, dx + i);
#pragma unroll
        for (int k = 0; k < W; k++) o[k] += r * (w[k] * g[k]) - kk * u[k];
        store_f32<T, W>(dx + i, o);
    }
}

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
// rotary backward

// (g[i], g[i + D/2]) <- (a c + b s, b c - a s): the rotation by the opposite angle, one thread per pair.
template <typename T>
__global__ void rope_backward_kernel(T *x, const float *cos_t, const float *sin_t, int rows, int NH, int D, int64_t ld) {
    int half = D / 2;
    int64_t n = (int64_t)rows * NH * half;
    for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < n; idx += (int64_t)gridDim.x * blockDim.x) {
        int i = (int)(idx % half);
        int64_t th = idx / half;
        int h = (int)(th % NH);
        int64_t t = th / NH;
        T *v = x + t * ld + (int64_t)h * D;
        float c = cos_t[t * half + i], s = sin_t[t * half + i];
        float a = to_f32(v[i]), b = to_f32(v[i + half]);
        v[i] = from_f32<T>(a * c + b * s);
        v[i + half] = from_f32<T>(b * c - a * s);
    }
}

extern "C" int cuda_rope_backward(cuda_dtype dt, void *dx, const float *cos, const float *sin, int T, int NH, int D,
                                  int64_t ld, cuda_stream stream) {
    CHECK_OR_FAIL(dtype_valid(dt), "rope_backward: unknown dtype %d", (int)dt);
    CHECK_OR_FAIL(T >= 0 && NH >= 0 && D >= 2 && D % 2 == 0 && ld >= (int64_t)NH * D,
                  "rope_backward: bad shape T %d NH %d D %d ld %lld", T, NH, D, (long long)ld);
    int64_t n = (int64_t)T * NH * (D / 2);
    if (n == 0) return 0;
    unsigned grid = grid_for(n, 256, 8192);
    if (dt == CUDA_BF16) rope_backward_kernel<bf16><<<grid, 256, 0, stream>>>((bf16 *)dx, cos, sin, T, NH, D, ld);
    else rope_backward_kernel<float><<<grid, 256, 0, stream>>>((float *)dx, cos, sin, T, NH, D, ld);
    CUDA_LAUNCHED("rope_backward T %d NH %d D %d", T, NH, D);
    return 0;
}

// ----------------------------------------------------------------------------
// embedding backward

// One block per distinct id (grid-stride), threads over the C columns; each column sums its rows in order.
template <typename T>
__global__ void embedding_backward_kernel(float *dtable, const int64_t *ids, const int *starts, const int *rows, int U,
                                          const T *dout, int C) {
    for (int u = blockIdx.x; u < U; u += gridDim.x) {
        float *d = dtable + ids[u] * (int64_t)C;
        int r0 = starts[u], r1 = starts[u + 1];
        for (int c = threadIdx.x; c < C; c += blockDim.x) {
            float s = 0.0f;
            for (int r = r0; r < r1; r++) s += to_f32(dout[(int64_t)rows[r] * C + c]);
            d[c] += s;
        }
    }
}

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
