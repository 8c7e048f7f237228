// The rotary-embedding kernels of lib/kernels/cuda/rope.cuh on the CPU emulator against the CPU reference
// (kernels/cpu/rope.c): mrope_table_kernel (M-RoPE sections, positions with a row stride), the vision 2-D table
// vision_rope_table_kernel, and rope_kernel rotating strided rows in fp32 and bf16 (the padding after NH * D must keep
// its values). Each kernel runs with the grid of rope.cu and again with 3 blocks, so the grid-stride loops take several
// turns. rope_kernel runs the variant rope.cu picks (rope_vectors_fit): head dims 128 and 80 with aligned rows take the
// 16-byte vector variant, an odd row stride, x or cos/sin one element off, an even row stride that is no multiple of
// the vector width (D 128 + 2), or half-dims that are no multiple of the vector width (D 24 in bf16, 14, 10, 2) the
// one-pair one; wherever the vector variant ran, the one-pair variant must give the same bits, and both must equal to
// the bit the host's rotation with rope_pairs' rounding (fmaf(a, c, -(b s)), fmaf(a, s, b c)). Dimension letters: T
// rows, NH heads, D head dim.
#include "kernels/cuda/rope.cuh"

#include "cuda_emu_test.h"

// ----------------------------------------------------------------------------
// tables

static emu_stats mrope_st = {"mrope_table_kernel cos+sin", 1e-6};
static emu_stats vision_st = {"vision_rope_table_kernel cos+sin", 1e-6};
static emu_stats rope_f32 = {"rope_kernel<float>", 1e-5};
static emu_stats rope_bf16 = {"rope_kernel<bf16>", 4e-3};

// The launcher's grid for n items (rope.cu), or the small grid that makes the loops stride.
static unsigned grid_of(int64_t n, bool small) { return small ? 3u : grid_for(n, 256, 8192); }

static void check_table(emu_stats &st, const std::string &what, emu_array<float> &c, emu_array<float> &s,
                        const std::vector<float> &rc, const std::vector<float> &rs) {
    emu_check(st, what + " cos", c.get(), rc);
    emu_check(st, what + " sin", s.get(), rs);
    EXPECT(c.guards_intact() && s.guards_intact(), "%s: an element outside the table was written", what.c_str());
}

static void test_mrope(void) {
    struct {
        int T, D, ld, sec[3];
        int64_t maxpos;
    } cases[] = {{5, 14, 7, {1, 4, 2}, 101}, {37, 128, 40, {16, 24, 24}, 5000}, {1, 2, 1, {1, 0, 0}, 3},
                 {300, 16, 301, {2, 3, 3}, 70000}};
    for (const auto &c : cases) {
        int half = c.D / 2;
        int64_t n = (int64_t)c.T * half;
        std::vector<int64_t> pos((size_t)3 * c.ld);
        for (int64_t &p : pos) p = (int64_t)maye_rng_below(&emu_rng, (uint64_t)c.maxpos);
        std::vector<float> rc((size_t)n), rs((size_t)n);
        mrope_cos_sin_forward(rc.data(), rs.data(), pos.data(), c.ld, c.T, c.D, 1000000.0f, c.sec);
        for (bool small : {false, true}) {
            emu_array<float> dc(n), ds(n);
            cuda_emu_launch(mrope_table_kernel, dim3(grid_of(n, small)), dim3(256), 0, dc.data(), ds.data(),
                            (const int64_t *)pos.data(), (int64_t)c.ld, c.T, c.D, 1000000.0f, c.sec[0], c.sec[1]);
            check_table(mrope_st, emu_what("mrope T %d D %d ld %d grid %s", c.T, c.D, c.ld, small ? "3" : "rope.cu"),
                        dc, ds, rc, rs);
        }
    }
}

