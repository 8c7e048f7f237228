// CPU emulator of the CUDA execution model, so that kernel headers of lib/kernels/cuda compile unchanged with
// g++ (-DMAYE_CUDA_EMU -Itests/cuda_emu/include) and run on the CPU with CUDA semantics. tests/cuda_emu/include
// holds the cuda_runtime.h / cuda_bf16.h that route here and cuda_emu_mma.h (the tensor-core instructions).
//
// Model: cuda_emu_launch runs the blocks of a grid one after another; the threads of a block are cooperative
// fibers (own stacks, switched by a few instructions on x86-64, by ucontext elsewhere) that run until they
// reach __syncthreads, a warp collective (shuffles, __syncwarp, mma, ldmatrix) or the end of the kernel. A
// barrier releases when every thread of the block (collective: every lane of the warp) waits at the same call
// site. The schedule is deterministic and adversarial: one warp runs up to its next __syncthreads before the
// next warp starts, warps and lanes in ascending order in even blocks, descending in odd ones (x + y + z),
// so a missing barrier shows up as stale or poisoned shared memory. Misuse aborts with a message naming the
// block, the threads and the call sites:
//   - __syncthreads reached by some threads while others have exited, or at different call sites;
//   - a warp collective that not all 32 lanes reach (partial warp, exited lanes, lanes at a block barrier),
//     lanes at different collectives, or a mask other than 0xffffffff;
//   - launch limits (block size, grid size, 227 KiB of dynamic shared memory per block).
// The dynamic shared memory is filled with 0xFF bytes (NaN in fp32 and bf16) before every block and ends at an
// inaccessible page, so reads of unwritten shared memory show up as NaN and overruns as a reported fault.
// Function-static __shared__ variables are the block's static shared memory (blocks run one at a time); those
// of non-template kernels sit in one linker section that is poisoned the same way before every block (g++
// ignores the section of a template's statics: they are not poisoned and keep values between blocks). No
// timing, no memory-model races (a thread sees every store other threads made before it resumed), no
// concurrency between blocks, no preemption (a spin-wait on another thread hangs). A cp.async poisons its
// destination when issued and lands at the cp.async.wait that retires its group (the latest moment the PTX
// allows), so a read before that wait, or a refill of a buffer other warps still read, shows up as NaN.
#pragma once
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__x86_64__) && !defined(CUDA_EMU_UCONTEXT)
#define CUDA_EMU_ASM_SWITCH 1
#else
#include <ucontext.h>
#endif

// ----------------------------------------------------------------------------
// language extensions

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// Function-static __shared__ variables land in one section, which is poisoned like the dynamic shared memory
// before every block (cuda_emu_static_smem_poison); g++ drops the attribute in templates (comdat statics).
#define __shared__ static __attribute__((section("cuda_emu_static_smem")))

// Dynamic shared memory above this fails the launch (what an sm_90 block may opt into).
#define CUDA_EMU_MAX_DYNAMIC_SMEM (227 * 1024)
// Stack of every emulated thread (mapped lazily; an overflow hits a guard page and is reported).
#ifndef CUDA_EMU_STACK_BYTES
#define CUDA_EMU_STACK_BYTES (256 * 1024)
#endif

// ----------------------------------------------------------------------------
// vector types and built-in variables

struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};
struct __align__(8) float2 {
    float x, y;
};
struct __align__(16) float4 {
    float x, y, z, w;
};
struct __align__(8) uint2 {
    unsigned x, y;
};
struct __align__(16) uint4 {
    unsigned x, y, z, w;
};
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }

// Set by the scheduler whenever it resumes a thread.
inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
constexpr int warpSize = 32;

// ----------------------------------------------------------------------------
// bf16

struct __align__(2) __nv_bfloat16 {
    unsigned short __x;
    __nv_bfloat16() = default;
    __nv_bfloat16(float f);
    operator float() const;
};
struct __align__(4) __nv_bfloat162 {
    __nv_bfloat16 x, y; // x: the lower 16 bits
};

