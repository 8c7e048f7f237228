// Matmuls on the GPU: the row-major GEMM over cuBLASLt (matmul.cuh) and the C API's cuda_matmul_forward
// (nn.Linear) and cuda_gemm. cuBLAS is column-major, so a row-major c (M, N) is computed as its transpose:
// c^T (N, M) = op(b)^T (N, K) @ op(a)^T (K, M), which swaps the operands and keeps every matrix in place.
#include "kernels/cuda/matmul.cuh"

#include <string.h>

// ----------------------------------------------------------------------------
// small kernels: bias rows and the K = 0 case

// c (M, N) row stride ldc: c = beta * c + bias (beta = 0 writes without reading c).
template <typename T>
__global__ void scale_add_bias_kernel(T *c, int64_t ldc, const T *bias, int M, int N, float beta) {
    int64_t total = (int64_t)M * N;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / N, j = i % N;
        T *p = c + r * ldc + j;
        float x = beta == 0.0f ? 0.0f : beta * to_f32(*p);
        if (bias) x += to_f32(bias[j]);
        *p = from_f32<T>(x);
    }
}

static int scale_add_bias(cuda_dtype c_dt, void *c, int64_t ldc, const void *bias, int M, int N, float beta,
                          cudaStream_t stream) {
    unsigned grid = grid_for((int64_t)M * N, 256, 4096);
    if (c_dt == CUDA_BF16)
        scale_add_bias_kernel<bf16><<<grid, 256, 0, stream>>>((bf16 *)c, ldc, (const bf16 *)bias, M, N, beta);
    else
        scale_add_bias_kernel<float><<<grid, 256, 0, stream>>>((float *)c, ldc, (const float *)bias, M, N, beta);
    CUDA_LAUNCHED("gemm bias (%d x %d)", M, N);
    return 0;
}

// ----------------------------------------------------------------------------
// cuBLASLt

static cudaDataType_t cuda_type(cuda_dtype dt) { return dt == CUDA_BF16 ? CUDA_R_16BF : CUDA_R_32F; }

// The largest power of two (up to 256) that divides the address: cuBLASLt's heuristics assume 256 unless told.
static uint32_t ptr_alignment(const void *p) {
    uintptr_t x = (uintptr_t)p;
    uint32_t a = 256;
    while (a > 1 && (x % a) != 0) a >>= 1;
    return a;
}

// The descriptors of one cuBLASLt call, destroyed on every path out.
struct LtCall {
    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    ~LtCall() {
        if (pref) cublasLtMatmulPreferenceDestroy(pref);
        if (lc) cublasLtMatrixLayoutDestroy(lc);
        if (lb) cublasLtMatrixLayoutDestroy(lb);
        if (la) cublasLtMatrixLayoutDestroy(la);
        if (op) cublasLtMatmulDescDestroy(op);
    }
};

// The cached heuristic answer for key, or NULL.
static cuda_gemm_cache_entry *gemm_cache_find(cuda_ctx *ctx, const cuda_gemm_key &key) {
    for (int i = 0; i < CUDA_GEMM_CACHE; i++)
        if (ctx->gemm_cache[i].used && memcmp(&ctx->gemm_cache[i].key, &key, sizeof key) == 0) return &ctx->gemm_cache[i];
    return NULL;
}

