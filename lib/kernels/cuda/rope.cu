// C API of the rotary-embedding kernels (rope.cuh): the tables, the rotation forward and backward, and the
// rotation with KV-cache writes.
#include "kernels/cuda/model_kernels.h"
#include "kernels/cuda/rope.cuh"

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

// rope_kernel over T rows (sin_sign 1: forward, -1: backward); `what` names the call in messages.
static int rope_launch(const char *what, cuda_dtype dt, void *x, const float *cos, const float *sin, float sin_sign,
                       int T, int NH, int D, int64_t ld, cuda_stream stream) {
    CHECK_OR_FAIL(dtype_valid(dt), "%s: unknown dtype %d", what, (int)dt);
    CHECK_OR_FAIL(T >= 0 && NH >= 0 && D >= 2 && D % 2 == 0 && ld >= (int64_t)NH * D,
                  "%s: bad shape T %d NH %d D %d ld %lld", what, T, NH, D, (long long)ld);
    int64_t n = (int64_t)T * NH * (D / 2);
    if (n == 0) return 0;
    unsigned grid = grid_for(n, 256, 8192);
    if (dt == CUDA_BF16) rope_kernel<bf16><<<grid, 256, 0, stream>>>((bf16 *)x, cos, sin, sin_sign, T, NH, D, ld);
    else rope_kernel<float><<<grid, 256, 0, stream>>>((float *)x, cos, sin, sin_sign, T, NH, D, ld);
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

extern "C" int cuda_rope_cache_forward(cuda_dtype dt, void *qkv, const float *cos, const float *sin, int T, int H,
                                       int KV, int D, int64_t ld, void *cache_k, void *cache_v, const int *cache_rows,
                                       int64_t ldc, cuda_stream stream) {
    CHECK_OR_FAIL(dtype_valid(dt), "rope_cache_forward: unknown dtype %d", (int)dt);
    CHECK_OR_FAIL(T >= 0 && H >= 0 && KV >= 0 && D >= 2 && D % 2 == 0 && ld >= (int64_t)(H + 2 * KV) * D &&
                      ldc >= (int64_t)KV * D,
                  "rope_cache_forward: bad shape T %d H %d KV %d D %d ld %lld ldc %lld", T, H, KV, D, (long long)ld,
                  (long long)ldc);
    int64_t n = (int64_t)T * (H + KV) * (D / 2) + (int64_t)T * KV * D;
    if (n == 0) return 0;
    unsigned grid = grid_for(n, 256, 8192);
    if (dt == CUDA_BF16)
        rope_cache_kernel<bf16><<<grid, 256, 0, stream>>>((bf16 *)qkv, cos, sin, T, H, KV, D, ld, (bf16 *)cache_k,
                                                          (bf16 *)cache_v, cache_rows, ldc);
    else
        rope_cache_kernel<float><<<grid, 256, 0, stream>>>((float *)qkv, cos, sin, T, H, KV, D, ld, (float *)cache_k,
                                                           (float *)cache_v, cache_rows, ldc);
    CUDA_LAUNCHED("rope_cache_forward T %d H %d KV %d D %d", T, H, KV, D);
    return 0;
}