// Round to nearest even; NaN becomes the canonical NaN 0x7fff (as cvt.rn.bf16.f32), infinities stay.
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    __nv_bfloat16 r;
    if ((u & 0x7fffffffu) > 0x7f800000u) r.__x = 0x7fff;
    else r.__x = (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    return r;
}
inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
inline float __bfloat162float(__nv_bfloat16 h) {
    uint32_t u = (uint32_t)h.__x << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) { return {__float2bfloat16_rn(lo), __float2bfloat16_rn(hi)}; }
inline float __low2float(__nv_bfloat162 v) { return __bfloat162float(v.x); }
inline float __high2float(__nv_bfloat162 v) { return __bfloat162float(v.y); }
inline __nv_bfloat16::__nv_bfloat16(float f) : __x(__float2bfloat16_rn(f).__x) {}
inline __nv_bfloat16::operator float() const { return __bfloat162float(*this); }

// ----------------------------------------------------------------------------
// device functions: integer min/max, atomics (blocks run one at a time and threads switch only at barriers,
// so a plain read-modify-write is atomic), address conversion

#define CUDA_EMU_MINMAX(T)                                                                                 \
    inline T min(T a, T b) { return a < b ? a : b; }                                                       \
    inline T max(T a, T b) { return a > b ? a : b; }
CUDA_EMU_MINMAX(int)
CUDA_EMU_MINMAX(unsigned)
CUDA_EMU_MINMAX(long)
CUDA_EMU_MINMAX(unsigned long)
CUDA_EMU_MINMAX(long long)
CUDA_EMU_MINMAX(unsigned long long)
CUDA_EMU_MINMAX(float)
CUDA_EMU_MINMAX(double)
#undef CUDA_EMU_MINMAX

template <typename T> inline T cuda_emu_atomic_add(T *p, T v) {
    T old = *p;
    *p = old + v;
    return old;
}
inline float atomicAdd(float *p, float v) { return cuda_emu_atomic_add(p, v); }
inline double atomicAdd(double *p, double v) { return cuda_emu_atomic_add(p, v); }
inline int atomicAdd(int *p, int v) { return cuda_emu_atomic_add(p, v); }
inline unsigned atomicAdd(unsigned *p, unsigned v) { return cuda_emu_atomic_add(p, v); }
inline unsigned long long atomicAdd(unsigned long long *p, unsigned long long v) { return cuda_emu_atomic_add(p, v); }

inline size_t __cvta_generic_to_shared(const void *p) { return (size_t)(uintptr_t)p; }

// Bit counts and the high word of a 32 x 32-bit product.
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __ffs(int x) { return __builtin_ffs(x); } // 1 + index of the lowest set bit; 0 when x == 0
inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }

// ----------------------------------------------------------------------------
// runtime state

// Where a thread waits: the call site of the barrier or collective. The device functions take one as a
// defaulted last argument, cuda_emu_site("name"), whose file and line are then those of their caller.
struct cuda_emu_site {
    const char *what, *file;
    int line;
    cuda_emu_site(const char *what_, const char *file_ = __builtin_FILE(), int line_ = __builtin_LINE())
        : what(what_), file(file_), line(line_) {}
};

// A warp collective: every lane passes its own op (on its stack); once all 32 lanes wait at the same site
// with the same resolve, the scheduler calls resolve with their ops, which reads the inputs and writes the
// results of every lane.
typedef void (*cuda_emu_resolve_fn)(void *const ops[32]);

enum cuda_emu_state { CUDA_EMU_READY, CUDA_EMU_AT_BLOCK, CUDA_EMU_AT_WARP, CUDA_EMU_EXITED };

struct cuda_emu_copy { // one cp.async of 16 bytes; valid = false writes zeros
    void *dst;
    const void *src;
    bool valid;
};

struct cuda_emu_thread {
#ifdef CUDA_EMU_ASM_SWITCH
    void *sp; // saved stack pointer while suspended
#else
    ucontext_t uc;
#endif
    unsigned char *map; // stack mapping; its lowest page is the guard
    uint3 tid;
    cuda_emu_state state;
    cuda_emu_site site{"nothing"}; // where it waits
    cuda_emu_resolve_fn resolve;
    void *op;
    std::vector<cuda_emu_copy> copies; // issued cp.async copies not yet retired, in issue order
    std::vector<size_t> group_ends;    // committed groups, oldest first: end index into copies
};