// Sets algo to split K `splits` ways, its partial sums reduced in fp32 (else in the output type, else in place),
// and checks that cuBLASLt runs it on this device within the context's workspace.
static int split_k(cuda_ctx *ctx, const LtCall *L, cublasLtMatmulAlgo_t *algo, int splits) {
    int32_t support = 0;
    uint32_t mask = 0;
    size_t written = 0;
    CUBLAS_TRY(cublasLtMatmulAlgoCapGetAttribute(algo, CUBLASLT_ALGO_CAP_SPLITK_SUPPORT, &support, sizeof support,
                                                 &written),
               "split-K capability");
    CUBLAS_TRY(cublasLtMatmulAlgoCapGetAttribute(algo, CUBLASLT_ALGO_CAP_REDUCTION_SCHEME_MASK, &mask, sizeof mask,
                                                 &written),
               "reduction schemes");
    CHECK_OR_FAIL(support != 0, "the chosen cuBLASLt algorithm cannot split K");
    const uint32_t schemes[] = {CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE, CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE,
                                CUBLASLT_REDUCTION_SCHEME_INPLACE};
    uint32_t scheme = CUBLASLT_REDUCTION_SCHEME_NONE;
    for (uint32_t sc : schemes)
        if ((mask & sc) == sc) {
            scheme = sc;
            break;
        }
    CHECK_OR_FAIL(scheme != CUBLASLT_REDUCTION_SCHEME_NONE, "the chosen cuBLASLt algorithm has no reduction scheme "
                  "for split K (mask %#x)", mask);
    int32_t n = splits;
    CUBLAS_TRY(cublasLtMatmulAlgoConfigSetAttribute(algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &n, sizeof n), "split K");
    CUBLAS_TRY(cublasLtMatmulAlgoConfigSetAttribute(algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &scheme,
                                                    sizeof scheme),
               "reduction scheme");
    cublasLtMatmulHeuristicResult_t check;
    CUBLAS_TRY(cublasLtMatmulAlgoCheck(ctx->lt, L->op, L->la, L->lb, L->lc, L->lc, algo, &check),
               "cuBLASLt check of %d K splits", splits);
    CHECK_OR_FAIL(check.workspaceSize <= CUDA_GEMM_WORKSPACE_BYTES, "%d K splits need %zu bytes of workspace (the "
                  "context has %u)", splits, check.workspaceSize, CUDA_GEMM_WORKSPACE_BYTES);
    return 0;
}

