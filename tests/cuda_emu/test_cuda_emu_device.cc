// The emulator's runtime API and cuBLAS (cuda_emu_runtime.h, cuda_emu_blas.h), which `make CUDA_EMU=1` builds the
// GPU model, the CUDA backend and tests/cuda against: device memory (poisoned, inaccessible to host code, guard
// page after each allocation, freed memory inaccessible, copy checks), launches through cuda_emu_launcher (limits
// and the shared-memory opt-in), stream capture and graph replay (what a capture forbids), events, cuBLASLt's
// matmul with its bias epilogue and a separate C, and IPC handles across processes.
#include "cuda_emu_blas.h"
#include "cuda_emu_test.h"

#include <sys/wait.h>

__global__ void fill_kernel(float *out, int n, float v) {
    int i = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    if (i < n) out[i] = v + (float)i;
}

__global__ void add_kernel(float *x, int n, float v) {
    int i = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    if (i < n) x[i] += v;
}

// Writes x[n] when overrun (one element past the end).
__global__ void overrun_kernel(float *x, int n) {
    if (threadIdx.x == 0) x[n] = 1.0f;
}

__global__ void smem_kernel(float *out) {
    unsigned char *s = cuda_emu_dynamic_smem();
    s[threadIdx.x] = 1;
    if (threadIdx.x == 0) out[0] = 2.0f;
}

template <typename T> __global__ void typed_fill_kernel(T *out, int n) {
    int i = (int)threadIdx.x;
    if (i < n) out[i] = (T)(i * 2);
}

static float *dalloc_f32(size_t n) {
    void *p = NULL;
    if (cudaMalloc(&p, n * sizeof(float)) != cudaSuccess) maye_die("cudaMalloc of %zu floats failed", n);
    return (float *)p;
}

static std::vector<float> to_host(const float *d, size_t n) {
    std::vector<float> h(n);
    if (cudaMemcpy(h.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost) != cudaSuccess) maye_die("D2H failed");
    return h;
}