struct cuda_emu_runtime {
    std::vector<std::unique_ptr<cuda_emu_thread>> threads; // grows to the largest block seen
    int nthreads = 0, cur = -1;
#ifdef CUDA_EMU_ASM_SWITCH
    void *sched_sp = nullptr;
#else
    ucontext_t sched_uc;
#endif
    void (*entry)(void *) = nullptr; // runs the kernel with its arguments
    void *entry_arg = nullptr;
    unsigned char *smem_map = nullptr, *smem = nullptr; // smem: the block's dynamic shared memory
    size_t smem_map_bytes = 0, smem_bytes = 0;
    bool in_launch = false, handler_installed = false;
};
inline cuda_emu_runtime cuda_emu_rt;

[[noreturn]] __attribute__((format(printf, 1, 2))) inline void cuda_emu_die(const char *fmt, ...) {
    fflush(stdout);
    fprintf(stderr, "cuda_emu: ");
    if (cuda_emu_rt.in_launch)
        fprintf(stderr, "block (%u,%u,%u) of grid (%u,%u,%u): ", blockIdx.x, blockIdx.y, blockIdx.z, gridDim.x,
                gridDim.y, gridDim.z);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

inline cuda_emu_thread &cuda_emu_self() {
    if (!cuda_emu_rt.in_launch || cuda_emu_rt.cur < 0)
        cuda_emu_die("a device function that needs a thread was called outside a kernel launch");
    return *cuda_emu_rt.threads[cuda_emu_rt.cur];
}

// The dynamic shared memory of the running block (DYNAMIC_SMEM in common.cuh).
inline unsigned char *cuda_emu_dynamic_smem() {
    cuda_emu_self();
    return cuda_emu_rt.smem;
}

// ----------------------------------------------------------------------------
// context switch

#ifdef CUDA_EMU_ASM_SWITCH
// Saves the callee-saved registers on the current stack and its pointer in *save_sp, then continues on the
// stack load_sp (saved the same way, or prepared by cuda_emu_thread_reset) and returns there.
__attribute__((naked, noinline)) inline void cuda_emu_switch(void **save_sp, void *load_sp) {
    __asm__("pushq %rbp\n\t"
            "pushq %rbx\n\t"
            "pushq %r12\n\t"
            "pushq %r13\n\t"
            "pushq %r14\n\t"
            "pushq %r15\n\t"
            "movq %rsp, (%rdi)\n\t"
            "movq %rsi, %rsp\n\t"
            "popq %r15\n\t"
            "popq %r14\n\t"
            "popq %r13\n\t"
            "popq %r12\n\t"
            "popq %rbx\n\t"
            "popq %rbp\n\t"
            "ret\n\t");
}
#endif

// Between thread t and the scheduler, either way. The empty asm statements make the compiler store what was
// written before the switch and reload what other threads may have changed meanwhile (shared memory, the
// collective's results in the thread's locals).
inline void cuda_emu_swap(cuda_emu_thread &t, bool into_thread) {
    cuda_emu_runtime &rt = cuda_emu_rt;
    __asm__ __volatile__("" ::: "memory");
#ifdef CUDA_EMU_ASM_SWITCH
    if (into_thread) cuda_emu_switch(&rt.sched_sp, t.sp);
    else cuda_emu_switch(&t.sp, rt.sched_sp);
#else
    if (into_thread) swapcontext(&rt.sched_uc, &t.uc);
    else swapcontext(&t.uc, &rt.sched_uc);
#endif
    __asm__ __volatile__("" ::: "memory");
}

// From a thread back to the scheduler.
inline void cuda_emu_yield(cuda_emu_thread &t) { cuda_emu_swap(t, false); }

// From the scheduler into thread i until it yields.
inline void cuda_emu_resume(int i) {
    cuda_emu_runtime &rt = cuda_emu_rt;
    cuda_emu_thread &t = *rt.threads[i];
    rt.cur = i;
    threadIdx = t.tid;
    cuda_emu_swap(t, true);
    rt.cur = -1;
}

// ----------------------------------------------------------------------------
// cp.async bookkeeping

inline void cuda_emu_copy_run(const cuda_emu_copy &c) {
    if (c.valid) memcpy(c.dst, c.src, 16);
    else memset(c.dst, 0, 16);
}

// Performs the copies of all but the newest `keep` committed groups (all issued copies when keep < 0).
inline void cuda_emu_copies_retire(cuda_emu_thread &t, int keep) {
    size_t end = t.copies.size(), groups = t.group_ends.size(), drop = groups;
    if (keep >= 0) {
        if (groups <= (size_t)keep) return;
        drop = groups - (size_t)keep;
        end = t.group_ends[drop - 1];
    }
    for (size_t i = 0; i < end; i++) cuda_emu_copy_run(t.copies[i]);
    t.copies.erase(t.copies.begin(), t.copies.begin() + (ptrdiff_t)end);
    t.group_ends.erase(t.group_ends.begin(), t.group_ends.begin() + (ptrdiff_t)drop);
    for (size_t &e : t.group_ends) e -= end;
}

// ----------------------------------------------------------------------------
// threads

// First code a thread runs (entered by the first switch to it): the kernel, then the exit.
inline void cuda_emu_thread_main() {
    cuda_emu_runtime &rt = cuda_emu_rt;
    rt.entry(rt.entry_arg);
    cuda_emu_thread &t = cuda_emu_self();
    cuda_emu_copies_retire(t, -1); // copies in flight at exit still land
    t.state = CUDA_EMU_EXITED;
    cuda_emu_yield(t);
    cuda_emu_die("an exited thread was resumed");
}

inline void cuda_emu_thread_reset(cuda_emu_thread &t, uint3 tid) {
    t.tid = tid;
    t.state = CUDA_EMU_READY;
    t.resolve = nullptr;
    t.op = nullptr;
    t.copies.clear();
    t.group_ends.clear();
#ifdef CUDA_EMU_ASM_SWITCH
    // what cuda_emu_switch pops: six registers, then the return address (the entry); above it a zero return
    // address for the entry itself, which leaves the stack aligned as after a call
    uint64_t *sp = reinterpret_cast<uint64_t *>((uintptr_t)(t.map + CUDA_EMU_STACK_BYTES) & ~(uintptr_t)15);
    *--sp = 0;
    *--sp = (uint64_t)(uintptr_t)&cuda_emu_thread_main;
    for (int i = 0; i < 6; i++) *--sp = 0;
    t.sp = sp;
#else
    if (getcontext(&t.uc) != 0) cuda_emu_die("getcontext failed");
    t.uc.uc_stack.ss_sp = t.map;
    t.uc.uc_stack.ss_size = CUDA_EMU_STACK_BYTES;
    t.uc.uc_link = nullptr;
    makecontext(&t.uc, cuda_emu_thread_main, 0);
#endif
}

inline unsigned char *cuda_emu_map(size_t bytes, size_t guard_offset) {
    void *p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) cuda_emu_die("mmap of %zu bytes failed", bytes);
    if (mprotect((unsigned char *)p + guard_offset, (size_t)sysconf(_SC_PAGESIZE), PROT_NONE) != 0)
        cuda_emu_die("mprotect of a guard page failed");
    return (unsigned char *)p;
}