static void test_vision(void) {
    for (int D : {80, 20, 4}) {
        int T = D == 4 ? 700 : 23, half = D / 2;
        int64_t n = (int64_t)T * half;
        std::vector<int32_t> hpos((size_t)T), wpos((size_t)T);
        for (int t = 0; t < T; t++)
            hpos[t] = (int32_t)maye_rng_below(&emu_rng, 64), wpos[t] = (int32_t)maye_rng_below(&emu_rng, 64);
        std::vector<float> rc((size_t)n), rs((size_t)n);
        vision_rope_cos_sin_forward(rc.data(), rs.data(), hpos.data(), wpos.data(), T, D);
        for (bool small : {false, true}) {
            emu_array<float> dc(n), ds(n);
            cuda_emu_launch(vision_rope_table_kernel, dim3(grid_of(n, small)), dim3(256), 0, dc.data(), ds.data(),
                            (const int32_t *)hpos.data(), (const int32_t *)wpos.data(), T, D);
            check_table(vision_st, emu_what("vision rope T %d D %d grid %s", T, D, small ? "3" : "rope.cu"), dc, ds,
                        rc, rs);
        }
    }
}

// ----------------------------------------------------------------------------
// rotation

// Launches of the vector variant and of the one-pair one, by dtype (0 fp32, 1 bf16).
static int vec_launches[2], scalar_launches[2];

// rope_kernel<T, W> with the grid of rope.cu for W pairs per thread (or 3 blocks).
template <typename T, int W>
static void rope_launch_w(T *x, const float *c, const float *sn, int rows, int NH, int D, int64_t ld, bool small) {
    cuda_emu_launch(rope_kernel<T, W>, dim3(grid_of((int64_t)rows * NH * (D / 2 / W), small)), dim3(256), 0, x, c, sn,
                    1.0f, rows, NH, D, ld);
}

// The variant rope.cu picks; returns whether it was the vector one.
template <typename T>
static bool rope_launch(T *x, const float *c, const float *sn, int rows, int NH, int D, int64_t ld, bool small) {
    bool vec = rope_vectors_fit<T>(D, {ld}, {x, c, sn});
    (vec ? vec_launches : scalar_launches)[sizeof(T) == 2]++;
    if (vec) rope_launch_w<T, VecWidth<T>::value>(x, c, sn, rows, NH, D, ld, small);
    else rope_launch_w<T, 1>(x, c, sn, rows, NH, D, ld, small);
    return vec;
}

// got and want (n elements each) equal to the bit; prints the first differing index and both values.
template <typename T>
static void expect_same_bits(const std::string &what, const char *against, const T *got, const T *want, int64_t n) {
    int64_t bad = 0, first = 0;
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&got[i], &want[i], sizeof(T)) && bad++ == 0) first = i;
    EXPECT(bad == 0, "%s: %lld elements differ from %s, first [%lld]: got %.9g want %.9g", what.c_str(), (long long)bad,
           against, (long long)first, (double)(float)got[first], (double)(float)want[first]);
}

// x (rows of stride ld) rotated in place with the rounding of rope_pairs, the GPU's since before the vector variant:
// lo = fmaf(a, c, -(b s)), hi = fmaf(a, s, b c); the caller rounds to the storage type.
static void rope_fused(std::vector<float> &x, const std::vector<float> &c, const std::vector<float> &sn, int rows,
                       int NH, int D, int64_t ld) {
    int half = D / 2;
    for (int t = 0; t < rows; t++)
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < half; i++) {
                float *v = &x[(size_t)(t * ld + (int64_t)h * D)], a = v[i], b = v[i + half];
                float cc = c[(size_t)t * half + i], s = sn[(size_t)t * half + i];
                v[i] = fmaf(a, cc, -(b * s)), v[i + half] = fmaf(a, s, b * cc);
            }
}

struct RopeShape {
    int rows, NH, D, pad;  // pad: elements after NH * D in each row
    int x_off, cs_off;     // x, cos and sin this many elements past a 64-byte aligned start
    bool vec_f32, vec_bf16; // the variant rope.cu must pick: the vector one or the one-pair one
};