static void test_memory() {
    float *d = dalloc_f32(100);
    std::vector<float> h = to_host(d, 100);
    uint32_t bits;
    memcpy(&bits, &h[7], 4);
    EXPECT(bits == 0xFFFFFFFFu, "fresh device memory holds 0x%08x, want the 0xFF poison", bits);
    EXPECT(((uintptr_t)d & 255) == 0, "cudaMalloc returned %p, not 256-byte aligned", (void *)d);
    std::vector<float> src(100, 3.0f), back(100);
    EXPECT(cudaMemcpy(d, src.data(), 400, cudaMemcpyHostToDevice) == cudaSuccess, "H2D");
    EXPECT(cudaMemcpy(back.data(), d, 400, cudaMemcpyDeviceToHost) == cudaSuccess, "D2H");
    EXPECT(back[99] == 3.0f, "round trip gave %g", back[99]);
    // direction and bounds
    EXPECT(cudaMemcpy(back.data(), src.data(), 400, cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
           "H2D into host memory must fail");
    EXPECT(cudaGetLastError() == cudaErrorInvalidValue, "a failed call is the last error (as in CUDA)");
    EXPECT(cudaGetLastError() == cudaSuccess, "cudaGetLastError clears it");
    EXPECT(cudaMemcpy(d, src.data(), 404 + 256, cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
           "a copy past the allocation must fail");
    EXPECT(cudaMemsetAsync(back.data(), 0, 4, 0) == cudaErrorInvalidValue, "memset of host memory must fail");
    EXPECT(cudaMemcpy(back.data(), d, 400, cudaMemcpyDefault) == cudaSuccess && back[0] == 3.0f, "cudaMemcpyDefault");
    EXPECT(cudaFree(d + 1) == cudaErrorInvalidValue, "cudaFree inside an allocation must fail");
    cudaGetLastError();
    EXPECT(cudaFree(d) == cudaSuccess, "cudaFree");
    EXPECT(!cuda_emu_is_device(d, 4), "freed memory still counts as device memory");
    // allocations reuse freed space and stay apart
    float *a = dalloc_f32(1024), *b = dalloc_f32(3);
    EXPECT(cuda_emu_is_device(a, 4096) && !cuda_emu_is_device(a, 4100) && cuda_emu_is_device(b, 256), "allocation bounds");
    cudaFree(a), cudaFree(b);
}

static void test_launches() {
    float *d = dalloc_f32(300);
    cuda_emu_launcher(fill_kernel, dim3(3), dim3(128))(d, 300, 1.0f);
    EXPECT(cudaGetLastError() == cudaSuccess, "launch");
    std::vector<float> h = to_host(d, 300);
    EXPECT(h[0] == 1.0f && h[299] == 300.0f, "fill gave %g %g", h[0], h[299]);
    cuda_emu_launcher_deduced([](auto... a) { typed_fill_kernel(a...); }, dim3(1), dim3(32))(d, 5);
    h = to_host(d, 5);
    EXPECT(h[4] == 8.0f, "a deduced template kernel wrote %g", h[4]);
    cuda_emu_launcher(fill_kernel, dim3(1), dim3(2048))(d, 300, 0.0f);
    EXPECT(cudaGetLastError() == cudaErrorInvalidConfiguration, "2048 threads per block must fail");
    EXPECT(cudaGetLastError() == cudaSuccess, "cudaGetLastError clears the error");
    cuda_emu_launcher(smem_kernel, dim3(1), dim3(32), 64 * 1024)(d);
    EXPECT(cudaGetLastError() == cudaErrorInvalidValue, "64 KiB of dynamic shared memory without the opt-in");
    EXPECT(cudaFuncSetAttribute(smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024) == cudaSuccess,
           "opt-in");
    cuda_emu_launcher(smem_kernel, dim3(1), dim3(32), 64 * 1024)(d);
    EXPECT(cudaGetLastError() == cudaSuccess, "64 KiB after the opt-in");
    cudaFree(d);
}

static void test_capture() {
    cudaStream_t s;
    EXPECT(cudaStreamCreate(&s) == cudaSuccess, "stream");
    float *d = dalloc_f32(64), *e = dalloc_f32(64);
    cuda_emu_launcher(fill_kernel, dim3(1), dim3(64), 0, s)(d, 64, 0.0f);
    EXPECT(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess, "begin capture");
    cudaStreamCaptureStatus st;
    EXPECT(cudaStreamIsCapturing(s, &st) == cudaSuccess && st == cudaStreamCaptureStatusActive, "capturing");
    cuda_emu_launcher(add_kernel, dim3(1), dim3(64), 0, s)(d, 64, 10.0f);
    EXPECT(cudaMemcpyAsync(e, d, 256, cudaMemcpyDeviceToDevice, s) == cudaSuccess, "captured D2D copy");
    cudaGraph_t g = NULL;
    EXPECT(cudaStreamEndCapture(s, &g) == cudaSuccess && g, "end capture");
    std::vector<float> h = to_host(d, 64);
    EXPECT(h[5] == 5.0f, "a captured kernel ran during the capture (%g)", h[5]);
    cudaGraphExec_t x;
    EXPECT(cudaGraphInstantiate(&x, g, 0) == cudaSuccess, "instantiate");
    cudaGraphDestroy(g);
    for (int r = 0; r < 3; r++) EXPECT(cudaGraphLaunch(x, s) == cudaSuccess, "graph launch");
    EXPECT(cudaStreamSynchronize(s) == cudaSuccess, "sync");
    h = to_host(d, 64);
    std::vector<float> he = to_host(e, 64);
    EXPECT(h[5] == 35.0f && he[5] == 35.0f, "three replays gave %g / %g, want 35", h[5], he[5]);
    cudaGraphExecDestroy(x);
    // what a capture forbids
    std::vector<float> host(64);
    EXPECT(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess, "begin capture");
    EXPECT(cudaMemcpyAsync(host.data(), d, 256, cudaMemcpyDeviceToHost, s) == cudaErrorStreamCaptureUnsupported,
           "a copy to host memory must not join a graph");
    EXPECT(cudaStreamEndCapture(s, &g) == cudaErrorStreamCaptureInvalidated && !g, "the capture is invalidated");
    EXPECT(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess, "begin capture");
    void *p = NULL;
    EXPECT(cudaMalloc(&p, 16) == cudaErrorStreamCaptureUnsupported, "cudaMalloc during a capture");
    EXPECT(cudaStreamEndCapture(s, &g) == cudaErrorStreamCaptureInvalidated, "invalidated by cudaMalloc");
    EXPECT(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess, "begin capture");
    EXPECT(cudaStreamSynchronize(s) == cudaErrorStreamCaptureUnsupported, "synchronising a capturing stream");
    EXPECT(cudaStreamEndCapture(s, &g) == cudaErrorStreamCaptureInvalidated, "invalidated by the sync");
    EXPECT(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess, "begin capture");
    cuda_emu_launcher(add_kernel, dim3(1), dim3(64))(d, 64, 1.0f); // the legacy stream
    EXPECT(cudaGetLastError() == cudaErrorStreamCaptureImplicit, "a launch on the legacy stream during a capture");
    EXPECT(cudaStreamEndCapture(s, &g) == cudaErrorStreamCaptureInvalidated, "invalidated by the legacy stream");
    cudaGetLastError();
    // events
    cudaEvent_t a, b;
    cudaEventCreate(&a), cudaEventCreate(&b);
    float ms = -1;
    EXPECT(cudaEventElapsedTime(&ms, a, b) != cudaSuccess, "elapsed time of unrecorded events");
    cudaGetLastError();
    cudaEventRecord(a, s), cudaEventRecord(b, s);
    EXPECT(cudaEventSynchronize(b) == cudaSuccess && cudaEventElapsedTime(&ms, a, b) == cudaSuccess && ms >= 0,
           "elapsed time %g", ms);
    cudaEventDestroy(a), cudaEventDestroy(b);
    cudaFree(d), cudaFree(e);
    cudaStreamDestroy(s);
}

// D = alpha op(A) op(B) + beta C + bias against a double loop; C and D apart, bf16 in, fp32 and bf16 out.
static void test_blas() {
    cublasLtHandle_t lt;
    cublasLtCreate(&lt);
    int m = 5, n = 7, k = 9;
    for (int dt16 : {0, 1})
        for (int ta : {0, 1}) {
            cudaDataType_t ab = dt16 ? CUDA_R_16BF : CUDA_R_32F, cd = dt16 ? CUDA_R_16BF : CUDA_R_32F;
            size_t es = dt16 ? 2 : 4;
            std::vector<float> A(m * k), B(k * n), C(m * n), bias(m);
            for (auto *v : {&A, &B, &C, &bias})
                for (size_t i = 0; i < v->size(); i++) (*v)[i] = emu_round_bf16((float)((i * 7 + v->size()) % 11) - 5);
            auto up = [&](const std::vector<float> &v) {
                void *p;
                cudaMalloc(&p, v.size() * es);
                std::vector<unsigned char> bytes(v.size() * es);
                for (size_t i = 0; i < v.size(); i++) {
                    if (dt16) {
                        __nv_bfloat16 b = __float2bfloat16_rn(v[i]);
                        memcpy(&bytes[i * 2], &b, 2);
                    } else memcpy(&bytes[i * 4], &v[i], 4);
                }
                cudaMemcpy(p, bytes.data(), bytes.size(), cudaMemcpyHostToDevice);
                return p;
            };
            // A stored (m, k) column-major for N, (k, m) for T; B (k, n); C, D (m, n)
            void *dA = up(A), *dB = up(B), *dC = up(C), *dbias = up(bias), *dD;
            cudaMalloc(&dD, m * n * es);
            cublasLtMatmulDesc_t op;
            cublasLtMatrixLayout_t la, lb, lc;
            cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
            int32_t t = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
            uint32_t epi = CUBLASLT_EPILOGUE_BIAS;
            cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof t);
            cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi);
            cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &dbias, sizeof dbias);
            cublasLtMatrixLayoutCreate(&la, ab, ta ? k : m, ta ? m : k, ta ? k : m);
            cublasLtMatrixLayoutCreate(&lb, ab, k, n, k);
            cublasLtMatrixLayoutCreate(&lc, cd, m, n, m);
            float alpha = 0.5f, beta = 2.0f;
            EXPECT(cublasLtMatmul(lt, op, &alpha, dA, la, dB, lb, &beta, dC, lc, dD, lc, NULL, NULL, 0, 0) ==
                       CUBLAS_STATUS_SUCCESS,
                   "cublasLtMatmul");
            std::vector<unsigned char> raw(m * n * es);
            cudaMemcpy(raw.data(), dD, raw.size(), cudaMemcpyDeviceToHost);
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++) {
                    double acc = 0;
                    for (int p = 0; p < k; p++) acc += (double)A[ta ? p + i * k : i + p * m] * B[p + j * k];
                    double want = alpha * acc + beta * C[i + j * m] + bias[i];
                    float got;
                    if (dt16) {
                        __nv_bfloat16 b;
                        memcpy(&b, &raw[(i + j * m) * 2], 2);
                        got = __bfloat162float(b);
                    } else memcpy(&got, &raw[(i + j * m) * 4], 4);
                    double tol = dt16 ? 0.01 * fabs(want) + 0.01 : 1e-4;
                    EXPECT(fabs(got - want) <= tol, "matmul (bf16 %d, trans %d) D[%d,%d] = %g, want %g", dt16, ta, i, j,
                           got, want);
                }
            // a layout that does not fit the operation
            cublasLtMatrixLayout_t bad;
            cublasLtMatrixLayoutCreate(&bad, cd, m + 1, n, m + 1);
            EXPECT(cublasLtMatmul(lt, op, &alpha, dA, la, dB, lb, &beta, dC, bad, dD, bad, NULL, NULL, 0, 0) ==
                       CUBLAS_STATUS_INVALID_VALUE,
                   "mismatched shapes must fail");
            cublasLtMatrixLayoutDestroy(bad), cublasLtMatrixLayoutDestroy(la), cublasLtMatrixLayoutDestroy(lb);
            cublasLtMatrixLayoutDestroy(lc), cublasLtMatmulDescDestroy(op);
            cudaFree(dA), cudaFree(dB), cudaFree(dC), cudaFree(dbias), cudaFree(dD);
        }
    cublasLtDestroy(lt);
}

