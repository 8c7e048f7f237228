// The CUDA runtime API under the CPU emulator (declared in cuda_emu_runtime.h, which says what it models).
#include "cuda_emu.h"

#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#define ARENA_RESERVE (64ull << 30)  // virtual addresses set aside for device memory
#define ALLOC_ALIGN 256              // cudaMalloc's alignment
#define DEFAULT_SMEM (48 * 1024)     // dynamic shared memory a kernel may use without cudaFuncSetAttribute
#define EMU_TOTAL_MEM (80ull << 30)  // what cudaMemGetInfo reports as the device's memory
#define IPC_MAGIC 0x4d415945u        // "MAYE"

namespace {

// ----------------------------------------------------------------------------
// state

using Op = std::function<void()>; // a recorded kernel, copy, memset, event or GEMM

struct Stream {
    unsigned flags = 0;
    bool capturing = false, invalidated = false;
    std::thread::id capture_thread;
    std::vector<Op> captured;
};

struct Graph {
    std::vector<Op> ops;
};

struct Event {
    long long ns = -1; // host time of the last completed record; -1 never recorded
};

struct IpcMapping {
    unsigned char *map;
    size_t map_bytes;
    size_t offset; // of the allocation inside the map
    size_t bytes;
};

struct IpcHandle {
    uint32_t magic;
    int32_t pid, fd;
    uint32_t pad;
    uint64_t offset, bytes;
};

struct Emu {
    std::recursive_mutex mu;
    int fd = -1;                     // the arena's memfd
    unsigned char *base = nullptr;   // ARENA_RESERVE bytes; [0, committed) backed by fd
    size_t committed = 0, used = 0;
    std::map<size_t, size_t> live;   // offset -> bytes of each allocation
    std::map<size_t, size_t> free_;  // offset -> bytes of free holes inside [0, committed)
    std::map<void *, IpcMapping> opened;
    std::set<Stream *> streams;
    std::set<Event *> events;
    std::map<const void *, int> smem_limit;
    int open_depth = 0;              // > 0 while device memory is readable (kernels, copies)
    cudaError_t last_error = cudaSuccess;
    int device = 0;
};

Emu &emu() {
    static Emu *e = new Emu; // never destroyed: atexit handlers of the program may still free device memory
    return *e;
}

long long now_ns() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

// ----------------------------------------------------------------------------
// device memory: host code cannot touch it outside open_device / close_device

size_t page_bytes() {
    static size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return page;
}

// The pages of the allocation at off (need bytes): it ends where its guard page begins.
void protect_alloc(size_t off, size_t need, int prot) {
    size_t start = off / page_bytes() * page_bytes();
    if (mprotect(emu().base + start, off + need - start, prot) != 0) cuda_emu_die("mprotect of device memory failed");
}

// Device memory readable and writable (kernels, copies) or not at all (host code): each live allocation and
// IPC mapping; the guard page after each allocation and every free page stay inaccessible.
void protect(int prot) {
    Emu &e = emu();
    for (auto &a : e.live) protect_alloc(a.first, a.second, prot);
    for (auto &m : e.opened)
        if (mprotect(m.second.map, m.second.map_bytes, prot) != 0) cuda_emu_die("mprotect of an IPC mapping failed");
}

void open_device() {
    if (emu().open_depth++ == 0) protect(PROT_READ | PROT_WRITE);
}

void close_device() {
    if (--emu().open_depth == 0) protect(PROT_NONE);
}

struct DeviceOpen {
    DeviceOpen() { open_device(); }
    ~DeviceOpen() { close_device(); }
};

void (*previous_segv)(int, siginfo_t *, void *) = nullptr;

// Names a fault on device memory (host code touching it, or a kernel past every allocation), then lets the
// emulator's handler report kernel faults.
void on_fault(int sig, siginfo_t *info, void *ctx) {
    Emu &e = emu();
    uintptr_t a = (uintptr_t)info->si_addr, b = (uintptr_t)e.base;
    if (e.base && a >= b && a < b + ARENA_RESERVE) {
        size_t off = a - b;
        char what[200] = "outside every allocation (freed, or never allocated)";
        auto it = e.live.upper_bound(off);
        if (it != e.live.begin()) {
            --it;
            if (off < it->first + it->second)
                snprintf(what, sizeof what, "byte %zu of a %zu-byte cudaMalloc allocation", off - it->first, it->second);
            else if (off < it->first + it->second + page_bytes())
                snprintf(what, sizeof what, "%zu bytes past the end of a %zu-byte cudaMalloc allocation",
                         off - it->first - it->second, it->second);
        }
        if (e.open_depth == 0)
            fprintf(stderr, "cuda_emu: host code touched device memory at %p (%s); backtrace:\n", info->si_addr, what);
        else
            fprintf(stderr, "cuda_emu: device memory access at %p, %s\n", info->si_addr, what);
        void *frames[32];
        int n = backtrace(frames, 32);
        backtrace_symbols_fd(frames, n, 2);
    }
    if (previous_segv) previous_segv(sig, info, ctx);
    signal(sig, SIG_DFL);
    raise(sig);
}

void install_fault_handler() {
    static bool done = false;
    if (done) return;
    done = true;
    cuda_emu_install_fault_handler(); // the emulator's (alternate stack, SIGSEGV and SIGBUS)
    cuda_emu_rt.handler_installed = true;
    struct sigaction old = {};
    sigaction(SIGSEGV, nullptr, &old);
    if (old.sa_flags & SA_SIGINFO) previous_segv = old.sa_sigaction;
    struct sigaction sa = {};
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, nullptr);
}

