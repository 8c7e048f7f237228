// rope_cache_kernel (lib/kernels/cuda/rope.cuh: the rotation of fused q|k|v rows that also writes the rotated keys and
// the values into KV-cache rows, what the GPU model's prefill and decode steps run) on the CPU emulator against
// rope_kernel followed by plain row copies, in fp32 and bf16: the rotated rows and the cache must be equal to the bit,
// cache rows that no token writes must stay untouched (poisoned), and so must each qkv row's padding and the guards
// around every array. Both kernels run the variant rope.cu picks (rope_vectors_fit): the 16-byte vector one for head
// dims 128 and 80 with aligned rows and caches, the one-pair one for an odd cache row stride or one 2 elements past a
// multiple of the vector width, a cache or qkv one element off, or half-dims that are no multiple of the vector width
// (D 72 in bf16, D 10); wherever rope_cache_kernel's vector variant ran, its one-pair variant must give the same bits.
// Launched with rope.cu's grid (grid_for(n, 256, 8192)); a small grid cap runs the grid-stride loop too.
#include "kernels/cuda/rope.cuh"

#include "cuda_emu_test.h"

// ----------------------------------------------------------------------------
// launches (rope.cu)

// Launches of the vector variant and of the one-pair one, by kernel (0 rope_kernel, 1 rope_cache_kernel) and
// dtype (0 fp32, 1 bf16).
static int vec_launches[2][2], scalar_launches[2][2];

template <typename T, int W>
static void rope_cache_launch_w(T *qkv, const float *cs, const float *sn, int rows, int H, int KV, int D, int64_t ld,
                                T *cache_k, T *cache_v, const int *cache_rows, int64_t ldc, unsigned grid_cap) {
    int64_t n = (int64_t)rows * (H + KV) * (D / 2 / W) + (int64_t)rows * KV * D / W;
    cuda_emu_launch(rope_cache_kernel<T, W>, dim3(grid_for(n, 256, grid_cap)), dim3(256), 0, qkv, cs, sn, rows, H, KV,
                    D, ld, cache_k, cache_v, cache_rows, ldc);
}

// The variant rope.cu picks; returns whether it was the vector one.
template <typename T>
static bool rope_cache_launch(T *qkv, const float *cs, const float *sn, int rows, int H, int KV, int D, int64_t ld,
                              T *cache_k, T *cache_v, const int *cache_rows, int64_t ldc, unsigned grid_cap) {
    bool vec = rope_vectors_fit<T>(D, {ld, ldc}, {qkv, cs, sn, cache_k, cache_v});
    (vec ? vec_launches : scalar_launches)[1][sizeof(T) == 2]++;
    if (vec)
        rope_cache_launch_w<T, VecWidth<T>::value>(qkv, cs, sn, rows, H, KV, D, ld, cache_k, cache_v, cache_rows, ldc,
                                                   grid_cap);
    else rope_cache_launch_w<T, 1>(qkv, cs, sn, rows, H, KV, D, ld, cache_k, cache_v, cache_rows, ldc, grid_cap);
    return vec;
}

template <typename T>
static void rope_launch(T *x, const float *cs, const float *sn, int rows, int NH, int D, int64_t ld,
                        unsigned grid_cap) {
    constexpr int VW = VecWidth<T>::value;
    bool vec = rope_vectors_fit<T>(D, {ld}, {x, cs, sn});
    (vec ? vec_launches : scalar_launches)[0][sizeof(T) == 2]++;
    dim3 grid(grid_for((int64_t)rows * NH * (D / 2 / (vec ? VW : 1)), 256, grid_cap));
    if (vec) cuda_emu_launch(rope_kernel<T, VW>, grid, dim3(256), 0, x, cs, sn, 1.0f, rows, NH, D, ld);
    else cuda_emu_launch(rope_kernel<T, 1>, grid, dim3(256), 0, x, cs, sn, 1.0f, rows, NH, D, ld);
}

// ----------------------------------------------------------------------------
// one case

struct RopeCacheCase {
    const char *name;
    int T, H, KV, D, pad, ldc_pad; // pad, ldc_pad: elements after each qkv row and each cache row
    int cache_rows_n;              // rows of each cache (>= T); rows scattered among them
    unsigned grid_cap;
    int qkv_off, v_off;     // qkv and cache_v this many elements past a 64-byte aligned start
    bool vec_f32, vec_bf16; // the variant rope.cu must pick for rope_cache_kernel: vector or one-pair
};

// got and want (n elements each) equal to the bit; prints the first differing index and both values.
template <typename T>
static void expect_same_bits(const char *what, const RopeCacheCase &c, const char *out, T *got, T *want, int64_t n) {
    int64_t bad = 0, first = 0;
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&got[i], &want[i], sizeof(T)) && bad++ == 0) first = i;
    EXPECT(bad == 0, "rope_cache_kernel<%s> %s, %s: %lld elements differ from %s, first [%lld]: got %.9g want %.9g",
           sizeof(T) == 2 ? "bf16" : "f32", c.name, out, (long long)bad, what, (long long)first,
           (double)to_f32(got[first]), (double)to_f32(want[first]));
}