// Describes a fault address: past the end of the dynamic shared memory, or a thread's stack guard.
inline void cuda_emu_on_fault(int sig, siginfo_t *info, void *) {
    cuda_emu_runtime &rt = cuda_emu_rt;
    uintptr_t a = (uintptr_t)info->si_addr, page = (uintptr_t)sysconf(_SC_PAGESIZE);
    char where[160] = "";
    if (rt.smem && a >= (uintptr_t)(rt.smem + rt.smem_bytes) && a < (uintptr_t)(rt.smem_map + rt.smem_map_bytes))
        snprintf(where, sizeof where, ": %zu bytes past the end of the %zu bytes of dynamic shared memory",
                 (size_t)(a - (uintptr_t)rt.smem - rt.smem_bytes), rt.smem_bytes);
    for (size_t i = 0; i < rt.threads.size(); i++)
        if (a >= (uintptr_t)rt.threads[i]->map && a < (uintptr_t)rt.threads[i]->map + page)
            snprintf(where, sizeof where, ": stack overflow of thread %zu (raise CUDA_EMU_STACK_BYTES)", i);
    if (sig == SIGSEGV && info->si_code == SI_KERNEL) // x86-64 #GP: no address
        snprintf(where, sizeof where, " (general protection: a 16-byte vector access at a misaligned address?)");
    if (rt.in_launch && rt.cur >= 0)
        fprintf(stderr, "cuda_emu: block (%u,%u,%u) thread (%u,%u,%u): %s at address %p%s\n", blockIdx.x, blockIdx.y,
                blockIdx.z, threadIdx.x, threadIdx.y, threadIdx.z, sig == SIGBUS ? "bus error" : "segmentation fault",
                info->si_addr, where);
    signal(sig, SIG_DFL);
    raise(sig);
}