void arena_init() {
    Emu &e = emu();
    if (e.base) return;
    e.fd = memfd_create("cuda_emu_device_memory", MFD_CLOEXEC);
    if (e.fd < 0) cuda_emu_die("memfd_create failed: %s", strerror(errno));
    void *p = mmap(nullptr, ARENA_RESERVE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) cuda_emu_die("reserving %llu bytes of addresses for device memory failed", ARENA_RESERVE);
    e.base = (unsigned char *)p;
    install_fault_handler();
}

// Backs [committed, want) with the memfd.
bool arena_grow(size_t want) {
    Emu &e = emu();
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    want = (want + page - 1) / page * page;
    if (want > ARENA_RESERVE || ftruncate(e.fd, (off_t)want) != 0) return false;
    void *p = mmap(e.base + e.committed, want - e.committed, PROT_NONE, MAP_SHARED | MAP_FIXED, e.fd,
                   (off_t)e.committed);
    if (p == MAP_FAILED) return false;
    if (want > e.committed) e.free_[e.committed] = want - e.committed;
    e.committed = want;
    return true;
}

void coalesce(std::map<size_t, size_t>::iterator it) {
    Emu &e = emu();
    auto next = std::next(it);
    if (next != e.free_.end() && it->first + it->second == next->first) {
        it->second += next->second;
        e.free_.erase(next);
    }
    if (it != e.free_.begin()) {
        auto prev = std::prev(it);
        if (prev->first + prev->second == it->first) {
            prev->second += it->second;
            e.free_.erase(it);
        }
    }
}

void poison(size_t off, size_t bytes) {
    DeviceOpen o;
    memset(emu().base + off, 0xFF, bytes);
}

// ----------------------------------------------------------------------------
// streams and capture

Stream *stream_of(cudaStream_t s) { return (Stream *)s; }

bool stream_valid(cudaStream_t s) { return !s || emu().streams.count(stream_of(s)); }

// The capture this thread has in progress (ThreadLocal/Global mode), if any.
Stream *thread_capture() {
    for (Stream *st : emu().streams)
        if (st->capturing && st->capture_thread == std::this_thread::get_id()) return st;
    return nullptr;
}

// A call a capture in progress forbids: invalidates it and returns the error a GPU gives.
cudaError_t unsafe_during_capture() {
    Stream *st = thread_capture();
    if (!st) return cudaSuccess;
    st->invalidated = true;
    return cudaErrorStreamCaptureUnsupported;
}

void run_ops(const std::vector<Op> &ops) {
    for (const Op &op : ops) op();
}

// What a runtime call returns; an error also becomes the last error (cudaGetLastError), as in CUDA, so a check
// after the next launch reports an earlier failed call that its caller ignored.
cudaError_t ret(cudaError_t err) {
    if (err != cudaSuccess && err != cudaErrorNotReady) emu().last_error = err;
    return err;
}

} // namespace

