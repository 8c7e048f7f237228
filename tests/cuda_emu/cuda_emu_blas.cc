// cuBLAS / cuBLASLt under the CPU emulator (cuda_emu_blas.h says what it models).
#include "cuda_emu_blas.h"

#include <vector>

struct cuda_emu_blas_handle {
    cudaStream_t stream = nullptr;
};
struct cuda_emu_lt_handle {
    int unused = 0;
};
struct cuda_emu_lt_desc {
    cublasComputeType_t compute;
    cudaDataType_t scale;
    int32_t transa = CUBLAS_OP_N, transb = CUBLAS_OP_N;
    uint32_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    const void *bias = nullptr;
    int32_t bias_type = -1; // -1: D's type
};
struct cuda_emu_lt_layout {
    cudaDataType_t type;
    uint64_t rows, cols;
    int64_t ld;
};
struct cuda_emu_lt_pref {
    uint64_t workspace = 0;
    uint32_t align[4] = {256, 256, 256, 256}; // A, B, C, D
};

namespace {

bool type_ok(cudaDataType_t t) { return t == CUDA_R_32F || t == CUDA_R_16BF; }
size_t type_size(cudaDataType_t t) { return t == CUDA_R_16BF ? 2 : 4; }

float load(cudaDataType_t t, const void *p, size_t i) {
    if (t == CUDA_R_16BF) return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    return ((const float *)p)[i];
}

void store(cudaDataType_t t, void *p, size_t i, float x) {
    if (t == CUDA_R_16BF) ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(x);
    else ((float *)p)[i] = x;
}

uint32_t ptr_align(const void *p) {
    uintptr_t x = (uintptr_t)p;
    uint32_t a = 256;
    while (a > 1 && x % a) a >>= 1;
    return a;
}

// Dies unless the column-major matrix (rows, cols, ld) of type t at p lies in device memory.
void need_device(const char *what, const void *p, cudaDataType_t t, uint64_t rows, uint64_t cols, int64_t ld) {
    if (rows == 0 || cols == 0) return;
    size_t bytes = ((cols - 1) * (uint64_t)ld + rows) * type_size(t);
    if (!cuda_emu_is_device(p, bytes))
        cuda_emu_die("cuBLAS: matrix %s (%llu x %llu, ld %lld) at %p is not inside one device allocation", what,
                     (unsigned long long)rows, (unsigned long long)cols, (long long)ld, p);
}

struct Gemm {
    int transa, transb, m, n, k;
    float alpha, beta;
    cudaDataType_t ta, tb, tc, td, tbias;
    const void *A, *B, *C, *bias;
    void *D;
    int64_t lda, ldb, ldc, ldd;

    // D = alpha op(A) op(B) + beta C + bias, each product in fp32 in k order, one rounding to D's type.
    void run() const {
        std::vector<float> a((size_t)m * k), b((size_t)n * k);
        for (int i = 0; i < m; i++)
            for (int p = 0; p < k; p++)
                a[(size_t)i * k + p] = load(ta, A, transa == CUBLAS_OP_N ? i + (size_t)p * lda : p + (size_t)i * lda);
        for (int j = 0; j < n; j++)
            for (int p = 0; p < k; p++)
                b[(size_t)j * k + p] = load(tb, B, transb == CUBLAS_OP_N ? p + (size_t)j * ldb : j + (size_t)p * ldb);
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                const float *x = &a[(size_t)i * k], *y = &b[(size_t)j * k];
                float acc = 0;
                for (int p = 0; p < k; p++) acc += x[p] * y[p];
                float v = alpha * acc;
                if (beta != 0.0f) v += beta * load(tc, C, i + (size_t)j * ldc);
                if (bias) v += load(tbias, bias, i);
                store(td, D, i + (size_t)j * ldd, v);
            }
    }
};

