// C API of the elementwise kernels (elementwise.cuh): activations, embedding gathers.
#include "kernels/cuda/elementwise.cuh"

// ----------------------------------------------------------------------------
// maps

template <typename T, ElementOp OP>
static int map_launch(void *out, const void *a, const void *b, int64_t N, act_kind act, cudaStream_t stream) {
    constexpr int VW = VecWidth<T>::value;
    bool vec = aligned16(out) && aligned16(a) && (OP == OP_ACT || aligned16(b));
    unsigned grid = grid_for(vec ? N / VW + 1 : N, 256, 8192);
    if (vec) map_kernel<T, VW, OP><<<grid, 256, 0, stream>>>((T *)out, (const T *)a, (const T *)b, N, act);
    else map_kernel<T, 1, OP><<<grid, 256, 0, stream>>>((T *)out, (const T *)a, (const T *)b, N, act);
    return 0;
}

template <ElementOp OP>
static int map_any(const char *what, cuda_dtype dt, void *out, const void *a, const void *b, int64_t N, act_kind act,
                   cudaStream_t stream) {
    CHECK_OR_FAIL(dtype_valid(dt), "%s: unknown dtype %d", what, (int)dt);
    CHECK_OR_FAIL(N >= 0, "%s: negative size %lld", what, (long long)N);
    CHECK_OR_FAIL(act >= ACT_SILU && act <= ACT_QUICK_GELU, "%s: unknown activation %d", what, (int)act);
    if (N == 0) return 0;
    if (dt == CUDA_BF16) map_launch<bf16, OP>(out, a, b, N, act, stream);
    else map_launch<float, OP>(out, a, b, N, act, stream);
    CUDA_LAUNCHED("%s over %lld elements", what, (long long)N);
    return 0;
}

extern "C" int cuda_activation_forward(cuda_dtype dt, void *out, const void *inp, int64_t N, act_kind act,
                                       cuda_stream stream) {
    return map_any<OP_ACT>("activation_forward", dt, out, inp, NULL, N, act, stream);
}

extern "C" int cuda_gated_activation_forward(cuda_dtype dt, void *out, const void *gate, const void *up, int64_t N,
                                             act_kind act, cuda_stream stream) {
    return map_any<OP_GATED_ACT>("gated_activation_forward", dt, out, gate, up, N, act, stream);
}

// ----------------------------------------------------------------------------
// embedding

template <typename T>
static void embedding_launch(void *out, const int64_t *ids, const void *table, int T_, int C, cudaStream_t stream) {
    constexpr int VW = VecWidth<T>::value;
    if (C % VW == 0 && aligned16(out) && aligned16(table))
        embedding_kernel<T, VW><<<T_, 128, 0, stream>>>((T *)out, ids, (const T *)table, C);
    else
        embedding_kernel<T, 1><<<T_, 128, 0, stream>>>((T *)out, ids, (const T *)table, C);
}

extern "C" int cuda_embedding_forward(cuda_dtype dt, void *out, const int64_t *ids, const void *table, int T, int C,
                                      cuda_stream stream) {
    CHECK_OR_FAIL(dtype_valid(dt), "embedding_forward: unknown dtype %d", (int)dt);
    CHECK_OR_FAIL(T >= 0 && C >= 0, "embedding_forward: bad shape %d x %d", T, C);
    if (T == 0 || C == 0) return 0;
    if (dt == CUDA_BF16) embedding_launch<bf16>(out, ids, table, T, C, stream);
    else embedding_launch<float>(out, ids, table, T, C, stream);
    CUDA_LAUNCHED("embedding_forward %d x %d", T, C);
    return 0;
}