// ----------------------------------------------------------------------------
// the launcher's and cuBLAS's entry

cudaError_t cuda_emu_stream_op(cudaStream_t s, bool device_only, std::function<void()> op) {
    Emu &e = emu();
    std::lock_guard<std::recursive_mutex> lock(e.mu);
    if (!stream_valid(s)) return ret(cudaErrorInvalidResourceHandle);
    Stream *st = stream_of(s);
    if (!st) { // the legacy stream synchronises with every blocking stream: a capture there cannot take it
        for (Stream *c : e.streams)
            if (c->capturing && !(c->flags & cudaStreamNonBlocking)) {
                c->invalidated = true;
                return ret(cudaErrorStreamCaptureImplicit);
            }
    }
    if (st && st->capturing) {
        if (st->invalidated) return ret(cudaErrorStreamCaptureInvalidated);
        if (!device_only) {
            st->invalidated = true;
            return ret(cudaErrorStreamCaptureUnsupported);
        }
        st->captured.push_back(std::move(op));
        return cudaSuccess;
    }
    DeviceOpen o;
    op();
    return cudaSuccess;
}

void cuda_emu_set_last_error(cudaError_t err) { ret(err); }

size_t cuda_emu_func_max_smem(const void *fn) {
    Emu &e = emu();
    std::lock_guard<std::recursive_mutex> lock(e.mu);
    auto it = e.smem_limit.find(fn);
    return it == e.smem_limit.end() ? DEFAULT_SMEM : (size_t)it->second;
}

bool cuda_emu_is_device(const void *p, size_t n) {
    Emu &e = emu();
    std::lock_guard<std::recursive_mutex> lock(e.mu);
    uintptr_t a = (uintptr_t)p;
    if (e.base && a >= (uintptr_t)e.base && a < (uintptr_t)e.base + e.committed) {
        size_t off = a - (uintptr_t)e.base;
        auto it = e.live.upper_bound(off);
        if (it == e.live.begin()) return false;
        --it;
        return off + n <= it->first + it->second;
    }
    for (auto &m : e.opened) {
        uintptr_t lo = (uintptr_t)m.second.map + m.second.offset;
        if (a >= lo && a + n <= lo + m.second.bytes) return true;
    }
    return false;
}

long long cuda_emu_globaltimer(void) {
    static long long t = 0;
    return t += 1000000;
}

cudaError_t cuda_emu_func_set_attribute(const void *fn, cudaFuncAttribute attr, int value) {
    Emu &e = emu();
    std::lock_guard<std::recursive_mutex> lock(e.mu);
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return ret(cudaErrorInvalidValue);
    if (value < 0 || value > CUDA_EMU_MAX_DYNAMIC_SMEM) return ret(cudaErrorInvalidValue);
    e.smem_limit[fn] = value > DEFAULT_SMEM ? value : DEFAULT_SMEM;
    return cudaSuccess;
}

// ----------------------------------------------------------------------------
// errors and devices

const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorDeviceUninitialized: return "cudaErrorDeviceUninitialized";
    case cudaErrorMapBufferObjectFailed: return "cudaErrorMapBufferObjectFailed";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorIllegalState: return "cudaErrorIllegalState";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureUnmatched: return "cudaErrorStreamCaptureUnmatched";
    case cudaErrorStreamCaptureImplicit: return "cudaErrorStreamCaptureImplicit";
    case cudaErrorUnknown: return "cudaErrorUnknown";
    }
    return "cudaErrorUnknown";
}

const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorDeviceUninitialized: return "invalid device context";
    case cudaErrorMapBufferObjectFailed: return "mapping of buffer object failed";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorIllegalState: return "the operation cannot be performed in the present state";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureUnmatched: return "capture was not initiated in this stream";
    case cudaErrorStreamCaptureImplicit: return "operation would make the legacy stream depend on a capturing "
                                                "blocking stream";
    case cudaErrorUnknown: return "unknown error";
    }
    return "unknown error";
}