// Column-major D (m, n) = alpha * opA(A) (m, k) @ opB(B) (k, n) + beta * Cin (+ bias (m)) through cuBLASLt (Cin
// has D's layout; it may be D).
// Sets *found = false (and returns 0) when the heuristic offers no algorithm. Heuristic answers are cached
// in the context (the query costs more host time than a small GEMM takes on the device).
static int lt_matmul(cuda_ctx *ctx, cudaDataType_t ab, cudaDataType_t cd, cublasOperation_t opa,
                     cublasOperation_t opb, int m, int n, int k, float alpha, const void *A, int64_t lda,
                     const void *B, int64_t ldb, float beta, const void *Cin, void *C, int64_t ldc, const void *bias,
                     cudaStream_t stream, bool *found) {
    LtCall L;
    *found = false;
    cuda_gemm_key key;
    memset(&key, 0, sizeof key); // padding bytes take part in the comparison
    key.ab = ab, key.cd = cd, key.opa = opa, key.opb = opb, key.m = m, key.n = n, key.k = k, key.bias = bias != NULL;
    key.lda = lda, key.ldb = ldb, key.ldc = ldc;
    uint32_t align_cin = ptr_alignment(Cin), align_d = ptr_alignment(C);
    key.align_a = ptr_alignment(A), key.align_b = ptr_alignment(B);
    key.align_c = align_cin < align_d ? align_cin : align_d;
    key.align_bias = bias ? ptr_alignment(bias) : 0;
    cuda_gemm_cache_entry *hit = gemm_cache_find(ctx, key);
    if (hit && !hit->found) return 0;

    CUBLAS_TRY(cublasLtMatmulDescCreate(&L.op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cuBLASLt matmul descriptor");
    int32_t ta = opa, tb = opb;
    CUBLAS_TRY(cublasLtMatmulDescSetAttribute(L.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), "TRANSA");
    CUBLAS_TRY(cublasLtMatmulDescSetAttribute(L.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), "TRANSB");
    if (bias) {
        uint32_t epi = CUBLASLT_EPILOGUE_BIAS;
        int32_t bt = cd;
        CUBLAS_TRY(cublasLtMatmulDescSetAttribute(L.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi), "epilogue");
        CUBLAS_TRY(cublasLtMatmulDescSetAttribute(L.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias),
                   "bias pointer");
        CUBLAS_TRY(cublasLtMatmulDescSetAttribute(L.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt),
                   "bias type");
    }
    bool na = opa == CUBLAS_OP_N, nb = opb == CUBLAS_OP_N;
    CUBLAS_TRY(cublasLtMatrixLayoutCreate(&L.la, ab, na ? m : k, na ? k : m, lda), "layout of A");
    CUBLAS_TRY(cublasLtMatrixLayoutCreate(&L.lb, ab, nb ? k : n, nb ? n : k, ldb), "layout of B");
    CUBLAS_TRY(cublasLtMatrixLayoutCreate(&L.lc, cd, m, n, ldc), "layout of C");
    if (!hit) {
        CUBLAS_TRY(cublasLtMatmulPreferenceCreate(&L.pref), "cuBLASLt preference");
        uint64_t ws = CUDA_GEMM_WORKSPACE_BYTES;
        CUBLAS_TRY(cublasLtMatmulPreferenceSetAttribute(L.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                        sizeof ws),
                   "workspace preference");
        CUBLAS_TRY(cublasLtMatmulPreferenceSetAttribute(L.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                        &key.align_a, sizeof key.align_a),
                   "alignment of A");
        CUBLAS_TRY(cublasLtMatmulPreferenceSetAttribute(L.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                        &key.align_b, sizeof key.align_b),
                   "alignment of B");
        CUBLAS_TRY(cublasLtMatmulPreferenceSetAttribute(L.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                        &key.align_c, sizeof key.align_c),
                   "alignment of C");
        CUBLAS_TRY(cublasLtMatmulPreferenceSetAttribute(L.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                        &key.align_c, sizeof key.align_c),
                   "alignment of D");
        cublasLtMatmulHeuristicResult_t res[CUDA_GEMM_ALGOS];
        int returned = 0, want = ctx->gemm_algo_rank + 1;
        cublasStatus_t st =
            cublasLtMatmulAlgoGetHeuristic(ctx->lt, L.op, L.la, L.lb, L.lc, L.lc, L.pref, want, res, &returned);
        bool none = st == CUBLAS_STATUS_NOT_SUPPORTED || (st == CUBLAS_STATUS_SUCCESS && returned == 0);
        if (!none) CUBLAS_TRY(st, "cuBLASLt heuristic");
        ctx->gemm_last_answers = none ? 0 : returned;
        hit = &ctx->gemm_cache[ctx->gemm_cache_next];
        ctx->gemm_cache_next = (ctx->gemm_cache_next + 1) % CUDA_GEMM_CACHE;
        hit->key = key, hit->used = true, hit->found = !none;
        if (none) return 0;
        hit->algo = res[ctx->gemm_algo_rank < returned ? ctx->gemm_algo_rank : returned - 1].algo;
        if (ctx->gemm_splitk > 0 && split_k(ctx, &L, &hit->algo, ctx->gemm_splitk) < 0) {
            hit->used = false; // asked again (and refused again) by the next call
            return maye_fail_ctx("gemm %d x %d x %d", m, n, k);
        }
    }
    CUBLAS_TRY(cublasLtMatmul(ctx->lt, L.op, &alpha, A, L.la, B, L.lb, &beta, Cin, L.lc, C, L.lc, &hit->algo,
                              ctx->workspace, CUDA_GEMM_WORKSPACE_BYTES, stream),
               "cuBLASLt matmul");
    *found = true;
    return 0;
}

// ----------------------------------------------------------------------------
// row-major GEMM

// Copies c_in (M, N) into c (both row stride ldc) for the paths that scale c in place.
static int stage_c_in(cuda_dtype c_dt, void *c, const void *c_in, int64_t ldc, int M, int N, cudaStream_t stream) {
    size_t es = dtype_size(c_dt);
    CUDA_TRY(cudaMemcpy2DAsync(c, (size_t)ldc * es, c_in, (size_t)ldc * es, (size_t)N * es, (size_t)M,
                               cudaMemcpyDeviceToDevice, stream),
             "gemm: copying the %d x %d addend", M, N);
    return 0;
}

int gemm_rowmajor(cuda_ctx *ctx, cuda_dtype ab, cuda_dtype c_dt, bool trans_a, bool trans_b, int M, int N, int K,
                  float alpha, const void *a, int64_t lda, const void *b, int64_t ldb, float beta, void *c,
                  int64_t ldc, const void *bias, cudaStream_t stream, const void *c_in) {
    CHECK_OR_FAIL(dtype_valid(ab) && dtype_valid(c_dt), "gemm: unknown dtype (%d, %d)", (int)ab, (int)c_dt);
    CHECK_OR_FAIL(M >= 0 && N >= 0 && K >= 0, "gemm: negative size %d x %d x %d", M, N, K);
    if (M == 0 || N == 0) return 0;
    CHECK_OR_FAIL(lda >= (trans_a ? M : K) && lda >= 1 && ldb >= (trans_b ? K : N) && ldb >= 1 && ldc >= N,
                  "gemm %d x %d x %d (trans %d %d): leading dimensions %lld %lld %lld are too small", M, N, K,
                  trans_a, trans_b, (long long)lda, (long long)ldb, (long long)ldc);
    CHECK_OR_FAIL(lda <= INT32_MAX && ldb <= INT32_MAX && ldc <= INT32_MAX, "gemm: leading dimension over 2^31");
    if (!c_in || beta == 0.0f) c_in = c;
    if (K == 0) {
        if (c_in != c) TRY(stage_c_in(c_dt, c, c_in, ldc, M, N, stream));
        return scale_add_bias(c_dt, c, ldc, bias, M, N, beta, stream);
    }
    // column-major view: c^T (N, M) = op(b)^T (N, K) @ op(a)^T (K, M)
    cublasOperation_t opa = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, opb = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    bool found = false;
    TRY(lt_matmul(ctx, cuda_type(ab), cuda_type(c_dt), opa, opb, N, M, K, alpha, b, ldb, a, lda, beta, c_in, c, ldc,
                  bias, stream, &found));
    if (found) return 0;
    if (c_in != c) TRY(stage_c_in(c_dt, c, c_in, ldc, M, N, stream));
    CUBLAS_TRY(cublasSetStream(ctx->blas, stream), "cuBLAS stream");
    CUBLAS_TRY(cublasGemmEx(ctx->blas, opa, opb, N, M, K, &alpha, b, cuda_type(ab), (int)ldb, a, cuda_type(ab),
                            (int)lda, &beta, c, cuda_type(c_dt), (int)ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               "cublasGemmEx %d x %d x %d (%s -> %s)", M, N, K, dtype_name(ab), dtype_name(c_dt));
    if (bias) return scale_add_bias(c_dt, c, ldc, bias, M, N, 1.0f, stream);
    return 0;
}

// ----------------------------------------------------------------------------
// C API

extern "C" int cuda_matmul_forward(cuda_ctx *ctx, cuda_dtype dt, void *out, const void *inp, const void *weight,
                                   const void *bias, int T, int C, int OC, cuda_stream stream) {
    if (gemm_rowmajor(ctx, dt, dt, false, true, T, OC, C, 1.0f, inp, C > 0 ? C : 1, weight, C > 0 ? C : 1, 0.0f,
                      out, OC, bias, stream) < 0)
        return maye_fail_ctx("matmul_forward %d x %d -> %d (%s)", T, C, OC, dtype_name(dt));
    return 0;
}

extern "C" int cuda_matmul_residual_forward(cuda_ctx *ctx, cuda_dtype dt, void *out, const void *resid,
                                            const void *inp, const void *weight, const void *bias, int T, int C, int OC,
                                            cuda_stream stream) {
    if (gemm_rowmajor(ctx, dt, dt, false, true, T, OC, C, 1.0f, inp, C > 0 ? C : 1, weight, C > 0 ? C : 1, 1.0f, out,
                      OC, bias, stream, resid) < 0)
        return maye_fail_ctx("matmul_residual_forward %d x %d -> %d (%s)", T, C, OC, dtype_name(dt));
    return 0;
}

extern "C" int cuda_gemm(cuda_ctx *ctx, cuda_dtype ab, cuda_dtype c_dt, int trans_a, int trans_b, int M, int N, int K,
                         float alpha, const void *a, int64_t lda, const void *b, int64_t ldb, float beta, void *c,
                         int64_t ldc, cuda_stream stream) {
    return gemm_rowmajor(ctx, ab, c_dt, trans_a != 0, trans_b != 0, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc,
                         NULL, stream);
}
