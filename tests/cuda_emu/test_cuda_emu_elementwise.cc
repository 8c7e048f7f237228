// The elementwise kernels of lib/kernels/cuda/elementwise.cuh on the CPU emulator against the CPU reference
// (kernels/cpu: activation_forward, gated_activation_forward, embedding_forward): map_kernel's four activations
// plain and gated (and gated SiLU in place over up), in fp32 and bf16, with 16-byte aligned pointers (vector body
// plus scalar tail) and misaligned ones (scalar only); embedding_kernel with vector and scalar copies. Launches as
// elementwise.cu, and the maps once more with 3 blocks so the grid-stride loops take several turns. Dimension
// letters: N elements, T rows, C channels, V vocabulary.
#include "kernels/cuda/elementwise.cuh"

#include "cuda_emu_test.h"

// ----------------------------------------------------------------------------
// maps

static emu_stats act_f32 = {"map_kernel<OP_ACT> f32", 1e-5};
static emu_stats act_bf16 = {"map_kernel<OP_ACT> bf16", 4e-3};
static emu_stats gated_f32 = {"map_kernel<OP_GATED_ACT> f32", 1e-5};
static emu_stats gated_bf16 = {"map_kernel<OP_GATED_ACT> bf16", 4e-3};
static emu_stats emb_st = {"embedding_kernel (exact)", 0};

static int vec_launches, scalar_launches;
static const char *act_names[] = {"silu", "gelu", "gelu_tanh", "quick_gelu"};

// map_launch of elementwise.cu; `small` launches 3 blocks instead of its grid.
template <typename T, ElementOp OP>
static void map_launch(T *out, const T *a, const T *b, int64_t N, act_kind act, bool small) {
    constexpr int VW = VecWidth<T>::value;
    bool vec = aligned16(out) && aligned16(a) && (OP == OP_ACT || aligned16(b));
    dim3 grid(small ? 3u : grid_for(vec ? N / VW + 1 : N, 256, 8192));
    (vec ? vec_launches : scalar_launches)++;
    if (vec) cuda_emu_launch(map_kernel<T, VW, OP>, grid, dim3(256), 0, out, a, b, N, act);
    else cuda_emu_launch(map_kernel<T, 1, OP>, grid, dim3(256), 0, out, a, b, N, act);
}

template <typename T> static void test_maps(int64_t N, int off, bool small) {
    bool is_bf16 = sizeof(T) == 2;
    std::string shape = emu_what("%s N %lld %s grid %s", is_bf16 ? "bf16" : "f32", (long long)N,
                                 off ? "misaligned" : "aligned", small ? "3" : "elementwise.cu");
    std::vector<float> x = emu_randn((size_t)N, 3.0f), u = emu_randn((size_t)N, 1.0f), ref((size_t)N);
    if (is_bf16) emu_round_bf16(x), emu_round_bf16(u);
    emu_array<T> dx(N, off), du(N, off), dout(N, off);

    dx.set(x), du.set(u);
    for (int a = ACT_SILU; a <= ACT_QUICK_GELU; a++) {
        activation_forward(ref.data(), x.data(), N, (act_kind)a);
        if (is_bf16) emu_round_bf16(ref);
        dout.poison();
        map_launch<T, OP_ACT>(dout.data(), dx.data(), nullptr, N, (act_kind)a, small);
        emu_check(is_bf16 ? act_bf16 : act_f32, emu_what("%s ", act_names[a]) + shape, dout.get(), ref);

        gated_activation_forward(ref.data(), x.data(), u.data(), N, (act_kind)a);
        if (is_bf16) emu_round_bf16(ref);
        dout.poison();
        map_launch<T, OP_GATED_ACT>(dout.data(), dx.data(), du.data(), N, (act_kind)a, small);
        emu_check(is_bf16 ? gated_bf16 : gated_f32, emu_what("gated %s ", act_names[a]) + shape, dout.get(), ref);
        EXPECT(dout.guards_intact(), "%s %s: an element outside out was written", act_names[a], shape.c_str());
    }
    // the SiLU-gated MLP in place over up, and SiLU in place over its input
    gated_activation_forward(ref.data(), x.data(), u.data(), N, ACT_SILU);
    if (is_bf16) emu_round_bf16(ref);
    map_launch<T, OP_GATED_ACT>(du.data(), dx.data(), du.data(), N, ACT_SILU, small);
    emu_check(is_bf16 ? gated_bf16 : gated_f32, "gated silu in place " + shape, du.get(), ref);
    activation_forward(ref.data(), x.data(), N, ACT_SILU);
    if (is_bf16) emu_round_bf16(ref);
    map_launch<T, OP_ACT>(dx.data(), dx.data(), nullptr, N, ACT_SILU, small);
    emu_check(is_bf16 ? act_bf16 : act_f32, "silu in place " + shape, dx.get(), ref);
    EXPECT(dx.guards_intact() && du.guards_intact(), "in place %s: an element outside the array was written",
           shape.c_str());
}

