// The CUDA runtime API under the CPU emulator: what lib/kernels/cuda, lib/model/cuda, lib/backend/cuda.cu and
// tests/cuda call, implemented in cuda_emu_runtime.cc, so the GPU model and the stages' CUDA backend build with
// g++ (make CUDA_EMU=1) and run on the CPU. Kernel launches written kernel<<<grid, block, smem, stream>>>(args)
// reach cuda_emu_launcher through tests/cuda_emu/unchevron.pl.
//
// What it models, beyond the kernels (cuda_emu.h):
//   - Device memory is one arena that host code cannot touch: it is readable and writable only while a kernel,
//     a copy, a memset or a cuBLAS call runs, so host code dereferencing a device pointer faults (reported with
//     the allocation), as it would on a GPU. cudaMalloc fills with 0xFF bytes (NaN in fp32 and bf16) and puts an
//     inaccessible guard page right after the allocation (an overrun by a kernel faults); freed memory is
//     inaccessible; copies and memsets check that their device ranges lie inside live allocations.
//   - Streams run their work at once, in order (so nothing is ever "in flight"; copies with pageable host
//     memory are synchronous on a GPU too). Capture records kernels, device-to-device copies, memsets, events
//     and cuBLAS calls into a graph replayed by cudaGraphLaunch; during a capture the calls a GPU refuses fail
//     the same way and invalidate it: synchronisation, cudaMalloc/cudaFree, copies to or from host memory,
//     work on the legacy stream.
//   - A call that fails sets the last error (cudaGetLastError) as in CUDA, so a launch check reports an earlier
//     failure its caller ignored.
//   - Launch checks: grid and block limits and dynamic shared memory over 48 KiB without
//     cudaFuncSetAttribute fail the launch (cudaGetLastError), as on a GPU.
//   - IPC handles: the arena is a memfd, so another process maps an exported allocation through
//     /proc/<pid>/fd; opening a handle in the process that exported it fails, as on a GPU.
//   - One device, H100-shaped properties (132 SMs, 227 KiB of shared memory per block).
#pragma once
#include <stddef.h>
#include <stdint.h>

#include <functional>
#include <memory>
#include <tuple>
#include <utility>

typedef enum {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevicePointer = 17,
    cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorDeviceUninitialized = 201,
    cudaErrorMapBufferObjectFailed = 205,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorIllegalState = 401,
    cudaErrorNotReady = 600,
    cudaErrorStreamCaptureUnsupported = 900,
    cudaErrorStreamCaptureInvalidated = 901,
    cudaErrorStreamCaptureUnmatched = 903,
    cudaErrorStreamCaptureImplicit = 906,
    cudaErrorUnknown = 999,
} cudaError_t;

typedef struct CUstream_st *cudaStream_t;
typedef struct CUevent_st *cudaEvent_t;
typedef struct CUgraph_st *cudaGraph_t;
typedef struct CUgraphExec_st *cudaGraphExec_t;
typedef struct {
    char reserved[64];
} cudaIpcMemHandle_t;

typedef enum {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
} cudaMemcpyKind;
typedef enum {
    cudaStreamCaptureStatusNone = 0,
    cudaStreamCaptureStatusActive = 1,
    cudaStreamCaptureStatusInvalidated = 2,
} cudaStreamCaptureStatus;
typedef enum {
    cudaStreamCaptureModeGlobal = 0,
    cudaStreamCaptureModeThreadLocal = 1,
    cudaStreamCaptureModeRelaxed = 2,
} cudaStreamCaptureMode;
typedef enum { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 } cudaFuncAttribute;
#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01
#define cudaIpcMemLazyEnablePeerAccess 0x01

struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem, sharedMemPerBlock, sharedMemPerBlockOptin, sharedMemPerMultiprocessor;
    int warpSize, maxThreadsPerBlock, multiProcessorCount, major, minor, maxThreadsPerMultiProcessor;
    int regsPerBlock, l2CacheSize, memoryBusWidth, clockRate, memoryClockRate;
};

const char *cudaGetErrorName(cudaError_t e);
const char *cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);

cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int *device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device);
cudaError_t cudaDeviceSynchronize(void);

cudaError_t cudaMalloc(void **p, size_t bytes);
template <typename T> inline cudaError_t cudaMalloc(T **p, size_t bytes) { return cudaMalloc((void **)p, bytes); }
cudaError_t cudaFree(void *p);
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes);
// Page-locked host memory: ordinary page-aligned host memory here (copies from it run like any host copy);
// refused while a stream is being captured, as on a GPU.
cudaError_t cudaMallocHost(void **p, size_t bytes);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind kind, cudaStream_t s = 0);
cudaError_t cudaMemcpy2DAsync(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t height,
                              cudaMemcpyKind kind, cudaStream_t s = 0);
cudaError_t cudaMemset(void *p, int value, size_t n);
cudaError_t cudaMemsetAsync(void *p, int value, size_t n, cudaStream_t s = 0);
cudaError_t cudaMemset2DAsync(void *p, size_t pitch, int value, size_t width, size_t height, cudaStream_t s = 0);

cudaError_t cudaStreamCreate(cudaStream_t *s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *graph);
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus *status);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);