template <typename T> static void test_rotation(void) {
    bool is_bf16 = sizeof(T) == 2;
    const RopeShape shapes[] = {
        {5, 3, 14, 3, 0, 0, false, false},    {17, 16, 128, 3, 0, 0, false, false}, {1, 1, 2, 3, 0, 0, false, false},
        {40, 7, 10, 3, 0, 0, false, false},   {17, 16, 128, 0, 0, 0, true, true},   {23, 16, 80, 0, 0, 0, true, true},
        {6, 3, 128, 16, 0, 0, true, true},    {9, 5, 80, 8, 1, 0, false, false},    {9, 5, 80, 8, 0, 1, false, false},
        {11, 4, 24, 8, 0, 0, true, false},    {7, 4, 128, 2, 0, 0, false, false},
    };
    for (const RopeShape &s : shapes) {
        int rows = s.rows, NH = s.NH, D = s.D, half = D / 2;
        int64_t ld = (int64_t)NH * D + s.pad, n = rows * ld;
        std::vector<float> x = emu_randn((size_t)n, 1.0f), c = emu_randn((size_t)rows * half, 1.0f);
        std::vector<float> sn = emu_randn((size_t)rows * half, 1.0f);
        if (is_bf16) emu_round_bf16(x);
        std::vector<float> ref = x;
        rope_forward(ref.data(), c.data(), sn.data(), rows, NH, D, ld);
        if (is_bf16) emu_round_bf16(ref);
        std::vector<float> fused = x;
        rope_fused(fused, c, sn, rows, NH, D, ld);
        emu_array<T> want(n);
        want.set(fused); // rounded to T
        emu_array<float> dc(rows * half, s.cs_off), ds(rows * half, s.cs_off);
        dc.set(c), ds.set(sn);
        for (bool small : {false, true}) {
            emu_array<T> dx(n, s.x_off), dx1(n, s.x_off);
            dx.set(x), dx1.set(x);
            bool vec = rope_launch<T>(dx.data(), dc.data(), ds.data(), rows, NH, D, ld, small);
            std::string what = emu_what("rope %s T %d NH %d D %d ld %lld x+%d cos/sin+%d grid %s (%s)",
                                        is_bf16 ? "bf16" : "f32", rows, NH, D, (long long)ld, s.x_off, s.cs_off,
                                        small ? "3" : "rope.cu", vec ? "vector" : "one pair");
            EXPECT(vec == (is_bf16 ? s.vec_bf16 : s.vec_f32), "%s: the wrong variant", what.c_str());
            emu_check(is_bf16 ? rope_bf16 : rope_f32, what, dx.get(), ref); // the row padding too
            EXPECT(dx.guards_intact(), "%s: an element outside x was written", what.c_str());
            expect_same_bits(what, "fmaf(a, c, -(b s)), fmaf(a, s, b c)", dx.data(), want.data(), n);
            if (vec) {
                rope_launch_w<T, 1>(dx1.data(), dc.data(), ds.data(), rows, NH, D, ld, small);
                expect_same_bits(what, "the one-pair variant", dx.data(), dx1.data(), n);
            }
        }
    }
}

// ----------------------------------------------------------------------------

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    maye_rng_init(&emu_rng, 20240613, 2);
    test_mrope();
    test_vision();
    test_rotation<float>();
    test_rotation<bf16>();
    for (int d = 0; d < 2; d++)
        EXPECT(vec_launches[d] > 0 && scalar_launches[d] > 0, "rope_kernel %s: %d vector and %d one-pair launches "
               "(want both)", d ? "bf16" : "f32", vec_launches[d], scalar_launches[d]);
    printf("rope_kernel launches: f32 %d vector, %d one-pair; bf16 %d vector, %d one-pair\n", vec_launches[0],
           scalar_launches[0], vec_launches[1], scalar_launches[1]);
    for (const emu_stats *st : {&mrope_st, &vision_st, &rope_f32, &rope_bf16}) emu_stats_print(*st);
    return TEST_RESULT();
}
