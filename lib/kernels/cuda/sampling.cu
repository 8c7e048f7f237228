// C API of the GPU sampler and of the Philox uniform fill (sampling.cuh, philox.cuh).
#include "kernels/cuda/sampling.cuh"

extern "C" int cuda_uniform_fill(float *out, uint64_t seed, uint64_t stream_id, uint64_t index0, int64_t N,
                                 cuda_stream stream) {
    CHECK_OR_FAIL(N >= 0, "uniform_fill: negative size %lld", (long long)N);
    if (N == 0) return 0;
    uniform_fill_kernel<<<grid_for(N, 256, 8192), 256, 0, stream>>>(out, seed, stream_id, index0, N);
    CUDA_LAUNCHED("uniform_fill of %lld values", (long long)N);
    return 0;
}

extern "C" int cuda_sample_forward(int64_t *tokens, float *logprob, const float *logits, int64_t ld, int B, int V,
                                   const float *temperature, const int *top_k, const float *top_p, uint64_t seed,
                                   const uint64_t *streams, const uint64_t *indices, const int32_t *banned,
                                   int n_banned, const uint8_t *suppress, cuda_stream stream) {
    CHECK_OR_FAIL(B >= 0 && V >= 1 && V < (1 << 24) && ld >= V,
                  "sample_forward: bad shape B %d V %d ld %lld (V must be in [1, 2^24))", B, V, (long long)ld);
    CHECK_OR_FAIL(n_banned >= 0 && n_banned <= SAMPLE_MAX_BANNED, "sample_forward: %d banned ids (at most %d)",
                  n_banned, SAMPLE_MAX_BANNED);
    if (B == 0) return 0;
    sample_kernel<<<B, SAMPLE_THREADS, 0, stream>>>(tokens, logprob, logits, ld, V, temperature, top_k, top_p, seed,
                                                    streams, indices, banned, n_banned, suppress);
    CUDA_LAUNCHED("sample_forward (B %d, V %d)", B, V);
    return 0;
}