cublasStatus_t submit(const Gemm &g, cudaStream_t s) {
    need_device("A", g.A, g.ta, g.transa == CUBLAS_OP_N ? g.m : g.k, g.transa == CUBLAS_OP_N ? g.k : g.m, g.lda);
    need_device("B", g.B, g.tb, g.transb == CUBLAS_OP_N ? g.k : g.n, g.transb == CUBLAS_OP_N ? g.n : g.k, g.ldb);
    if (g.beta != 0.0f) need_device("C", g.C, g.tc, g.m, g.n, g.ldc);
    need_device("D", g.D, g.td, g.m, g.n, g.ldd);
    if (g.bias) need_device("bias", g.bias, g.tbias, g.m, 1, g.m);
    cudaError_t err = cuda_emu_stream_op(s, true, [g] { g.run(); });
    return err == cudaSuccess ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}

} // namespace

const char *cublasGetStatusString(cublasStatus_t st) {
    switch (st) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}

// ----------------------------------------------------------------------------
// cuBLAS

cublasStatus_t cublasCreate(cublasHandle_t *h) {
    *h = new cuda_emu_blas_handle;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t h) {
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    h->stream = s;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType_t Atype, int lda, const void *B,
                            cudaDataType_t Btype, int ldb, const void *beta, void *C, cudaDataType_t Ctype, int ldc,
                            cublasComputeType_t compute, cublasGemmAlgo_t algo) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (m < 0 || n < 0 || k < 0 || transa > CUBLAS_OP_C || transb > CUBLAS_OP_C) return CUBLAS_STATUS_INVALID_VALUE;
    if (lda < (transa == CUBLAS_OP_N ? (m > 1 ? m : 1) : (k > 1 ? k : 1)) ||
        ldb < (transb == CUBLAS_OP_N ? (k > 1 ? k : 1) : (n > 1 ? n : 1)) || ldc < (m > 1 ? m : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (Atype != Btype || !type_ok(Atype) || !type_ok(Ctype) || (Atype == CUDA_R_32F && Ctype != CUDA_R_32F) ||
        (compute != CUBLAS_COMPUTE_32F && compute != CUBLAS_COMPUTE_32F_FAST_TF32))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    (void)algo;
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    Gemm g = {transa, transb, m, n, k, *(const float *)alpha, *(const float *)beta, Atype, Btype, Ctype, Ctype,
              Ctype, A, B, C, nullptr, C, lda, ldb, ldc, ldc};
    return submit(g, h->stream);
}

// ----------------------------------------------------------------------------
// cuBLASLt

cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) {
    *h = new cuda_emu_lt_handle;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) {
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t compute, cudaDataType_t scale) {
    if (compute != CUBLAS_COMPUTE_32F && compute != CUBLAS_COMPUTE_32F_FAST_TF32) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (scale != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    *d = new cuda_emu_lt_desc;
    (*d)->compute = compute, (*d)->scale = scale;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
    delete d;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr,
                                              const void *buf, size_t bytes) {
    if (!d) return CUBLAS_STATUS_NOT_INITIALIZED;
    switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
    case CUBLASLT_MATMUL_DESC_TRANSB: {
        if (bytes != sizeof(int32_t)) return CUBLAS_STATUS_INVALID_VALUE;
        int32_t v;
        memcpy(&v, buf, sizeof v);
        if (v < CUBLAS_OP_N || v > CUBLAS_OP_C) return CUBLAS_STATUS_INVALID_VALUE;
        (attr == CUBLASLT_MATMUL_DESC_TRANSA ? d->transa : d->transb) = v;
        return CUBLAS_STATUS_SUCCESS;
    }
    case CUBLASLT_MATMUL_DESC_EPILOGUE:
        if (bytes != sizeof(uint32_t)) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&d->epilogue, buf, sizeof d->epilogue);
        if (d->epilogue != CUBLASLT_EPILOGUE_DEFAULT && d->epilogue != CUBLASLT_EPILOGUE_BIAS)
            return CUBLAS_STATUS_NOT_SUPPORTED; // the emulator knows only these two
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
        if (bytes != sizeof(void *)) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&d->bias, buf, sizeof d->bias);
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE:
        if (bytes != sizeof(int32_t)) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&d->bias_type, buf, sizeof d->bias_type);
        return CUBLAS_STATUS_SUCCESS;
    }
    return CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType_t type, uint64_t rows,
                                          uint64_t cols, int64_t ld) {
    if (ld < (int64_t)(rows > 1 ? rows : 1)) return CUBLAS_STATUS_INVALID_VALUE;
    *l = new cuda_emu_lt_layout{type, rows, cols, ld};
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
    delete l;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) {
    *p = new cuda_emu_lt_pref;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
    delete p;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                    cublasLtMatmulPreferenceAttributes_t attr, const void *buf,
                                                    size_t bytes) {
    if (!p) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (attr == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES) {
        if (bytes != sizeof(uint64_t)) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&p->workspace, buf, bytes);
        return CUBLAS_STATUS_SUCCESS;
    }
    if (attr >= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES && attr <= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES) {
        if (bytes != sizeof(uint32_t)) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&p->align[attr - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES], buf, bytes);
        return CUBLAS_STATUS_SUCCESS;
    }
    return CUBLAS_STATUS_INVALID_VALUE;
}