cudaError_t cudaEventCreate(cudaEvent_t *ev);
cudaError_t cudaEventDestroy(cudaEvent_t ev);
cudaError_t cudaEventRecord(cudaEvent_t ev, cudaStream_t s = 0);
cudaError_t cudaEventQuery(cudaEvent_t ev);
cudaError_t cudaEventSynchronize(cudaEvent_t ev);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end);

cudaError_t cudaIpcGetMemHandle(cudaIpcMemHandle_t *handle, void *p);
cudaError_t cudaIpcOpenMemHandle(void **p, cudaIpcMemHandle_t handle, unsigned flags);
cudaError_t cudaIpcCloseMemHandle(void *p);

cudaError_t cuda_emu_func_set_attribute(const void *fn, cudaFuncAttribute attr, int value);
template <typename F> inline cudaError_t cudaFuncSetAttribute(F *fn, cudaFuncAttribute attr, int value) {
    return cuda_emu_func_set_attribute((const void *)fn, attr, value);
}

// ----------------------------------------------------------------------------
// for the launcher and the cuBLAS emulation

// Runs op on stream s now (device memory open to it), or records it when s is being captured. Returns what
// the call would return on a GPU: an error when s is invalid, or when op may not join a capture in progress
// (device_only false: the op touches host memory).
cudaError_t cuda_emu_stream_op(cudaStream_t s, bool device_only, std::function<void()> op);
void cuda_emu_set_last_error(cudaError_t err);
// The dynamic shared memory fn may use (cudaFuncSetAttribute; 48 KiB without).
size_t cuda_emu_func_max_smem(const void *fn);
// Whether [p, p + n) lies inside one live allocation or opened IPC mapping.
bool cuda_emu_is_device(const void *p, size_t n);
// The emulator's %globaltimer: nanoseconds that advance by 1 ms per read, so a spin on it ends at once.
long long cuda_emu_globaltimer(void);
inline void __nanosleep(unsigned ns) { (void)ns; }

// The launch's limits as a GPU checks them; smem_limit: the kernel's dynamic shared memory (cudaFuncSetAttribute).
inline bool cuda_emu_launch_ok(dim3 grid, dim3 block, size_t smem, size_t smem_limit) {
    unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
    if (threads < 1 || threads > 1024 || block.z > 64 || grid.x < 1 || grid.y < 1 || grid.z < 1 || grid.y > 65535 ||
        grid.z > 65535 || grid.x > 0x7fffffffu) {
        cuda_emu_set_last_error(cudaErrorInvalidConfiguration);
        return false;
    }
    if (smem > smem_limit) {
        cuda_emu_set_last_error(cudaErrorInvalidValue);
        return false;
    }
    return true;
}

// Queues (or records) the launch of f over the grid with the arguments stored in *params.
template <typename F, typename Tuple>
void cuda_emu_launch_queue(F f, dim3 g, dim3 b, size_t smem, cudaStream_t s, std::shared_ptr<Tuple> params) {
    cudaError_t err =
        cuda_emu_stream_op(s, true, [f, g, b, smem, params] { cuda_emu_launch_callable(f, g, b, smem, *params); });
    if (err != cudaSuccess) cuda_emu_set_last_error(err);
}

// name<targs><<<...>>>(args): the kernel's address is known, its arguments convert to its parameter types.
template <typename... P> struct cuda_emu_launch_cfg {
    void (*kernel)(P...);
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;

    template <typename... A> void operator()(A &&...args) const {
        static_assert(sizeof...(P) == sizeof...(A), "kernel launch: wrong number of arguments");
        if (!cuda_emu_launch_ok(grid, block, smem, cuda_emu_func_max_smem((const void *)kernel))) return;
        cuda_emu_launch_queue(kernel, grid, block, smem, stream,
                              std::make_shared<std::tuple<std::decay_t<P>...>>(std::forward<A>(args)...));
    }
};

// name<<<...>>>(args) for a kernel that may be a template deduced from the arguments: f calls it; the dynamic
// shared memory is held to the default limit (the kernels with a raised one are launched with explicit
// template arguments).
template <typename F> struct cuda_emu_launch_deduced_cfg {
    F f;
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;

    template <typename... A> void operator()(A &&...args) const {
        if (!cuda_emu_launch_ok(grid, block, smem, cuda_emu_func_max_smem(nullptr))) return;
        cuda_emu_launch_queue(f, grid, block, smem, stream,
                              std::make_shared<std::tuple<std::decay_t<A>...>>(std::forward<A>(args)...));
    }
};

// kernel<targs><<<grid, block, smem, stream>>>(args) becomes cuda_emu_launcher(kernel<targs>, grid, block, smem,
// stream)(args); kernel<<<...>>>(args) becomes cuda_emu_launcher_deduced([](auto... a) { kernel(a...); }, grid,
// block, smem, stream)(args) (tests/cuda_emu/unchevron.pl).
template <typename... P>
inline cuda_emu_launch_cfg<P...> cuda_emu_launcher(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem = 0,
                                                   cudaStream_t stream = 0) {
    return cuda_emu_launch_cfg<P...>{kernel, grid, block, smem, stream};
}

template <typename F>
inline cuda_emu_launch_deduced_cfg<F> cuda_emu_launcher_deduced(F f, dim3 grid, dim3 block, size_t smem = 0,
                                                                cudaStream_t stream = 0) {
    return cuda_emu_launch_deduced_cfg<F>{f, grid, block, smem, stream};
}