// ----------------------------------------------------------------------------
// embedding

template <typename T> static void test_embedding(int C, int off) {
    bool is_bf16 = sizeof(T) == 2;
    int V = 37, rows = 9;
    constexpr int VW = VecWidth<T>::value;
    std::vector<float> table = emu_randn((size_t)V * C, 1.0f), ref((size_t)rows * C);
    if (is_bf16) emu_round_bf16(table);
    std::vector<int64_t> ids((size_t)rows);
    for (int64_t &id : ids) id = (int64_t)maye_rng_below(&emu_rng, (uint64_t)V);
    ids[0] = V - 1; // the last row of the table
    embedding_forward(ref.data(), ids.data(), table.data(), rows, C);
    emu_array<T> dtab((int64_t)V * C, off), dout((int64_t)rows * C);
    dtab.set(table);
    bool vec = C % VW == 0 && aligned16(dout.data()) && aligned16(dtab.data());
    (vec ? vec_launches : scalar_launches)++;
    if (vec)
        cuda_emu_launch(embedding_kernel<T, VW>, dim3((unsigned)rows), dim3(128), 0, dout.data(),
                        (const int64_t *)ids.data(), (const T *)dtab.data(), C);
    else
        cuda_emu_launch(embedding_kernel<T, 1>, dim3((unsigned)rows), dim3(128), 0, dout.data(),
                        (const int64_t *)ids.data(), (const T *)dtab.data(), C);
    std::string what = emu_what("embedding %s T %d C %d %s", is_bf16 ? "bf16" : "f32", rows, C,
                                off ? "table misaligned" : "aligned");
    emu_check(emb_st, what, dout.get(), ref);
    EXPECT(dout.guards_intact(), "%s: an element outside out was written", what.c_str());
}

// ----------------------------------------------------------------------------

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    maye_rng_init(&emu_rng, 20240614, 3);
    for (int64_t N : {(int64_t)1037, (int64_t)64, (int64_t)3, (int64_t)1, (int64_t)3001})
        for (int off : {0, 1})
            for (bool small : {false, true}) {
                if (small && N < 1000) continue;
                test_maps<float>(N, off, small);
                test_maps<bf16>(N, off, small);
            }
    for (int C : {13, 16, 1, 264, 520})
        for (int off : {0, 1}) test_embedding<float>(C, off), test_embedding<bf16>(C, off);
    EXPECT(vec_launches > 0 && scalar_launches > 0, "%d vector and %d scalar launches (want both)", vec_launches,
           scalar_launches);
    printf("launches: %d vector, %d scalar\n", vec_launches, scalar_launches);
    for (const emu_stats *st : {&act_f32, &act_bf16, &gated_f32, &gated_bf16, &emb_st}) emu_stats_print(*st);
    return TEST_RESULT();
}