namespace {

// The shapes of one cuBLASLt call, checked as the library does: m, n, k from the layouts.
cublasStatus_t lt_shape(cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                        cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d, int *m, int *n, int *k) {
    if (!op || !a || !b || !c || !d) return CUBLAS_STATUS_NOT_INITIALIZED;
    uint64_t am = op->transa == CUBLAS_OP_N ? a->rows : a->cols, ak = op->transa == CUBLAS_OP_N ? a->cols : a->rows;
    uint64_t bk = op->transb == CUBLAS_OP_N ? b->rows : b->cols, bn = op->transb == CUBLAS_OP_N ? b->cols : b->rows;
    if (am != d->rows || bn != d->cols || ak != bk || c->rows != d->rows || c->cols != d->cols)
        return CUBLAS_STATUS_INVALID_VALUE;
    if (a->type != b->type || c->type != d->type || !type_ok(a->type) || !type_ok(d->type) ||
        (a->type == CUDA_R_32F && d->type != CUDA_R_32F))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (op->epilogue == CUBLASLT_EPILOGUE_BIAS && op->bias_type != -1 && op->bias_type != (int32_t)d->type)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    *m = (int)d->rows, *n = (int)d->cols, *k = (int)ak;
    return CUBLAS_STATUS_SUCCESS;
}

} // namespace

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t a,
                                              cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
                                              cublasLtMatrixLayout_t d, cublasLtMatmulPreference_t pref,
                                              int requested, cublasLtMatmulHeuristicResult_t *results, int *returned) {
    *returned = 0;
    if (!h || !pref) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (requested < 1) return CUBLAS_STATUS_INVALID_VALUE;
    int m, n, k;
    cublasStatus_t st = lt_shape(op, a, b, c, d, &m, &n, &k);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    int answers = requested < 3 ? requested : 3;
    for (int i = 0; i < answers; i++) {
        memset(&results[i], 0, sizeof results[i]);
        results[i].algo.data[0] = 0x454d55; // "EMU": checked by cublasLtMatmul
        results[i].algo.data[1] = (uint64_t)i;
        for (int j = 0; j < 4; j++) results[i].algo.data[2 + j] = pref->align[j];
        results[i].state = CUBLAS_STATUS_SUCCESS;
        results[i].wavesCount = 1.0f;
    }
    *returned = answers;
    return CUBLAS_STATUS_SUCCESS;
}