// A child process maps the parent's allocation through its IPC handle, reads it and writes into it.
static void test_ipc() {
    float *d = dalloc_f32(1000);
    std::vector<float> v(1000, 4.5f);
    cudaMemcpy(d, v.data(), 4000, cudaMemcpyHostToDevice);
    cudaIpcMemHandle_t h;
    EXPECT(cudaIpcGetMemHandle(&h, d) == cudaSuccess, "get handle");
    void *self = NULL;
    EXPECT(cudaIpcOpenMemHandle(&self, h, cudaIpcMemLazyEnablePeerAccess) == cudaErrorDeviceUninitialized,
           "opening a handle in its own process must fail, as with CUDA");
    cudaGetLastError();
    fflush(stdout), fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        void *p = NULL;
        if (cudaIpcOpenMemHandle(&p, h, cudaIpcMemLazyEnablePeerAccess) != cudaSuccess) _exit(2);
        float x[1000];
        if (cudaMemcpy(x, p, 4000, cudaMemcpyDeviceToHost) != cudaSuccess || x[999] != 4.5f) _exit(3);
        cuda_emu_launcher(add_kernel, dim3(8), dim3(128))((float *)p, 1000, 1.0f);
        if (cudaGetLastError() != cudaSuccess || cudaIpcCloseMemHandle(p) != cudaSuccess) _exit(4);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child's IPC checks failed (status %d)", status);
    std::vector<float> back = to_host(d, 1000);
    EXPECT(back[0] == 5.5f && back[999] == 5.5f, "the child's kernel wrote %g %g into the shared allocation", back[0],
           back[999]);
    cudaFree(d);
}