inline void cuda_emu_install_fault_handler() {
    static unsigned char alt[64 * 1024];
    stack_t ss = {};
    ss.ss_sp = alt;
    ss.ss_size = sizeof alt;
    sigaltstack(&ss, nullptr);
    struct sigaction sa = {};
    sa.sa_sigaction = cuda_emu_on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, nullptr);
    sigaction(SIGBUS, &sa, nullptr);
}

// ----------------------------------------------------------------------------
// barriers and warp collectives

inline int cuda_emu_linear(uint3 t) { return (int)(t.x + blockDim.x * (t.y + blockDim.y * t.z)); }

inline bool cuda_emu_same_site(const cuda_emu_site &a, const cuda_emu_site &b) {
    return a.line == b.line && strcmp(a.file, b.file) == 0 && strcmp(a.what, b.what) == 0;
}

inline const char *cuda_emu_describe(const cuda_emu_thread &t, char *buf, size_t n) {
    if (t.state == CUDA_EMU_EXITED) snprintf(buf, n, "has exited");
    else snprintf(buf, n, "waits at %s (%s:%d)", t.site.what, t.site.file, t.site.line);
    return buf;
}

// Waits until every thread of the block reaches __syncthreads.
inline void __syncthreads(cuda_emu_site site = cuda_emu_site("__syncthreads")) {
    cuda_emu_thread &t = cuda_emu_self();
    t.site = site;
    t.state = CUDA_EMU_AT_BLOCK;
    cuda_emu_yield(t);
}

// Waits until all 32 lanes of the warp reach the same collective; `resolve` then fills every lane's op.
inline void cuda_emu_warp_collective(const cuda_emu_site &site, cuda_emu_resolve_fn resolve, void *op) {
    cuda_emu_thread &t = cuda_emu_self();
    t.site = site;
    t.resolve = resolve;
    t.op = op;
    t.state = CUDA_EMU_AT_WARP;
    cuda_emu_yield(t);
}

inline void cuda_emu_check_mask(unsigned mask, const cuda_emu_site &site) {
    if (mask != 0xffffffffu)
        cuda_emu_die("thread (%u,%u,%u): %s (%s:%d) with member mask 0x%08x: the emulator runs only whole-warp "
                     "collectives (mask 0xffffffff)",
                     threadIdx.x, threadIdx.y, threadIdx.z, site.what, site.file, site.line, mask);
}

// Resolves the collective of warp w when its lanes wait at one; returns whether it did. Aborts when only some
// lanes wait at a collective, or lanes wait at different ones.
inline bool cuda_emu_warp_step(int w) {
    cuda_emu_runtime &rt = cuda_emu_rt;
    int first = 32 * w, n = min(32, rt.nthreads - first), waiting = -1;
    for (int l = 0; l < n; l++)
        if (rt.threads[first + l]->state == CUDA_EMU_AT_WARP) waiting = l;
    if (waiting < 0) return false;
    const cuda_emu_thread &ref = *rt.threads[first + waiting];
    char buf[256];
    if (n < 32)
        cuda_emu_die("%s (%s:%d) in warp %d, which has only %d threads (block size %d is not a multiple of 32)",
                     ref.site.what, ref.site.file, ref.site.line, w, n, rt.nthreads);
    void *ops[32];
    for (int l = 0; l < 32; l++) {
        const cuda_emu_thread &t = *rt.threads[first + l];
        if (t.state != CUDA_EMU_AT_WARP || t.resolve != ref.resolve || !cuda_emu_same_site(t.site, ref.site))
            cuda_emu_die("warp %d: lane %d waits at %s (%s:%d) but lane %d %s: a warp collective needs all 32 lanes "
                         "at the same call",
                         w, waiting, ref.site.what, ref.site.file, ref.site.line, l,
                         cuda_emu_describe(t, buf, sizeof buf));
        ops[l] = t.op;
    }
    ref.resolve(ops);
    for (int l = 0; l < 32; l++) rt.threads[first + l]->state = CUDA_EMU_READY;
    return true;
}

