// The CPU emulator itself (tests/cuda_emu/cuda_emu.h): every (block, thread) of a 3-D launch runs once with
// its indices, __syncthreads orders shared-memory traffic, shuffles follow the PTX lane rules (segments of
// width, own value out of range), dynamic shared memory starts poisoned, cp.async copies are undefined in
// flight and land at the wait that retires their group, a missing barrier between warps shows up in both
// warp orders, bf16 rounding is round-to-nearest-even, __match_any_sync and the bit intrinsics, the CUB
// block reduce/scan stand-ins, the poisoning of a non-template kernel's static shared memory, and misuse
// aborts with a message that names it (each misuse runs in a forked child whose stderr is captured).
#include "kernels/cuda/mma.cuh"

#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include "cuda_emu_test.h"

// ----------------------------------------------------------------------------
// kernels

// out (blocks, threads): the linear index of the thread, + 1e6 * the linear index of the block.
__global__ void who_kernel(float *out) {
    int t = (int)(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z));
    int b = (int)(blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z));
    int n = (int)(blockDim.x * blockDim.y * blockDim.z);
    out[(size_t)b * n + t] = (float)t + 1e6f * (float)b;
}

// out (n): the sum over all threads of (tid + 1), through shared memory in log2(n) rounds (n a power of 2).
__global__ void block_sum_kernel(float *out) {
    float *s = reinterpret_cast<float *>(cuda_emu_dynamic_smem());
    int t = (int)threadIdx.x, n = (int)blockDim.x;
    s[t] = (float)(t + 1);
    for (int half = n / 2; half > 0; half /= 2) {
        __syncthreads();
        float other = t < half ? s[t + half] : 0.0f;
        __syncthreads();
        if (t < half) s[t] += other;
    }
    __syncthreads();
    out[t] = s[0];
}

// out (4, 64): each lane's result of shfl idx / up / down / xor with argument arg and width w.
__global__ void shfl_kernel(int *out, int arg, int w) {
    int t = (int)threadIdx.x, v = 1000 + t, n = (int)blockDim.x;
    out[t] = __shfl_sync(0xffffffffu, v, arg, w);
    out[n + t] = __shfl_up_sync(0xffffffffu, v, (unsigned)arg, w);
    out[2 * n + t] = __shfl_down_sync(0xffffffffu, v, (unsigned)arg, w);
    out[3 * n + t] = __shfl_xor_sync(0xffffffffu, v, arg, w);
}

// bits (5 x 4 words per thread): shared memory before any write (poison); with two groups of one 16-byte
// copy committed over words written before, the first copy's destination before any wait (poison: in
// flight); after cp_async_wait<1> the first (landed) and the second (poison); after cp_async_wait<0> the
// second (landed).
__global__ void cp_async_kernel(uint32_t *bits, const uint32_t *src) {
    int t = (int)threadIdx.x;
    uint32_t *s = reinterpret_cast<uint32_t *>(cuda_emu_dynamic_smem()) + 8 * t, *b = bits + 20 * t;
    memcpy(b, s, 16);
    for (int e = 0; e < 8; e++) s[e] = 0x77u;
    cp_async16(s, src + 8 * t, true);
    cp_async_commit();
    cp_async16(s + 4, src + 8 * t + 4, true);
    cp_async_commit();
    memcpy(b + 4, s, 16);
    cp_async_wait<1>();
    memcpy(b + 8, s, 32);
    cp_async_wait<0>();
    memcpy(b + 16, s + 4, 16);
}

// out (n): thread t stores t to shared memory, then reads the slot of thread t + 32 (the next warp) without a
// barrier; the schedule runs one warp before the other (order alternating between blocks), so some read
// sees the poison in either order.
__global__ void missing_barrier_kernel(float *out) {
    float *s = reinterpret_cast<float *>(cuda_emu_dynamic_smem());
    int t = (int)threadIdx.x, n = (int)blockDim.x;
    s[t] = (float)t;
    out[blockIdx.x * n + t] = s[(t + 32) % n];
}

