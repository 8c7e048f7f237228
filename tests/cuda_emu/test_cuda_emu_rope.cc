// The rotary-embedding kernels of lib/kernels/cuda/rope.cuh on the CPU emulator against the CPU reference
// (kernels/cpu/rope.c): mrope_table_kernel (M-RoPE sections, positions with a row stride), the vision 2-D
// table vision_rope_table_kernel, and rope_kernel rotating strided rows in fp32 and bf16 (the padding after
// NH * D must keep its values). Each kernel runs with the grid of rope.cu and again with 3 blocks, so the
// grid-stride loops take several turns. Dimension letters: T rows, NH heads, D head dim.
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

template <typename T> static void test_rotation(void) {
    bool is_bf16 = sizeof(T) == 2;
    int shapes[][3] = {{5, 3, 14}, {17, 16, 128}, {1, 1, 2}, {40, 7, 10}};
    for (const auto &s : shapes) {
        int rows = s[0], NH = s[1], D = s[2], half = D / 2;
        int64_t ld = (int64_t)NH * D + 3, n = rows * ld;
        std::vector<float> x = emu_randn((size_t)n, 1.0f), c = emu_randn((size_t)rows * half, 1.0f);
        std::vector<float> sn = emu_randn((size_t)rows * half, 1.0f);
        if (is_bf16) emu_round_bf16(x);
        std::vector<float> ref = x;
        rope_forward(ref.data(), c.data(), sn.data(), rows, NH, D, ld);
        if (is_bf16) emu_round_bf16(ref);
        int64_t pairs = (int64_t)rows * NH * half;
        for (bool small : {false, true}) {
            emu_array<T> dx(n);
            dx.set(x);
            cuda_emu_launch(rope_kernel<T>, dim3(grid_of(pairs, small)), dim3(256), 0, dx.data(), (const float *)c.data(),
                            (const float *)sn.data(), 1.0f, rows, NH, D, ld);
            std::string what = emu_what("rope %s T %d NH %d D %d ld %lld grid %s", is_bf16 ? "bf16" : "f32", rows, NH, D,
                                        (long long)ld, small ? "3" : "rope.cu");
            emu_check(is_bf16 ? rope_bf16 : rope_f32, what, dx.get(), ref); // the row padding too
            EXPECT(dx.guards_intact(), "%s: an element outside x was written", what.c_str());
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
    for (const emu_stats *st : {&mrope_st, &vision_st, &rope_f32, &rope_bf16}) emu_stats_print(*st);
    return TEST_RESULT();
}