static void test_faults() {
    expect_abort("host code reading device memory", "host code touched device memory", [] {
        float *d = dalloc_f32(16);
        volatile float x = d[3];
        (void)x;
    });
    expect_abort("a kernel writing past the end", "4 bytes past the end of a 1024-byte cudaMalloc allocation", [] {
        float *d = dalloc_f32(256);
        cuda_emu_launcher(overrun_kernel, dim3(1), dim3(32))(d, 257);
    });
    expect_abort("a kernel using freed memory", "outside every allocation", [] {
        float *d = dalloc_f32(256);
        cudaFree(d);
        cuda_emu_launcher(fill_kernel, dim3(1), dim3(32))(d, 32, 0.0f);
    });
    expect_abort("cuBLAS with a host matrix", "is not inside one device allocation", [] {
        cublasHandle_t b;
        cublasCreate(&b);
        std::vector<float> A(4, 1.0f);
        float *d = dalloc_f32(4), one = 1, zero = 0;
        cublasGemmEx(b, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 2, &one, A.data(), CUDA_R_32F, 2, d, CUDA_R_32F, 2, &zero, d,
                     CUDA_R_32F, 2, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    });
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_memory();
    test_launches();
    test_capture();
    test_blas();
    test_ipc();
    test_faults();
    return TEST_RESULT();
}
