// C API of the rotary-embedding kernels (rope.cuh): the tables, the rotation forward and backward, and the
// rotation with KV-cache writes; the rotations run VecWidth<T> pairs per thread where rope_vectors_fit allows,
// else one.
#include "kernels/cuda/model_kernels.h"
#include "kernels/cuda/rope.cuh"

// ----------------------------------------------------------------------------
// tables

extern "C" int cuda_mrope_cos_sin_forward(float *cos, float *sin, const int64_t *pos, int64_t ld, int T, int D,
                                          float theta, const int section[3], cuda_stream stream) {
    CHECK_OR_FAIL(T >= 0 && D >= 2 && D % 2 == 0 && ld >= T, "mrope_cos_sin_forward: bad shape T %d D %d ld %lld", T,
                  D, (long long)ld);
    if (T == 0) return 0;
    int64_t n = (int64_t)T * (D / 2);
    mrope_table_kernel<<<grid_for(n, 256, 8192), 256, 0, stream>>>(cos, sin, pos, ld, T, D, theta, section[0],
                                                                    section[1]);
    CUDA_LAUNCHED("mrope_cos_sin_forward T %d D %d", T, D);
    return 0;
}

extern "C" int cuda_vision_rope_cos_sin_forward(float *cos, float *sin, const int32_t *hpos, const int32_t *wpos,
                                                int T, int D, cuda_stream stream) {
    CHECK_OR_FAIL(T >= 0 && D >= 4 && D % 4 == 0, "vision_rope_cos_sin_forward: bad shape T %d D %d", T, D);
    if (T == 0) return 0;
    int64_t n = (int64_t)T * (D / 2);
    vision_rope_table_kernel<<<grid_for(n, 256, 8192), 256, 0, stream>>>(cos, sin, hpos, wpos, T, D);
    CUDA_LAUNCHED("vision_rope_cos_sin_forward T %d D %d", T, D);
    return 0;
}

// ----------------------------------------------------------------------------
// rotations

// rope_kernel over T_ rows (sin_sign 1: forward, -1: backward) with W = VecWidth<T> pairs per thread or one.
template <typename T>
static void rope_run(T *x, const float *cos, const float *sin, float sin_sign, int T_, int NH, int D, int64_t ld,
                     cudaStream_t stream) {
    constexpr int VW = VecWidth<T>::value;
    bool vec = rope_vectors_fit<T>(D, {ld}, {x, cos, sin});
    unsigned grid = grid_for((int64_t)T_ * NH * (D / 2 / (vec ? VW : 1)), 256, 8192);
    if (vec) rope_kernel<T, VW><<<grid, 256, 0, stream>>>(x, cos, sin, sin_sign, T_, NH, D, ld);
    else rope_kernel<T, 1><<<grid, 256, 0, stream>>>(x, cos, sin, sin_sign, T_, NH, D, ld);
}

// rope_kernel over T rows (sin_sign 1: forward, -1: backward); `what` names the call in messages.
static int rope_launch(const char *what, cuda_dtype dt, void *x, const float *cos, const float *sin, float sin_sign,
                       int T, int NH, int D, int64_t ld, cuda_stream stream) {
    CHECK_OR_FAIL(dtype_valid(dt), "%s: unknown dtype %d", what, (int)dt);
    CHECK_OR_FAIL(T >= 0 && NH >= 0 && D >= 2 && D % 2 == 0 && ld >= (int64_t)NH * D,
                  "%s: bad shape T %d NH %d D %d ld %lld", what, T, NH, D, (long long)ld);
    if ((int64_t)T * NH == 0) return 0;
    if (dt == CUDA_BF16) rope_run<bf16>((bf16 *)x, cos, sin, sin_sign, T, NH, D, ld, stream);
    else rope_run<float>((float *)x, cos, sin, sin_sign, T, NH, D, ld, stream);
    CUDA_LAUNCHED("%s T %d NH %d D %d", what, T, NH, D);
    return 0;
}

extern "C" int cuda_rope_forward(cuda_dtype dt, void *x, const float *cos, const float *sin, int T, int NH, int D,
                                 int64_t ld, cuda_stream stream) {
    return rope_launch("rope_forward", dt, x, cos, sin, 1.0f, T, NH, D, ld, stream);
}

extern "C" int cuda_rope_backward(cuda_dtype dt, void *dx, const float *cos, const float *sin, int T, int NH, int D,
                                  int64_t ld, cuda_stream stream) {
    return rope_launch("rope_backward", dt, dx, cos, sin, -1.0f, T, NH, D, ld, stream);
}

// rope_cache_kernel over T_ rows with W = VecWidth<T> pairs and values per thread or one.
template <typename T>
static void rope_cache_run(T *qkv, const float *cos, const float *sin, int T_, int H, int KV, int D, int64_t ld,
                           T *cache_k, T *cache_v, const int *cache_rows, int64_t ldc, cudaStream_t stream) {
    constexpr int VW = VecWidth<T>::value;
    bool vec = rope_vectors_fit<T>(D, {ld, ldc}, {qkv, cos, sin, cache_k, cache_v});
    int W = vec ? VW : 1;
    unsigned grid = grid_for((int64_t)T_ * (H + KV) * (D / 2 / W) + (int64_t)T_ * KV * D / W, 256, 8192);
    if (vec)
        rope_cache_kernel<T, VW><<<grid, 256, 0, stream>>>(qkv, cos, sin, T_, H, KV, D, ld, cache_k, cache_v,
                                                           cache_rows, ldc);
    else
        rope_cache_kernel<T, 1><<<grid, 256, 0, stream>>>(qkv, cos, sin, T_, H, KV, D, ld, cache_k, cache_v,
                                                          cache_rows, ldc);
}

extern "C" int cuda_rope_cache_forward(cuda_dtype dt, void *qkv, const float *cos, const float *sin, int T, int H,
                                       int KV, int D, int64_t ld, void *cache_k, void *cache_v, const int *cache_rows,
                                       int64_t ldc, cuda_stream stream) {
    CHECK_OR_FAIL(dtype_valid(dt), "rope_cache_forward: unknown dtype %d", (int)dt);
    CHECK_OR_FAIL(T >= 0 && H >= 0 && KV >= 0 && D >= 2 && D % 2 == 0 && ld >= (int64_t)(H + 2 * KV) * D &&
                      ldc >= (int64_t)KV * D,
                  "rope_cache_forward: bad shape T %d H %d KV %d D %d ld %lld ldc %lld", T, H, KV, D, (long long)ld,
                  (long long)ldc);
    if ((int64_t)T * (H + KV) == 0) return 0;
    if (dt == CUDA_BF16)
        rope_cache_run<bf16>((bf16 *)qkv, cos, sin, T, H, KV, D, ld, (bf16 *)cache_k, (bf16 *)cache_v, cache_rows,
                             ldc, stream);
    else
        rope_cache_run<float>((float *)qkv, cos, sin, T, H, KV, D, ld, (float *)cache_k, (float *)cache_v,
                              cache_rows, ldc, stream);
    CUDA_LAUNCHED("rope_cache_forward T %d H %d KV %d D %d", T, H, KV, D);
    return 0;
}