// out (n): each lane's __match_any_sync mask over the values (lane * 7) % 5 of its warp.
__global__ void match_any_kernel(unsigned *out) {
    int t = (int)threadIdx.x;
    out[t] = __match_any_sync(0xffffffffu, (unsigned)((t % 32) * 7 % 5));
}

// out (5, n): per thread BlockReduce Sum and max of x, then (after a barrier) BlockScan ExclusiveSum of k and
// its block aggregate; 128 threads.
__global__ void cub_kernel(float *out, const float *x, const unsigned *k) {
    typedef cub::BlockReduce<float, 128> Reduce;
    typedef cub::BlockScan<unsigned, 128> Scan;
    __shared__ union {
        Reduce::TempStorage r;
        Scan::TempStorage s;
    } tmp;
    int t = (int)threadIdx.x;
    out[t] = Reduce(tmp.r).Sum(x[t]);
    __syncthreads();
    out[128 + t] = Reduce(tmp.r).Reduce(x[t], [](float a, float b) { return fmaxf(a, b); });
    __syncthreads();
    unsigned prefix, total;
    Scan(tmp.s).ExclusiveSum(k[t], prefix, total);
    out[256 + t] = (float)prefix, out[384 + t] = (float)total;
}

// out (blocks): a static __shared__ word as each block finds it (block 0 writes it, later blocks must see the
// poison).
__global__ void static_smem_kernel(uint32_t *out) {
    __shared__ uint32_t word;
    if (threadIdx.x == 0) {
        out[blockIdx.x] = word;
        word = 0x12345678u;
    }
}

// Misuse: a barrier that the lower half of the block reaches after the upper half has returned.
__global__ void exit_then_sync_kernel() {
    if (threadIdx.x >= 64) return;
    __syncthreads();
}

// Misuse: barriers at two different call sites.
__global__ void split_sync_kernel() {
    if (threadIdx.x < 64) __syncthreads();
    else __syncthreads();
}

// Misuse: a shuffle by half a warp.
__global__ void half_warp_shfl_kernel(float *out) {
    if (threadIdx.x % 32 < 16) out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
}

// Misuse: a partial member mask.
__global__ void mask_shfl_kernel(float *out) { out[threadIdx.x] = __shfl_xor_sync(0x0000ffffu, 1.0f, 1); }

// Misuse: reads and writes past the end of the dynamic shared memory.
__global__ void smem_overrun_kernel(int n) {
    volatile unsigned char *s = cuda_emu_dynamic_smem();
    for (int i = 0; i < n; i++) s[i] = (unsigned char)s[i + 4096];
}

// ----------------------------------------------------------------------------
// checks

static void test_indices() {
    dim3 grid(3, 2, 2), block(8, 4, 3);
    int nb = 12, nt = 96;
    std::vector<float> out((size_t)nb * nt);
    emu_poison(out);
    cuda_emu_launch(who_kernel, grid, block, 0, out.data());
    for (int b = 0; b < nb; b++)
        for (int t = 0; t < nt; t++)
            EXPECT(out[(size_t)b * nt + t] == (float)t + 1e6f * (float)b, "who_kernel block %d thread %d: got %g", b, t,
                   out[(size_t)b * nt + t]);
}

static void test_block_sum() {
    for (int n : {32, 128, 1024}) {
        std::vector<float> out(n);
        cuda_emu_launch(block_sum_kernel, dim3(2), dim3(n), sizeof(float) * n, out.data());
        float want = 0.5f * n * (n + 1);
        for (int t = 0; t < n; t++) EXPECT(out[t] == want, "block_sum n %d thread %d: got %g want %g", n, t, out[t], want);
    }
}