cudaError_t cudaGetLastError(void) {
    cudaError_t e = emu().last_error;
    emu().last_error = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError(void) { return emu().last_error; }

cudaError_t cudaGetDeviceCount(int *n) {
    *n = 1;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
    if (device != 0) return ret(cudaErrorInvalidDevice);
    emu().device = device;
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int *device) {
    *device = emu().device;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device) {
    if (device != 0) return ret(cudaErrorInvalidDevice);
    memset(prop, 0, sizeof *prop);
    snprintf(prop->name, sizeof prop->name, "CPU emulator (H100-shaped)");
    prop->totalGlobalMem = EMU_TOTAL_MEM;
    prop->sharedMemPerBlock = DEFAULT_SMEM;
    prop->sharedMemPerBlockOptin = CUDA_EMU_MAX_DYNAMIC_SMEM;
    prop->sharedMemPerMultiprocessor = 228 * 1024;
    prop->warpSize = 32, prop->maxThreadsPerBlock = 1024, prop->multiProcessorCount = 132;
    prop->major = 9, prop->minor = 0, prop->maxThreadsPerMultiProcessor = 2048, prop->regsPerBlock = 65536;
    prop->l2CacheSize = 50 << 20, prop->memoryBusWidth = 5120, prop->clockRate = 1980000;
    prop->memoryClockRate = 2619000;
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) {
    std::lock_guard<std::recursive_mutex> lock(emu().mu);
    return ret(unsafe_during_capture());
}

// ----------------------------------------------------------------------------
// memory

cudaError_t cudaMalloc(void **p, size_t bytes) {
    Emu &e = emu();
    std::lock_guard<std::recursive_mutex> lock(e.mu);
    *p = nullptr;
    if (cudaError_t err = unsafe_during_capture()) return ret(err);
    arena_init();
    size_t need = (bytes + ALLOC_ALIGN - 1) / ALLOC_ALIGN * ALLOC_ALIGN;
    if (need == 0) need = ALLOC_ALIGN;
    if (e.used + need > EMU_TOTAL_MEM) return ret(cudaErrorMemoryAllocation);
    // whole pages, the allocation at their end, then an inaccessible guard page: an overrun faults
    size_t page = page_bytes(), region = (need + page - 1) / page * page + page;
    auto hole = e.free_.end();
    for (auto it = e.free_.begin(); it != e.free_.end(); ++it)
        if (it->second >= region) {
            hole = it;
            break;
        }
    if (hole == e.free_.end()) {
        size_t tail = 0; // a free hole at the end grows into the new space
        if (!e.free_.empty()) {
            auto last = std::prev(e.free_.end());
            if (last->first + last->second == e.committed) tail = last->second;
        }
        if (!arena_grow(e.committed + region - tail)) return ret(cudaErrorMemoryAllocation);
        coalesce(std::prev(e.free_.end()));
        hole = std::prev(e.free_.end());
        if (hole->second < region) return ret(cudaErrorMemoryAllocation);
    }
    size_t start = hole->first, left = hole->second - region;
    e.free_.erase(hole);
    if (left) e.free_[start + region] = left;
    size_t off = start + region - page - need;
    e.live[off] = need;
    e.used += need;
    if (e.open_depth > 0) protect_alloc(off, need, PROT_READ | PROT_WRITE);
    poison(off, need);
    *p = e.base + off;
    return cudaSuccess;
}

cudaError_t cudaFree(void *p) {
    Emu &e = emu();
    std::lock_guard<std::recursive_mutex> lock(e.mu);
    if (!p) return cudaSuccess;
    if (cudaError_t err = unsafe_during_capture()) return ret(err);
    uintptr_t a = (uintptr_t)p;
    if (!e.base || a < (uintptr_t)e.base || a >= (uintptr_t)e.base + e.committed) return ret(cudaErrorInvalidValue);
    auto it = e.live.find(a - (uintptr_t)e.base);
    if (it == e.live.end()) return ret(cudaErrorInvalidValue); // not the start of a live allocation
    size_t off = it->first, bytes = it->second, page = page_bytes();
    poison(off, bytes); // for IPC mappings of it that other processes keep
    if (e.open_depth > 0) protect_alloc(off, bytes, PROT_NONE); // freed pages stay inaccessible
    e.live.erase(it);
    e.used -= bytes;
    size_t start = off / page * page;
    coalesce(e.free_.emplace(start, off + bytes + page - start).first);
    return cudaSuccess;
}

cudaError_t cudaMallocHost(void **p, size_t bytes) {
    std::lock_guard<std::recursive_mutex> lock(emu().mu);
    *p = nullptr;
    if (cudaError_t err = unsafe_during_capture()) return ret(err);
    if (posix_memalign(p, page_bytes(), bytes ? bytes : 1) != 0) {
        *p = nullptr;
        return ret(cudaErrorMemoryAllocation);
    }
    return cudaSuccess;
}

cudaError_t cudaFreeHost(void *p) {
    std::lock_guard<std::recursive_mutex> lock(emu().mu);
    if (cudaError_t err = unsafe_during_capture()) return ret(err);
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes) {
    std::lock_guard<std::recursive_mutex> lock(emu().mu);
    *free_bytes = EMU_TOTAL_MEM - emu().used;
    *total_bytes = EMU_TOTAL_MEM;
    return cudaSuccess;
}

namespace {

// Checks the device sides of a copy of `rows` rows of `width` bytes; resolves cudaMemcpyDefault.
cudaError_t copy_check(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t rows,
                       cudaMemcpyKind *kind) {
    if (width == 0 || rows == 0) return cudaSuccess;
    size_t dspan = dpitch * (rows - 1) + width, sspan = spitch * (rows - 1) + width;
    bool ddev = cuda_emu_is_device(dst, dspan), sdev = cuda_emu_is_device(src, sspan);
    bool dtouch = cuda_emu_is_device(dst, 1), stouch = cuda_emu_is_device(src, 1);
    if (*kind == cudaMemcpyDefault)
        *kind = dtouch ? (stouch ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                       : (stouch ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
    bool want_ddev = *kind == cudaMemcpyHostToDevice || *kind == cudaMemcpyDeviceToDevice;
    bool want_sdev = *kind == cudaMemcpyDeviceToHost || *kind == cudaMemcpyDeviceToDevice;
    if (*kind > cudaMemcpyDefault) return ret(cudaErrorInvalidMemcpyDirection);
    if (want_ddev ? !ddev : dtouch) return ret(cudaErrorInvalidValue);
    if (want_sdev ? !sdev : stouch) return ret(cudaErrorInvalidValue);
    return cudaSuccess;
}

cudaError_t copy2d(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t height,
                   cudaMemcpyKind kind, cudaStream_t s, bool sync) {
    Emu &e = emu();
    std::lock_guard<std::recursive_mutex> lock(e.mu);
    if (sync) {
        if (cudaError_t err = unsafe_during_capture()) return ret(err);
    }
    if (width > dpitch || width > spitch) return ret(cudaErrorInvalidValue);
    if (cudaError_t err = copy_check(dst, dpitch, src, spitch, width, height, &kind)) return err;
    if (width == 0 || height == 0) return cudaSuccess;
    unsigned char *d = (unsigned char *)dst;
    const unsigned char *sp = (const unsigned char *)src;
    return cuda_emu_stream_op(sync ? nullptr : s, kind == cudaMemcpyDeviceToDevice, [=] {
        for (size_t r = 0; r < height; r++) memmove(d + r * dpitch, sp + r * spitch, width);
    });
}

cudaError_t set2d(void *p, size_t pitch, int value, size_t width, size_t height, cudaStream_t s, bool sync) {
    Emu &e = emu();
    std::lock_guard<std::recursive_mutex> lock(e.mu);
    if (sync) {
        if (cudaError_t err = unsafe_during_capture()) return ret(err);
    }
    if (width == 0 || height == 0) return cudaSuccess;
    if (width > pitch || !cuda_emu_is_device(p, pitch * (height - 1) + width)) return ret(cudaErrorInvalidValue);
    unsigned char *d = (unsigned char *)p;
    return cuda_emu_stream_op(sync ? nullptr : s, true, [=] {
        for (size_t r = 0; r < height; r++) memset(d + r * pitch, value, width);
    });
}

} // namespace

cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind kind) {
    return ret(copy2d(dst, n, src, n, n, 1, kind, nullptr, true));
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind kind, cudaStream_t s) {
    return ret(copy2d(dst, n, src, n, n, 1, kind, s, false));
}

cudaError_t cudaMemcpy2DAsync(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t height,
                              cudaMemcpyKind kind, cudaStream_t s) {
    return ret(copy2d(dst, dpitch, src, spitch, width, height, kind, s, false));
}

cudaError_t cudaMemset(void *p, int value, size_t n) { return ret(set2d(p, n, value, n, 1, nullptr, true)); }

cudaError_t cudaMemsetAsync(void *p, int value, size_t n, cudaStream_t s) {
    return ret(set2d(p, n, value, n, 1, s, false));
}

cudaError_t cudaMemset2DAsync(void *p, size_t pitch, int value, size_t width, size_t height, cudaStream_t s) {
    return ret(set2d(p, pitch, value, width, height, s, false));
}

// ----------------------------------------------------------------------------
// streams, capture and graphs

cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, cudaStreamDefault); }

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
    std::lock_guard<std::recursive_mutex> lock(emu().mu);
    Stream *st = new Stream;
    st->flags = flags;
    emu().streams.insert(st);
    *s = (cudaStream_t)st;
    return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t s) {
    std::lock_guard<std::recursive_mutex> lock(emu().mu);
    if (!s || !emu().streams.count(stream_of(s))) return ret(cudaErrorInvalidResourceHandle);
    emu().streams.erase(stream_of(s));
    delete stream_of(s);
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    std::lock_guard<std::recursive_mutex> lock(emu().mu);
    if (!stream_valid(s)) return ret(cudaErrorInvalidResourceHandle);
    Stream *st = stream_of(s);
    if (st && st->capturing) {
        st->invalidated = true;
        return ret(cudaErrorStreamCaptureUnsupported);
    }
    return ret(unsafe_during_capture());
}

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode) {
    std::lock_guard<std::recursive_mutex> lock(emu().mu);
    if (!s) return ret(cudaErrorStreamCaptureUnsupported); // the legacy stream cannot be captured
    if (!stream_valid(s)) return ret(cudaErrorInvalidResourceHandle);
    Stream *st = stream_of(s);
    if (st->capturing) return ret(cudaErrorIllegalState);
    st->capturing = true, st->invalidated = false;
    st->capture_thread = std::this_thread::get_id();
    st->captured.clear();
    (void)mode;
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *graph) {
    std::lock_guard<std::recursive_mutex> lock(emu().mu);
    *graph = nullptr;
    if (!s || !stream_valid(s)) return ret(cudaErrorInvalidResourceHandle);
    Stream *st = stream_of(s);
    if (!st->capturing) return ret(cudaErrorIllegalState);
    if (st->capture_thread != std::this_thread::get_id()) return ret(cudaErrorStreamCaptureUnmatched);
    st->capturing = false;
    std::vector<Op> ops;
    ops.swap(st->captured);
    if (st->invalidated) return ret(cudaErrorStreamCaptureInvalidated);
    Graph *g = new Graph;
    g->ops = std::move(ops);
    *graph = (cudaGraph_t)g;
    return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus *status) {
    std::lock_guard<std::recursive_mutex> lock(emu().mu);
    if (!stream_valid(s)) return ret(cudaErrorInvalidResourceHandle);
    Stream *st = stream_of(s);
    *status = !st || !st->capturing ? cudaStreamCaptureStatusNone
              : st->invalidated     ? cudaStreamCaptureStatusInvalidated
                                    : cudaStreamCaptureStatusActive;
    return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags) {
    if (!graph) return ret(cudaErrorInvalidValue);
    Graph *copy = new Graph(*(Graph *)graph); // an executable graph outlives the graph it came from
    *exec = (cudaGraphExec_t)copy;
    (void)flags;
    return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s) {
    if (!exec) return ret(cudaErrorInvalidValue);
    const Graph *g = (const Graph *)exec;
    return ret(cuda_emu_stream_op(s, true, [g] { run_ops(g->ops); }));
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
    delete (Graph *)graph;
    return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
    delete (Graph *)exec;
    return cudaSuccess;
}