// algo->data: [0] the magic, [1] the rank, [2..5] the alignments asked for, [6] K splits (0: 1), [7] the scheme.
cublasStatus_t cublasLtMatmulAlgoCapGetAttribute(const cublasLtMatmulAlgo_t *algo,
                                                 cublasLtMatmulAlgoCapAttributes_t attr, void *buf, size_t bytes,
                                                 size_t *written) {
    if (!algo || algo->data[0] != 0x454d55) return CUBLAS_STATUS_INVALID_VALUE;
    if (attr == CUBLASLT_ALGO_CAP_SPLITK_SUPPORT && bytes == sizeof(int32_t) && buf) {
        *(int32_t *)buf = 1;
    } else if (attr == CUBLASLT_ALGO_CAP_REDUCTION_SCHEME_MASK && bytes == sizeof(uint32_t) && buf) {
        *(uint32_t *)buf = CUBLASLT_REDUCTION_SCHEME_MASK;
    } else {
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (written) *written = bytes;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulAlgoConfigSetAttribute(cublasLtMatmulAlgo_t *algo,
                                                    cublasLtMatmulAlgoConfigAttributes_t attr, const void *buf,
                                                    size_t bytes) {
    if (!algo || !buf) return CUBLAS_STATUS_INVALID_VALUE;
    if (attr == CUBLASLT_ALGO_CONFIG_SPLITK_NUM && bytes == sizeof(int32_t)) {
        algo->data[6] = (uint64_t)*(const int32_t *)buf;
    } else if (attr == CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME && bytes == sizeof(uint32_t)) {
        algo->data[7] = *(const uint32_t *)buf;
    } else {
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulAlgoCheck(cublasLtHandle_t h, cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t a,
                                       cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
                                       const cublasLtMatmulAlgo_t *algo, cublasLtMatmulHeuristicResult_t *result) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!algo || !result || algo->data[0] != 0x454d55) return CUBLAS_STATUS_INVALID_VALUE;
    int m, n, k;
    cublasStatus_t st = lt_shape(op, a, b, c, d, &m, &n, &k);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    uint64_t splits = algo->data[6] ? algo->data[6] : 1, scheme = algo->data[7];
    if (splits > 1 && (scheme == CUBLASLT_REDUCTION_SCHEME_NONE || (scheme & ~(uint64_t)CUBLASLT_REDUCTION_SCHEME_MASK)))
        return CUBLAS_STATUS_INVALID_VALUE;
    memset(result, 0, sizeof *result);
    result->algo = *algo;
    result->workspaceSize = splits > 1 && scheme == CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE
                                ? (size_t)splits * m * n * sizeof(float) : 0;
    result->state = CUBLAS_STATUS_SUCCESS;
    result->wavesCount = 1.0f;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t op, const void *alpha, const void *A,
                              cublasLtMatrixLayout_t a, const void *B, cublasLtMatrixLayout_t b, const void *beta,
                              const void *C, cublasLtMatrixLayout_t c, void *D, cublasLtMatrixLayout_t d,
                              const cublasLtMatmulAlgo_t *algo, void *workspace, size_t workspace_bytes,
                              cudaStream_t stream) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    int m, n, k;
    cublasStatus_t st = lt_shape(op, a, b, c, d, &m, &n, &k);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    if (algo) {
        if (algo->data[0] != 0x454d55) return CUBLAS_STATUS_INVALID_VALUE;
        // an algorithm chosen for pointers aligned to X bytes does not run on less aligned ones
        const void *ptrs[4] = {A, B, C, D};
        for (int j = 0; j < 4; j++)
            if (ptr_align(ptrs[j]) < algo->data[2 + j]) return CUBLAS_STATUS_INVALID_VALUE;
        // split K reduced in fp32 needs its partial sums' workspace
        if (algo->data[6] > 1 && algo->data[7] == CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE &&
            workspace_bytes < (size_t)algo->data[6] * m * n * sizeof(float))
            return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (workspace_bytes && !cuda_emu_is_device(workspace, workspace_bytes))
        cuda_emu_die("cuBLASLt: the %zu-byte workspace at %p is not device memory", workspace_bytes, workspace);
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    bool bias = op->epilogue == CUBLASLT_EPILOGUE_BIAS;
    if (bias && !op->bias) return CUBLAS_STATUS_INVALID_VALUE;
    Gemm g = {op->transa, op->transb, m, n, k, *(const float *)alpha, *(const float *)beta, a->type, b->type, c->type,
              d->type, d->type, A, B, C, bias ? op->bias : nullptr, D, a->ld, b->ld, c->ld, d->ld};
    return submit(g, stream);
}