// The PTX shfl.sync rules, written out independently: segments of width lanes; idx reads lane arg of the
// segment, up/down read lane -/+ arg when it lies in the segment, xor reads lane ^ arg when it lies in or
// below the segment; otherwise a lane keeps its own value.
static void test_shuffles() {
    for (int w : {32, 16, 8, 1}) {
        for (int arg : {0, 1, 3, 5, 17}) {
            std::vector<int> out(4 * 64);
            cuda_emu_launch(shfl_kernel, dim3(1), dim3(64), 0, out.data(), arg, w);
            for (int t = 0; t < 64; t++) {
                int lane = t % 32, base = t - lane, seg = lane / w * w;
                int idx = seg + arg % w, up = lane - arg >= seg ? lane - arg : lane;
                int down = lane + arg < seg + w ? lane + arg : lane, x = lane ^ arg;
                if (x >= seg + w) x = lane;
                int want[4] = {1000 + base + idx, 1000 + base + up, 1000 + base + down, 1000 + base + x};
                const char *names[4] = {"idx", "up", "down", "xor"};
                for (int m = 0; m < 4; m++)
                    EXPECT(out[m * 64 + t] == want[m], "shfl %s width %d arg %d thread %d: got %d want %d", names[m], w,
                           arg, t, out[m * 64 + t], want[m]);
            }
        }
    }
}

static void test_cp_async() {
    int n = 32;
    std::vector<uint32_t> src(8 * n), bits(20 * n);
    for (int i = 0; i < 8 * n; i++) src[i] = 0x1000u + (uint32_t)i;
    cuda_emu_launch(cp_async_kernel, dim3(1), dim3(n), sizeof(uint32_t) * 8 * n, bits.data(),
                    (const uint32_t *)src.data());
    const char *when[5] = {"before the copies", "before any wait", "after wait<1>, group 1", "after wait<1>, group 2",
                           "after wait<0>, group 2"};
    for (int t = 0; t < n; t++)
        for (int k = 0; k < 5; k++)
            for (int e = 0; e < 4; e++) {
                uint32_t got = bits[20 * t + 4 * k + e];
                uint32_t want = k == 2 ? src[8 * t + e] : k == 4 ? src[8 * t + 4 + e] : 0xffffffffu;
                EXPECT(got == want, "cp_async thread %d word %d %s: 0x%08x, want 0x%08x", t, e, when[k], got, want);
            }
}

static void test_missing_barrier() {
    int n = 64;
    std::vector<float> out(2 * n);
    cuda_emu_launch(missing_barrier_kernel, dim3(2), dim3(n), sizeof(float) * n, out.data());
    for (int b = 0; b < 2; b++) {
        int poisoned = 0;
        for (int t = 0; t < n; t++) poisoned += isnan(out[b * n + t]);
        EXPECT(poisoned == 32, "missing barrier, block %d: %d of %d reads saw the poison, want 32 (one warp)", b,
               poisoned, n);
    }
}

static void test_match_and_bits() {
    std::vector<unsigned> out(64);
    cuda_emu_launch(match_any_kernel, dim3(1), dim3(64), 0, out.data());
    for (int t = 0; t < 64; t++) {
        unsigned want = 0;
        for (int j = 0; j < 32; j++)
            if (j * 7 % 5 == (t % 32) * 7 % 5) want |= 1u << j;
        EXPECT(out[t] == want, "__match_any_sync thread %d: 0x%08x, want 0x%08x", t, out[t], want);
    }
    EXPECT(__popc(0xf0f0f0f1u) == 17 && __popc(0) == 0, "__popc");
    EXPECT(__ffs(0) == 0 && __ffs(1) == 1 && __ffs((int)0x80000000u) == 32 && __ffs(12) == 3, "__ffs");
    EXPECT(__umulhi(0xffffffffu, 0xffffffffu) == 0xfffffffeu && __umulhi(0x10000u, 0x10000u) == 1u, "__umulhi");
}

static void test_cub() {
    std::vector<float> x(128), out(5 * 128);
    std::vector<unsigned> k(128);
    double sum = 0;
    float mx = -INFINITY;
    for (int t = 0; t < 128; t++) {
        x[t] = (float)((t * 37) % 101) - 50.0f, k[t] = (unsigned)(t * 13 % 7);
        sum += x[t], mx = fmaxf(mx, x[t]);
    }
    cuda_emu_launch(cub_kernel, dim3(2), dim3(128), 0, out.data(), (const float *)x.data(), (const unsigned *)k.data());
    EXPECT(out[0] == (float)sum && out[128] == mx, "BlockReduce thread 0: sum %g max %g, want %g %g", out[0], out[128],
           sum, mx);
    unsigned run = 0, total = 0;
    for (int t = 0; t < 128; t++) total += k[t];
    for (int t = 0; t < 128; t++) {
        if (t > 0)
            EXPECT(isnan(out[t]) && isnan(out[128 + t]), "BlockReduce thread %d: got %g and %g, want the poison (only "
                   "thread 0 has the aggregate)", t, out[t], out[128 + t]);
        EXPECT(out[256 + t] == (float)run && out[384 + t] == (float)total,
               "BlockScan thread %d: prefix %g total %g, want %u %u", t, out[256 + t], out[384 + t], run, total);
        run += k[t];
    }
}