template <typename T> static void run_case(const RopeCacheCase &c) {
    const char *dt = sizeof(T) == 2 ? "bf16" : "f32";
    int NH = c.H + c.KV, KVD = c.KV * c.D, half = c.D / 2;
    int64_t ld = (int64_t)(c.H + 2 * c.KV) * c.D + c.pad, ldc = KVD + c.ldc_pad, nq = c.T * ld;
    int64_t nc = (int64_t)c.cache_rows_n * ldc;
    std::vector<float> x = emu_randn((size_t)nq, 1.0f);
    emu_array<float> cs(c.T * half), sn(c.T * half);
    for (int64_t i = 0; i < c.T * half; i++) {
        float a = (float)(i % 97) * 0.173f - 3.0f;
        cs.data()[i] = cosf(a), sn.data()[i] = sinf(a);
    }
    // distinct cache rows in a scrambled order
    std::vector<int> rows(c.T);
    for (int t = 0; t < c.T; t++) rows[t] = (int)(((int64_t)t * 7 + 3) % c.cache_rows_n);

    // the kernel's outputs, the one-pair variant's and the reference's; the caches and the padding poisoned
    emu_array<T> got_qkv(nq, c.qkv_off), one_qkv(nq, c.qkv_off), want_qkv(nq, c.qkv_off);
    emu_array<T> got_k(nc), one_k(nc), want_k(nc), got_v(nc, c.v_off), one_v(nc, c.v_off), want_v(nc, c.v_off);
    for (emu_array<T> *q : {&got_qkv, &one_qkv, &want_qkv}) {
        q->set(x);
        for (int t = 0; t < c.T; t++)
            for (int64_t j = (int64_t)(c.H + 2 * c.KV) * c.D; j < ld; j++)
                memset((void *)&q->data()[t * ld + j], 0xFF, sizeof(T));
    }

    // reference: the plain rotation, then the copies
    rope_launch<T>(want_qkv.data(), cs.data(), sn.data(), c.T, NH, c.D, ld, c.grid_cap);
    for (int t = 0; t < c.T; t++)
        for (int j = 0; j < KVD; j++) {
            want_k.data()[(int64_t)rows[t] * ldc + j] = want_qkv.data()[t * ld + (int64_t)c.H * c.D + j];
            want_v.data()[(int64_t)rows[t] * ldc + j] = want_qkv.data()[t * ld + (int64_t)NH * c.D + j];
        }
    bool vec = rope_cache_launch<T>(got_qkv.data(), cs.data(), sn.data(), c.T, c.H, c.KV, c.D, ld, got_k.data(),
                                    got_v.data(), rows.data(), ldc, c.grid_cap);
    EXPECT(vec == (sizeof(T) == 2 ? c.vec_bf16 : c.vec_f32), "rope_cache_kernel<%s> %s: the wrong variant", dt,
           c.name);
    if (vec)
        rope_cache_launch_w<T, 1>(one_qkv.data(), cs.data(), sn.data(), c.T, c.H, c.KV, c.D, ld, one_k.data(),
                                  one_v.data(), rows.data(), ldc, c.grid_cap);
    struct {
        const char *what;
        emu_array<T> *got, *one, *want;
    } outs[3] = {{"qkv", &got_qkv, &one_qkv, &want_qkv},
                 {"cache_k", &got_k, &one_k, &want_k},
                 {"cache_v", &got_v, &one_v, &want_v}};
    for (const auto &o : outs) {
        expect_same_bits("the rotation + copies", c, o.what, o.got->data(), o.want->data(), o.got->n);
        EXPECT(o.got->guards_intact(), "rope_cache_kernel<%s> %s, %s: an element outside the array was written", dt,
               c.name, o.what);
        if (vec) expect_same_bits("the one-pair variant", c, o.what, o.got->data(), o.one->data(), o.got->n);
    }
}

// ----------------------------------------------------------------------------
// cases

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    maye_rng_init(&emu_rng, 20261126, 9);
    const RopeCacheCase cases[] = {
        {"decode step: 64 rows, G6, D128", 64, 12, 2, 128, 0, 0, 700, 8192, 0, 0, true, true},
        {"prefill: 37 rows, G7, D64, padded rows, odd cache stride", 37, 7, 1, 64, 8, 3, 40, 8192, 0, 0, false, false},
        {"odd head dim 10, G3, grid-stride loop", 29, 3, 1, 10, 1, 3, 31, 2, 0, 0, false, false},
        {"D80, G2, padded rows and cache rows, grid-stride loop", 19, 4, 2, 80, 8, 8, 23, 3, 0, 0, true, true},
        {"D72 (half-dim 36), G3, padded rows and cache rows", 13, 3, 1, 72, 4, 4, 20, 8192, 0, 0, true, false},
        {"D128, G6, cache_v one element off", 21, 12, 2, 128, 0, 0, 30, 8192, 0, 1, false, false},
        {"D128, G6, qkv one element off", 21, 12, 2, 128, 0, 0, 30, 8192, 1, 0, false, false},
        {"D128, G6, cache row stride 2 past a vector", 21, 12, 2, 128, 0, 2, 30, 8192, 0, 0, false, false},
    };
    for (const RopeCacheCase &c : cases) run_case<float>(c), run_case<__nv_bfloat16>(c);
    for (int k = 0; k < 2; k++)
        for (int d = 0; d < 2; d++)
            EXPECT(vec_launches[k][d] > 0 && scalar_launches[k][d] > 0, "%s %s: %d vector and %d one-pair launches "
                   "(want both)", k ? "rope_cache_kernel" : "rope_kernel", d ? "bf16" : "f32", vec_launches[k][d],
                   scalar_launches[k][d]);
    printf("rope_cache_kernel: %zu cases x 2 dtypes checked against rope_kernel + copies\n",
           sizeof cases / sizeof cases[0]);
    for (int k = 0; k < 2; k++)
        printf("%s launches: f32 %d vector, %d one-pair; bf16 %d vector, %d one-pair\n",
               k ? "rope_cache_kernel" : "rope_kernel", vec_launches[k][0], scalar_launches[k][0], vec_launches[k][1],
               scalar_launches[k][1]);
    return TEST_RESULT();
}