// ----------------------------------------------------------------------------
// events

cudaError_t cudaEventCreate(cudaEvent_t *ev) {
    std::lock_guard<std::recursive_mutex> lock(emu().mu);
    Event *e = new Event;
    emu().events.insert(e);
    *ev = (cudaEvent_t)e;
    return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t ev) {
    std::lock_guard<std::recursive_mutex> lock(emu().mu);
    if (!emu().events.erase((Event *)ev)) return ret(cudaErrorInvalidResourceHandle);
    delete (Event *)ev;
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t ev, cudaStream_t s) {
    std::lock_guard<std::recursive_mutex> lock(emu().mu);
    if (!emu().events.count((Event *)ev)) return ret(cudaErrorInvalidResourceHandle);
    Event *e = (Event *)ev;
    return ret(cuda_emu_stream_op(s, true, [e] { e->ns = now_ns(); }));
}

cudaError_t cudaEventQuery(cudaEvent_t ev) {
    std::lock_guard<std::recursive_mutex> lock(emu().mu);
    if (!emu().events.count((Event *)ev)) return ret(cudaErrorInvalidResourceHandle);
    return ret(unsafe_during_capture());
}

cudaError_t cudaEventSynchronize(cudaEvent_t ev) { return cudaEventQuery(ev); }

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end) {
    std::lock_guard<std::recursive_mutex> lock(emu().mu);
    Event *a = (Event *)start, *b = (Event *)end;
    if (!emu().events.count(a) || !emu().events.count(b)) return ret(cudaErrorInvalidResourceHandle);
    if (a->ns < 0 || b->ns < 0) return ret(cudaErrorInvalidResourceHandle); // never recorded
    *ms = (float)((b->ns - a->ns) / 1e6);
    return cudaSuccess;
}