static void test_static_smem_poison() {
    std::vector<uint32_t> out(3);
    cuda_emu_launch(static_smem_kernel, dim3(3), dim3(32), 0, out.data());
    for (int b = 0; b < 3; b++)
        EXPECT(out[b] == 0xffffffffu, "static __shared__ word in block %d: 0x%08x before any write, want the poison", b,
               out[b]);
}

static void test_bf16_rounding() {
    struct {
        uint32_t f;
        unsigned short want;
    } cases[] = {
        {0x3f800000u, 0x3f80}, // 1
        {0x3f808000u, 0x3f80}, // tie, even below
        {0x3f818000u, 0x3f82}, // tie, even above
        {0x3f808001u, 0x3f81}, // above the tie
        {0xbf80ffffu, 0xbf81}, // negative
        {0x7f7fffffu, 0x7f80}, // max float rounds to inf
        {0xff800000u, 0xff80}, // -inf
        {0x7fc00001u, 0x7fff}, // NaN
        {0xffffffffu, 0x7fff}, // NaN (the poison pattern)
        {0x00010000u, 0x0001}, // subnormal
    };
    for (const auto &c : cases) {
        float f;
        memcpy(&f, &c.f, 4);
        unsigned short got = __float2bfloat16_rn(f).__x;
        EXPECT(got == c.want, "__float2bfloat16_rn(0x%08x) = 0x%04x, want 0x%04x", c.f, got, c.want);
    }
}

static void test_misuse() {
    std::vector<float> out(1024);
    std::vector<int> iout(4 * 48);
    expect_abort("exited threads", "thread (64,0,0) has exited: deadlock",
                 [] { cuda_emu_launch(exit_then_sync_kernel, dim3(2), dim3(128), 0); });
    expect_abort("different barriers", "a barrier needs every thread of the block at the same __syncthreads",
                 [] { cuda_emu_launch(split_sync_kernel, dim3(1), dim3(128), 0); });
    expect_abort("half-warp shuffle", "a warp collective needs all 32 lanes",
                 [&] { cuda_emu_launch(half_warp_shfl_kernel, dim3(1), dim3(64), 0, out.data()); });
    expect_abort("member mask", "with member mask 0x0000ffff",
                 [&] { cuda_emu_launch(mask_shfl_kernel, dim3(1), dim3(32), 0, out.data()); });
    expect_abort("partial warp", "which has only 16 threads",
                 [&] { cuda_emu_launch(shfl_kernel, dim3(1), dim3(48), 0, iout.data(), 1, 32); });
    expect_abort("too much shared memory", "at most 232448",
                 [] { cuda_emu_launch(smem_overrun_kernel, dim3(1), dim3(32), 300000, 0); });
    expect_abort("shared-memory overrun", "past the end of the 100 bytes of dynamic shared memory",
                 [] { cuda_emu_launch(smem_overrun_kernel, dim3(1), dim3(32), 100, 1); });
    expect_abort("device function outside a launch", "outside a kernel launch", [] { __syncthreads(); });
    expect_abort("CUB block size", "for 128 threads in a block of (64,1,1)", [&] {
        cuda_emu_launch(cub_kernel, dim3(1), dim3(64), 0, out.data(), (const float *)out.data(),
                        (const unsigned *)iout.data());
    });
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_indices();
    test_block_sum();
    test_shuffles();
    test_cp_async();
    test_missing_barrier();
    test_match_and_bits();
    test_cub();
    test_static_smem_poison();
    test_bf16_rounding();
    test_misuse();
    return TEST_RESULT();
}
