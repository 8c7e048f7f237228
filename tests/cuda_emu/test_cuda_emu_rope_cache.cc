// rope_cache_kernel (lib/kernels/cuda/rope.cuh: the rotation of fused q|k|v rows that also writes the rotated
// keys and the values into KV-cache rows, what the GPU model's prefill and decode steps run) on the CPU
// emulator against rope_kernel followed by plain row copies, in fp32 and bf16: the rotated rows and the cache
// must be equal to the bit, cache rows that no token writes must stay untouched (poisoned), and so must each
// qkv row's padding. Launched with rope.cu's grid (grid_for(n, 256, 8192)); a small grid cap runs the
// grid-stride loop too.
#include "kernels/cuda/rope.cuh"

#include "cuda_emu_test.h"

// ----------------------------------------------------------------------------
// one case

struct RopeCacheCase {
    const char *name;
    int T, H, KV, D, pad, cache_rows_n; // cache_rows_n: rows of each cache (>= T); rows scattered among them
    unsigned grid_cap;
};

template <typename T> static void run_case(const RopeCacheCase &c) {
    bool bf16 = std::is_same<T, __nv_bfloat16>::value;
    int NH = c.H + c.KV, KVD = c.KV * c.D, half = c.D / 2;
    int64_t ld = (int64_t)(c.H + 2 * c.KV) * c.D + c.pad, ldc = KVD + 3;
    std::vector<float> x = emu_randn((size_t)c.T * ld, 1.0f), cs((size_t)c.T * half), sn((size_t)c.T * half);
    for (size_t i = 0; i < cs.size(); i++) {
        float a = (float)(i % 97) * 0.173f - 3.0f;
        cs[i] = cosf(a), sn[i] = sinf(a);
    }
    // distinct cache rows in a scrambled order
    std::vector<int> rows(c.T);
    for (int t = 0; t < c.T; t++) rows[t] = (int)(((int64_t)t * 7 + 3) % c.cache_rows_n);

    std::vector<T> want_qkv(x.size()), got_qkv(x.size());
    for (size_t i = 0; i < x.size(); i++) want_qkv[i] = got_qkv[i] = from_f32<T>(x[i]);
    for (int t = 0; t < c.T; t++) // the padding poisoned in both
        for (int64_t j = (int64_t)(c.H + 2 * c.KV) * c.D; j < ld; j++)
            memset((void *)&got_qkv[(size_t)t * ld + j], 0xFF, sizeof(T)), memset((void *)&want_qkv[(size_t)t * ld + j], 0xFF, sizeof(T));
    std::vector<T> want_k((size_t)c.cache_rows_n * ldc), want_v(want_k.size()), got_k(want_k.size()),
        got_v(want_k.size());
    emu_poison(want_k), emu_poison(want_v), emu_poison(got_k), emu_poison(got_v);

    // reference: the plain rotation, then the copies
    int64_t n_rope = (int64_t)c.T * NH * half;
    cuda_emu_launch(rope_kernel<T>, dim3(grid_for(n_rope, 256, c.grid_cap)), dim3(256), 0, want_qkv.data(),
                    (const float *)cs.data(), (const float *)sn.data(), 1.0f, c.T, NH, c.D, ld);
    for (int t = 0; t < c.T; t++)
        for (int j = 0; j < KVD; j++) {
            want_k[(size_t)rows[t] * ldc + j] = want_qkv[(size_t)t * ld + (size_t)c.H * c.D + j];
            want_v[(size_t)rows[t] * ldc + j] = want_qkv[(size_t)t * ld + (size_t)NH * c.D + j];
        }
    int64_t n = n_rope + (int64_t)c.T * KVD;
    cuda_emu_launch(rope_cache_kernel<T>, dim3(grid_for(n, 256, c.grid_cap)), dim3(256), 0, got_qkv.data(),
                    (const float *)cs.data(), (const float *)sn.data(), c.T, c.H, c.KV, c.D, ld, got_k.data(),
                    got_v.data(), (const int *)rows.data(), ldc);

    const char *dt = bf16 ? "bf16" : "f32";
    struct {
        const char *what;
        const std::vector<T> *got, *want;
    } outs[3] = {{"qkv", &got_qkv, &want_qkv}, {"cache_k", &got_k, &want_k}, {"cache_v", &got_v, &want_v}};
    for (const auto &o : outs) {
        size_t bad = 0, first = 0;
        for (size_t i = 0; i < o.want->size(); i++)
            if (memcmp(&(*o.got)[i], &(*o.want)[i], sizeof(T)) && bad++ == 0) first = i;
        EXPECT(bad == 0, "rope_cache_kernel<%s> %s, %s: %zu elements differ from the rotation + copies, first [%zu]: got "
               "%g want %g", dt, c.name, o.what, bad, first, (double)to_f32((*o.got)[first]),
               (double)to_f32((*o.want)[first]));
    }
}

// ----------------------------------------------------------------------------
// cases

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    maye_rng_init(&emu_rng, 20261126, 9);
    const RopeCacheCase cases[] = {
        {"decode step: 64 rows, G6, D128", 64, 12, 2, 128, 0, 700, 8192},
        {"prefill: 37 rows, G7, D64, padded rows", 37, 7, 1, 64, 8, 40, 8192},
        {"odd head dim 10, G3, grid-stride loop", 29, 3, 1, 10, 1, 31, 2},
    };
    for (const RopeCacheCase &c : cases) run_case<float>(c), run_case<__nv_bfloat16>(c);
    printf("rope_cache_kernel: %zu cases x 2 dtypes checked against rope_kernel + copies\n",
           sizeof cases / sizeof cases[0]);
    return TEST_RESULT();
}
