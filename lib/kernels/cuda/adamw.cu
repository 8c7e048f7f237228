// C API of the optimizer kernels (adamw.cuh).
#include "kernels/cuda/adamw.cuh"

template <typename G>
static void adamw_launch(float *p, bf16 *p_bf16, const G *g, float *m, float *v, int64_t N, const AdamWConsts &c,
                         const float *coef, cudaStream_t stream) {
    if (adamw_vec_ok(p, p_bf16, g, m, v))
        adamw_kernel<G, ADAMW_VEC>
            <<<grid_for(N / ADAMW_VEC + 1, 256, 8192), 256, 0, stream>>>(p, p_bf16, g, m, v, N, c, coef);
    else adamw_kernel<G, 1><<<grid_for(N, 256, 8192), 256, 0, stream>>>(p, p_bf16, g, m, v, N, c, coef);
}

extern "C" int cuda_adamw_step(float *params, void *params_bf16, const void *grads, cuda_dtype gdt, float *m, float *v,
                               int64_t N, double lr, double beta1, double beta2, double eps, double weight_decay,
                               int64_t step, const float *grad_coef, cuda_stream stream) {
    CHECK_OR_FAIL(dtype_valid(gdt), "adamw_step: unknown gradient dtype %d", (int)gdt);
    CHECK_OR_FAIL(N >= 0 && step >= 1, "adamw_step: bad size %lld or step %lld (steps count from 1)", (long long)N,
                  (long long)step);
    if (N == 0) return 0;
    const double t = (double)step;
    AdamWConsts c;
    c.decay = (float)(1.0 - lr * weight_decay);
    c.w1 = (float)(1.0 - beta1), c.b2 = (float)beta2, c.w2 = (float)(1.0 - beta2);
    c.neg_step_size = (float)(-(lr / (1.0 - pow(beta1, t))));
    c.bc2_sqrt = (float)sqrt(1.0 - pow(beta2, t));
    c.eps = (float)eps;
    if (gdt == CUDA_BF16) adamw_launch(params, (bf16 *)params_bf16, (const bf16 *)grads, m, v, N, c, grad_coef, stream);
    else adamw_launch(params, (bf16 *)params_bf16, (const float *)grads, m, v, N, c, grad_coef, stream);
    CUDA_LAUNCHED("adamw_step over %lld elements", (long long)N);
    return 0;
}

extern "C" size_t cuda_grad_norm_scratch_bytes(int64_t N) {
    int64_t chunks = (N + CLIP_CHUNK - 1) / CLIP_CHUNK;
    return sizeof(double) * (size_t)(chunks > 0 ? chunks : 1);
}

extern "C" int cuda_grad_norm(double *norm, const void *grads, cuda_dtype gdt, int64_t N, void *scratch,
                              cuda_stream stream) {
    CHECK_OR_FAIL(dtype_valid(gdt), "grad_norm: unknown gradient dtype %d", (int)gdt);
    CHECK_OR_FAIL(N >= 0, "grad_norm: negative size %lld", (long long)N);
    int64_t chunks = (N + CLIP_CHUNK - 1) / CLIP_CHUNK;
    CHECK_OR_FAIL(chunks <= INT32_MAX, "grad_norm: %lld elements are too many", (long long)N);
    double *partial = (double *)scratch;
    if (chunks > 0) {
        unsigned grid = (unsigned)chunks;
        if (gdt == CUDA_BF16 && aligned16(grads))
            grad_sq_kernel<bf16, 8><<<grid, CLIP_THREADS, 0, stream>>>(partial, (const bf16 *)grads, N);
        else if (gdt == CUDA_BF16)
            grad_sq_kernel<bf16, 1><<<grid, CLIP_THREADS, 0, stream>>>(partial, (const bf16 *)grads, N);
        else if (aligned16(grads))
            grad_sq_kernel<float, 4><<<grid, CLIP_THREADS, 0, stream>>>(partial, (const float *)grads, N);
        else grad_sq_kernel<float, 1><<<grid, CLIP_THREADS, 0, stream>>>(partial, (const float *)grads, N);
        CUDA_LAUNCHED("grad_norm: partial sums over %lld elements", (long long)N);
    }
    grad_norm_finish_kernel<<<1, CLIP_THREADS, 0, stream>>>(norm, partial, chunks);
    CUDA_LAUNCHED("grad_norm: total");
    return 0;
}

extern "C" int cuda_grad_clip_scale(void *grads, cuda_dtype gdt, int64_t N, const double *norm, double max_norm,
                                    cuda_stream stream) {
    CHECK_OR_FAIL(dtype_valid(gdt), "grad_clip_scale: unknown gradient dtype %d", (int)gdt);
    CHECK_OR_FAIL(N >= 0, "grad_clip_scale: negative size %lld", (long long)N);
    if (N == 0 || max_norm <= 0) return 0;
    unsigned grid = grid_for(N, 256, 8192);
    if (gdt == CUDA_BF16) grad_scale_kernel<bf16><<<grid, 256, 0, stream>>>((bf16 *)grads, N, norm, (float)max_norm);
    else grad_scale_kernel<float><<<grid, 256, 0, stream>>>((float *)grads, N, norm, (float)max_norm);
    CUDA_LAUNCHED("grad_clip_scale over %lld elements", (long long)N);
    return 0;
}

extern "C" int cuda_grad_clip_coef(float *coef, const double *norm, double max_norm, cuda_stream stream) {
    grad_clip_coef_kernel<<<1, 1, 0, stream>>>(coef, norm, (float)max_norm);
    CUDA_LAUNCHED("grad_clip_coef");
    return 0;
}