// Runs the threads of the current block to completion. Each warp runs as far as it can (through its warp
// collectives, up to a __syncthreads or its exit) before the next one starts, in ascending order of warps
// and lanes, or descending when `reverse`: the largest skew between warps that the barriers allow, so a
// missing barrier lets one warp overwrite or read shared memory before another is done with it.
inline void cuda_emu_run_block(bool reverse) {
    cuda_emu_runtime &rt = cuda_emu_rt;
    int n = rt.nthreads, nwarps = (n + 31) / 32;
    for (int i = 0; i < n; i++) {
        unsigned x = (unsigned)i % blockDim.x, y = (unsigned)i / blockDim.x % blockDim.y;
        unsigned z = (unsigned)i / (blockDim.x * blockDim.y);
        cuda_emu_thread_reset(*rt.threads[i], uint3{x, y, z});
    }
    for (;;) {
        for (int k = 0; k < nwarps; k++) {
            int w = reverse ? nwarps - 1 - k : k, lanes = min(32, n - 32 * w);
            do {
                for (int l = 0; l < lanes; l++) {
                    int i = 32 * w + (reverse ? lanes - 1 - l : l);
                    if (rt.threads[i]->state == CUDA_EMU_READY) cuda_emu_resume(i);
                }
            } while (cuda_emu_warp_step(w));
        }
        // every thread has exited or waits at __syncthreads
        int waiting = -1;
        for (int i = 0; i < n && waiting < 0; i++)
            if (rt.threads[i]->state != CUDA_EMU_EXITED) waiting = i;
        if (waiting < 0) return;
        const cuda_emu_thread &ref = *rt.threads[waiting];
        char buf[256];
        for (int i = 0; i < n; i++) {
            const cuda_emu_thread &t = *rt.threads[i];
            if (t.state != CUDA_EMU_AT_BLOCK || !cuda_emu_same_site(t.site, ref.site)) {
                uint3 a = ref.tid, b = t.tid;
                cuda_emu_die("thread (%u,%u,%u) waits at %s (%s:%d) but thread (%u,%u,%u) %s: deadlock (a barrier needs "
                             "every thread of the block at the same __syncthreads)",
                             a.x, a.y, a.z, ref.site.what, ref.site.file, ref.site.line, b.x, b.y, b.z,
                             cuda_emu_describe(t, buf, sizeof buf));
            }
        }
        for (int i = 0; i < n; i++) rt.threads[i]->state = CUDA_EMU_READY;
    }
}

// ----------------------------------------------------------------------------
// shuffles and __syncwarp

template <typename T> struct cuda_emu_shfl_op {
    T in, out;
    int src; // lane whose `in` this lane receives
};

template <typename T> inline void cuda_emu_shfl_resolve(void *const ops[32]) {
    for (int l = 0; l < 32; l++) {
        auto *op = static_cast<cuda_emu_shfl_op<T> *>(ops[l]);
        op->out = static_cast<cuda_emu_shfl_op<T> *>(ops[op->src])->in;
    }
}

enum cuda_emu_shfl_mode { CUDA_EMU_SHFL_IDX, CUDA_EMU_SHFL_UP, CUDA_EMU_SHFL_DOWN, CUDA_EMU_SHFL_XOR };

// The source lane of shfl.sync (PTX): lanes form segments of `width`; a source outside the lane's segment
// (above it for down/xor, below it for up) gives the lane its own value.
inline int cuda_emu_shfl_src(cuda_emu_shfl_mode mode, int lane, int b, int width, const cuda_emu_site &site) {
    if (width < 1 || width > 32 || (width & (width - 1)))
        cuda_emu_die("thread (%u,%u,%u): %s (%s:%d) with width %d: must be a power of 2 up to 32", threadIdx.x,
                     threadIdx.y, threadIdx.z, site.what, site.file, site.line, width);
    int lo = lane & ~(width - 1), hi = lo + width - 1, j = lane;
    switch (mode) {
    case CUDA_EMU_SHFL_IDX: j = lo | (b & (width - 1)); break;
    case CUDA_EMU_SHFL_UP: j = lane - b; break;
    case CUDA_EMU_SHFL_DOWN: j = lane + b; break;
    case CUDA_EMU_SHFL_XOR: j = lane ^ b; break;
    }
    if (mode == CUDA_EMU_SHFL_UP ? j < lo : j > hi) j = lane;
    return j;
}