// ----------------------------------------------------------------------------
// IPC

cudaError_t cudaIpcGetMemHandle(cudaIpcMemHandle_t *handle, void *p) {
    Emu &e = emu();
    std::lock_guard<std::recursive_mutex> lock(e.mu);
    uintptr_t a = (uintptr_t)p;
    if (!e.base || a < (uintptr_t)e.base || a >= (uintptr_t)e.base + e.committed) return ret(cudaErrorInvalidValue);
    size_t off = a - (uintptr_t)e.base;
    auto it = e.live.upper_bound(off);
    if (it == e.live.begin()) return ret(cudaErrorInvalidValue);
    --it;
    if (off >= it->first + it->second) return ret(cudaErrorInvalidValue);
    IpcHandle h = {IPC_MAGIC, (int32_t)getpid(), e.fd, 0, it->first, it->second}; // the whole allocation, as CUDA
    memset(handle, 0, sizeof *handle);
    memcpy(handle->reserved, &h, sizeof h);
    return cudaSuccess;
}

cudaError_t cudaIpcOpenMemHandle(void **p, cudaIpcMemHandle_t handle, unsigned flags) {
    Emu &e = emu();
    std::lock_guard<std::recursive_mutex> lock(e.mu);
    *p = nullptr;
    IpcHandle h;
    memcpy(&h, handle.reserved, sizeof h);
    if (h.magic != IPC_MAGIC || h.bytes == 0) return ret(cudaErrorInvalidValue);
    if (h.pid == (int32_t)getpid()) return ret(cudaErrorDeviceUninitialized); // CUDA refuses a handle of this process
    arena_init();
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)h.pid, (int)h.fd);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return ret(cudaErrorMapBufferObjectFailed);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t start = h.offset / page * page, end = (h.offset + h.bytes + page - 1) / page * page;
    int prot = e.open_depth > 0 ? PROT_READ | PROT_WRITE : PROT_NONE;
    void *m = mmap(nullptr, end - start, prot, MAP_SHARED, fd, (off_t)start);
    close(fd);
    if (m == MAP_FAILED) return ret(cudaErrorMapBufferObjectFailed);
    IpcMapping im = {(unsigned char *)m, end - start, h.offset - start, h.bytes};
    *p = im.map + im.offset;
    e.opened[*p] = im;
    (void)flags;
    return cudaSuccess;
}

cudaError_t cudaIpcCloseMemHandle(void *p) {
    Emu &e = emu();
    std::lock_guard<std::recursive_mutex> lock(e.mu);
    auto it = e.opened.find(p);
    if (it == e.opened.end()) return ret(cudaErrorInvalidValue);
    munmap(it->second.map, it->second.map_bytes);
    e.opened.erase(it);
    return cudaSuccess;
}
