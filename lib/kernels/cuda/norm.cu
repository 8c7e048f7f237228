// C API of the normalisation kernels (norm.cuh): dtype and vector-width dispatch.
#include "kernels/cuda/norm.cuh"

// ----------------------------------------------------------------------------
// RMSNorm

// rmsnorm_row_kernel with K vectors of W per thread (norm_row_vectors).
template <typename T, int W>
static void rmsnorm_rows(int K, T *out, float *rstd, const T *inp, const float *weight, int rows, int C, float eps,
                         cudaStream_t stream) {
    dim3 grid((unsigned)rows), block((unsigned)norm_row_threads(C, W, K));
    if (K == 1) rmsnorm_row_kernel<T, W, 1><<<grid, block, 0, stream>>>(out, rstd, inp, weight, C, eps);
    else if (K == 2) rmsnorm_row_kernel<T, W, 2><<<grid, block, 0, stream>>>(out, rstd, inp, weight, C, eps);
    else rmsnorm_row_kernel<T, W, 4><<<grid, block, 0, stream>>>(out, rstd, inp, weight, C, eps);
}

template <typename T>
static int rmsnorm_launch(void *out, float *rstd, const void *inp, const float *weight, int T_, int C, float eps,
                          cudaStream_t stream) {
    constexpr int VW = VecWidth<T>::value;
    bool vec = C % VW == 0 && aligned16(out) && aligned16(inp) && aligned16(weight);
    unsigned grid = (unsigned)((T_ + NORM_ROWS_PER_BLOCK - 1) / NORM_ROWS_PER_BLOCK);
    dim3 block(32 * NORM_ROWS_PER_BLOCK);
    T *o = (T *)out;
    const T *x = (const T *)inp;
    int K = norm_row_vectors(T_, C, vec ? VW : 1);
    if (K > 0 && vec) rmsnorm_rows<T, VW>(K, o, rstd, x, weight, T_, C, eps, stream);
    else if (K > 0) rmsnorm_rows<T, 1>(K, o, rstd, x, weight, T_, C, eps, stream);
    else if (vec) rmsnorm_kernel<T, VW><<<grid, block, 0, stream>>>(o, rstd, x, weight, T_, C, eps);
    else rmsnorm_kernel<T, 1><<<grid, block, 0, stream>>>(o, rstd, x, weight, T_, C, eps);
    CUDA_LAUNCHED("rmsnorm_forward %d x %d", T_, C);
    return 0;
}

extern "C" int cuda_rmsnorm_forward(cuda_dtype dt, void *out, float *rstd, const void *inp, const float *weight, int T,
                                    int C, float eps, cuda_stream stream) {
    CHECK_OR_FAIL(dtype_valid(dt), "rmsnorm_forward: unknown dtype %d", (int)dt);
    CHECK_OR_FAIL(T >= 0 && C >= 1, "rmsnorm_forward: bad shape %d x %d", T, C);
    if (T == 0) return 0;
    if (dt == CUDA_BF16) return rmsnorm_launch<bf16>(out, rstd, inp, weight, T, C, eps, stream);
    return rmsnorm_launch<float>(out, rstd, inp, weight, T, C, eps, stream);
}

// ----------------------------------------------------------------------------
// LayerNorm

template <typename T>
static int layernorm_launch(void *out, float *mean, float *rstd, const void *inp, const float *weight,
                            const float *bias, int T_, int C, float eps, cudaStream_t stream) {
    constexpr int VW = VecWidth<T>::value;
    bool vec = C % VW == 0 && aligned16(out) && aligned16(inp) && aligned16(weight) && aligned16(bias);
    unsigned grid = (unsigned)((T_ + NORM_ROWS_PER_BLOCK - 1) / NORM_ROWS_PER_BLOCK);
    dim3 block(32 * NORM_ROWS_PER_BLOCK);
    T *o = (T *)out;
    const T *x = (const T *)inp;
    const float *w = weight, *b = bias;
    if (vec) layernorm_kernel<T, VW><<<grid, block, 0, stream>>>(o, mean, rstd, x, w, b, T_, C, eps);
    else layernorm_kernel<T, 1><<<grid, block, 0, stream>>>(o, mean, rstd, x, w, b, T_, C, eps);
    CUDA_LAUNCHED("layernorm_forward %d x %d", T_, C);
    return 0;
}

extern "C" int cuda_layernorm_forward(cuda_dtype dt, void *out, float *mean, float *rstd, const void *inp,
                                      const float *weight, const float *bias, int T, int C, float eps,
                                      cuda_stream stream) {
    CHECK_OR_FAIL(dtype_valid(dt), "layernorm_forward: unknown dtype %d", (int)dt);
    CHECK_OR_FAIL(T >= 0 && C >= 1, "layernorm_forward: bad shape %d x %d", T, C);
    if (T == 0) return 0;
    if (dt == CUDA_BF16) return layernorm_launch<bf16>(out, mean, rstd, inp, weight, bias, T, C, eps, stream);
    return layernorm_launch<float>(out, mean, rstd, inp, weight, bias, T, C, eps, stream);
}