template <typename T>
inline T cuda_emu_shfl(cuda_emu_shfl_mode mode, unsigned mask, T var, int b, int width, const cuda_emu_site &site) {
    static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 8, "shuffles move values of up to 8 bytes");
    cuda_emu_check_mask(mask, site);
    cuda_emu_shfl_op<T> op;
    op.in = var;
    op.src = cuda_emu_shfl_src(mode, cuda_emu_linear(threadIdx) % 32, b, width, site);
    cuda_emu_warp_collective(site, cuda_emu_shfl_resolve<T>, &op);
    return op.out;
}

template <typename T>
inline T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize,
                     cuda_emu_site site = cuda_emu_site("__shfl_sync")) {
    return cuda_emu_shfl(CUDA_EMU_SHFL_IDX, mask, var, src_lane, width, site);
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                        cuda_emu_site site = cuda_emu_site("__shfl_up_sync")) {
    return cuda_emu_shfl(CUDA_EMU_SHFL_UP, mask, var, (int)delta, width, site);
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                          cuda_emu_site site = cuda_emu_site("__shfl_down_sync")) {
    return cuda_emu_shfl(CUDA_EMU_SHFL_DOWN, mask, var, (int)delta, width, site);
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize,
                         cuda_emu_site site = cuda_emu_site("__shfl_xor_sync")) {
    return cuda_emu_shfl(CUDA_EMU_SHFL_XOR, mask, var, lane_mask, width, site);
}

// __match_any_sync: each lane gets the mask of the lanes whose value has the same bits as its own.
struct cuda_emu_match_op {
    uint64_t bits;
    unsigned out;
};

inline void cuda_emu_match_any_resolve(void *const ops[32]) {
    for (int l = 0; l < 32; l++) {
        auto *op = static_cast<cuda_emu_match_op *>(ops[l]);
        op->out = 0;
        for (int j = 0; j < 32; j++)
            if (static_cast<cuda_emu_match_op *>(ops[j])->bits == op->bits) op->out |= 1u << j;
    }
}

template <typename T>
inline unsigned __match_any_sync(unsigned mask, T value, cuda_emu_site site = cuda_emu_site("__match_any_sync")) {
    static_assert(std::is_trivially_copyable<T>::value && (sizeof(T) == 4 || sizeof(T) == 8),
                  "__match_any_sync compares 32- or 64-bit values");
    cuda_emu_check_mask(mask, site);
    cuda_emu_match_op op = {0, 0};
    memcpy(&op.bits, &value, sizeof(T));
    cuda_emu_warp_collective(site, cuda_emu_match_any_resolve, &op);
    return op.out;
}

inline void cuda_emu_nothing_to_resolve(void *const ops[32]) { (void)ops; }

inline void __syncwarp(unsigned mask = 0xffffffffu, cuda_emu_site site = cuda_emu_site("__syncwarp")) {
    cuda_emu_check_mask(mask, site);
    cuda_emu_warp_collective(site, cuda_emu_nothing_to_resolve, nullptr);
}

// ----------------------------------------------------------------------------
// launch

// Checks the launch against the hardware limits, sizes the threads and the shared memory.
inline void cuda_emu_launch_begin(dim3 grid, dim3 block, size_t smem_bytes) {
    cuda_emu_runtime &rt = cuda_emu_rt;
    if (rt.in_launch) cuda_emu_die("cuda_emu_launch called from inside a kernel");
    unsigned long long nthreads = (unsigned long long)block.x * block.y * block.z;
    if (nthreads < 1 || nthreads > 1024 || block.z > 64)
        cuda_emu_die("launch with block (%u,%u,%u): 1 to 1024 threads, z at most 64", block.x, block.y, block.z);
    if (grid.x < 1 || grid.y < 1 || grid.z < 1 || grid.y > 65535 || grid.z > 65535)
        cuda_emu_die("launch with grid (%u,%u,%u): every dimension at least 1, y and z at most 65535", grid.x, grid.y,
                     grid.z);
    if (smem_bytes > CUDA_EMU_MAX_DYNAMIC_SMEM)
        cuda_emu_die("launch with %zu bytes of dynamic shared memory: a block may have at most %d", smem_bytes,
                     CUDA_EMU_MAX_DYNAMIC_SMEM);
    if (!rt.handler_installed) cuda_emu_install_fault_handler(), rt.handler_installed = true;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    while (rt.threads.size() < nthreads) {
        auto t = std::make_unique<cuda_emu_thread>();
        t->map = cuda_emu_map(CUDA_EMU_STACK_BYTES, 0);
        rt.threads.push_back(std::move(t));
    }
    rt.nthreads = (int)nthreads;
    // the shared memory ends (rounded up to 16 bytes) where the guard page begins
    size_t rounded = (smem_bytes + 15) & ~(size_t)15, need = (rounded + page - 1) / page * page + page;
    if (need != rt.smem_map_bytes) {
        if (rt.smem_map) munmap(rt.smem_map, rt.smem_map_bytes);
        rt.smem_map = cuda_emu_map(need, need - page);
        rt.smem_map_bytes = need;
    }
    rt.smem = rt.smem_map + need - page - rounded;
    rt.smem_bytes = smem_bytes;
    gridDim = grid;
    blockDim = block;
    rt.in_launch = true;
}

// The linker's bounds of the section of the __shared__ variables (null when a program declares none).
extern "C" unsigned char __start_cuda_emu_static_smem[] __attribute__((weak));
extern "C" unsigned char __stop_cuda_emu_static_smem[] __attribute__((weak));

// Fills every function-static __shared__ variable (of every kernel: blocks run one at a time) with 0xFF bytes.
inline void cuda_emu_static_smem_poison() {
    if (__start_cuda_emu_static_smem)
        memset(__start_cuda_emu_static_smem, 0xFF, (size_t)(__stop_cuda_emu_static_smem - __start_cuda_emu_static_smem));
}

inline void cuda_emu_launch_run() {
    cuda_emu_runtime &rt = cuda_emu_rt;
    for (unsigned z = 0; z < gridDim.z; z++)
        for (unsigned y = 0; y < gridDim.y; y++)
            for (unsigned x = 0; x < gridDim.x; x++) {
                blockIdx = uint3{x, y, z};
                memset(rt.smem, 0xFF, (rt.smem_bytes + 15) & ~(size_t)15);
                cuda_emu_static_smem_poison();
                cuda_emu_run_block((x + y + z) & 1);
            }
    rt.in_launch = false;
}

// Runs the whole grid with f(params...) as each thread's kernel before returning; each thread calls f with its
// own copies of the tuple's elements (as kernel parameters).
template <typename F, typename Tuple>
void cuda_emu_launch_callable(F f, dim3 grid, dim3 block, size_t smem_bytes, Tuple &params) {
    struct call {
        F *f;
        Tuple *params;
        static void run(void *self) {
            call *c = static_cast<call *>(self);
            std::apply([c](auto &...p) { (*c->f)(p...); }, *c->params);
        }
    };
    call c{&f, &params};
    cuda_emu_launch_begin(grid, block, smem_bytes);
    cuda_emu_rt.entry = call::run;
    cuda_emu_rt.entry_arg = &c;
    cuda_emu_launch_run();
}

// kernel<<<grid, block, smem_bytes>>>(args...): runs the whole grid before returning. The arguments are
// converted to the kernel's parameter types once, and every thread gets its own copy (as kernel parameters).
template <typename... P, typename... A>
void cuda_emu_launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem_bytes, A &&...args) {
    static_assert(sizeof...(P) == sizeof...(A), "cuda_emu_launch: wrong number of kernel arguments");
    std::tuple<std::decay_t<P>...> params(std::forward<A>(args)...);
    cuda_emu_launch_callable(kernel, grid, block, smem_bytes, params);
}

// the runtime API (cuda_emu_runtime.cc): memory, streams, graphs, events, IPC, and the <<<>>> launcher
#include "cuda_emu_runtime.h"
