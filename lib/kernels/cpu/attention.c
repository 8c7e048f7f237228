// Attention over packed segments (causal for the language model, bidirectional per image/window for the
// vision tower). Each (segment, head) pair is one OpenMP task; its queries go in blocks whose score matrix
// S = Q K^T lives in the thread's scratch slice, so memory grows with (block rows x keys), never T^2 per
// head. Both products are single-threaded cblas_sgemm calls inside the parallel region. The backward walks the
// same blocks, rebuilds the probabilities from the saved log-sum-exp and runs five products per block.
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/vec_math.h"

#include "core/error.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>

#define ATTN_BLOCK_ROWS 128 // query rows per score block

// ----------------------------------------------------------------------------
// scratch

size_t attention_scratch_floats(int max_nk) {
    int threads = omp_get_max_threads();
    return (size_t)threads * ATTN_BLOCK_ROWS * (size_t)(max_nk > 0 ? max_nk : 1);
}

// ----------------------------------------------------------------------------
// forward

// Softmax of one score row in place over its first `lim` entries (the rest set to 0); returns the
// log-sum-exp of the row: -inf for a row that sees no key (lim <= 0), whose probabilities are all 0.
static float softmax_row(float *s, int lim, int n) {
    if (lim <= 0) {
        for (int j = 0; j < n; j++) s[j] = 0.0f;
        return -INFINITY;
    }
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int j = 0; j < lim; j++) mx = s[j] > mx ? s[j] : mx;
    float sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < lim; j++) {
        float e = vec_expf(s[j] - mx);
        s[j] = e;
        sum += e;
    }
    float inv = 1.0f / sum;
#pragma omp simd
    for (int j = 0; j < lim; j++) s[j] *= inv;
    for (int j = lim; j < n; j++) s[j] = 0.0f;
    return mx + logf(sum);
}

void attention_forward(float *out, int64_t ldo, float *lse, const float *q, int64_t ldq, const float *const *k,
                       const float *const *v, int64_t ldkv, const int *cu_q, const int *nk, int B, int H, int KV,
                       int D, int causal, float *scratch, size_t scratch_n) {
    int max_nk = 1;
    for (int b = 0; b < B; b++) max_nk = nk[b] > max_nk ? nk[b] : max_nk;
    if (scratch_n < (size_t)max_nk)
        maye_die("attention scratch of %zu floats is below one row of %d keys", scratch_n, max_nk);
    int threads = omp_get_max_threads();
    if ((size_t)threads * (size_t)max_nk > scratch_n) threads = (int)(scratch_n / (size_t)max_nk);
    if (threads < 1) threads = 1;
    size_t slice = scratch_n / (size_t)threads;
    int qb = (int)(slice / (size_t)max_nk);
    if (qb > ATTN_BLOCK_ROWS) qb = ATTN_BLOCK_ROWS;
    if (qb < 1) qb = 1;
    int group = H / KV;
    float scale = 1.0f / sqrtf((float)D);

#pragma omp parallel for collapse(2) schedule(dynamic) num_threads(threads)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            int nq = cu_q[b + 1] - cu_q[b], n_k = nk[b];
            if (nq <= 0 || n_k <= 0) continue;
            int off = n_k - nq; // keys before the first query (cached prefix)
            float *S = scratch + (size_t)omp_get_thread_num() * slice;
            const float *K = k[b] + (size_t)(h / group) * D, *Vp = v[b] + (size_t)(h / group) * D;
            for (int i0 = 0; i0 < nq; i0 += qb) {
                int nb = nq - i0 < qb ? nq - i0 : qb;
                int kend = causal ? off + i0 + nb : n_k;
                if (kend > n_k) kend = n_k;
                float *O = out + (int64_t)(cu_q[b] + i0) * ldo + (int64_t)h * D;
                if (kend <= 0) { // causal with fewer keys than queries: these rows see no key (output 0)
                    for (int r = 0; r < nb; r++) {
                        for (int d = 0; d < D; d++) O[(int64_t)r * ldo + d] = 0.0f;
                        if (lse) lse[(int64_t)(cu_q[b] + i0 + r) * H + h] = -INFINITY;
                    }
                    continue;
                }
                const float *Q = q + (int64_t)(cu_q[b] + i0) * ldq + (int64_t)h * D;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, kend, D, scale, Q, (int)ldq, K, (int)ldkv,
                            0.0f, S, kend);
                for (int r = 0; r < nb; r++) {
                    int lim = causal ? off + i0 + r + 1 : kend;
                    if (lim > kend) lim = kend;
                    float l = softmax_row(S + (size_t)r * kend, lim, kend);
                    if (lse) lse[(int64_t)(cu_q[b] + i0 + r) * H + h] = l;
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb, D, kend, 1.0f, S, kend, Vp, (int)ldkv,
                            0.0f, O, (int)ldo);
            }
        }
    }
}

// ----------------------------------------------------------------------------
// backward

size_t attention_backward_scratch_floats(int64_t total_nk, int max_nk, int H, int D) {
    int threads = omp_get_max_threads();
    if (max_nk < 1) max_nk = 1;
    return 2 * (size_t)(total_nk > 0 ? total_nk : 0) * H * D + (size_t)threads * 2 * ATTN_BLOCK_ROWS * max_nk;
}

// With P = softmax(S), S = scale Q K^T, O = P V and dP = dO V^T:
//   dS = P * (dP - rowsum(P * dP)),  dQ = scale dS K,  dK = scale dS^T Q,  dV = P^T dO.
void attention_backward(float *dq, float *const *dk, float *const *dv, const float *dout, int64_t ldo,
                        const float *q, int64_t ldq, const float *const *k, const float *const *v, int64_t ldkv,
                        const float *lse, const int *cu_q, const int *nk, int B, int H, int KV, int D, int causal,
                        float *scratch, size_t scratch_n) {
    int max_nk = 1;
    int64_t total = 0;
    int64_t *koff = xmalloc(sizeof(int64_t) * (size_t)(B + 1)); // first row of each segment's keys in dkh/dvh
    for (int b = 0; b < B; b++) {
        koff[b] = total;
        total += nk[b] > 0 ? nk[b] : 0;
        max_nk = nk[b] > max_nk ? nk[b] : max_nk;
    }
    koff[B] = total;
    int HD = H * D, group = H / KV;
    size_t part = (size_t)total * HD;
    if (scratch_n < 2 * part + 2 * (size_t)max_nk)
        maye_die("attention backward scratch of %zu floats is below %zu", scratch_n, 2 * part + 2 * (size_t)max_nk);
    float *dkh = scratch, *dvh = scratch + part; // (total, H*D) key / value gradients of each query head
    size_t avail = scratch_n - 2 * part;
    int threads = omp_get_max_threads();
    if ((size_t)threads * 2 * max_nk > avail) threads = (int)(avail / (2 * (size_t)max_nk));
    if (threads < 1) threads = 1;
    size_t slice = avail / (size_t)threads;
    int qb = (int)(slice / (2 * (size_t)max_nk));
    if (qb > ATTN_BLOCK_ROWS) qb = ATTN_BLOCK_ROWS;
    float scale = 1.0f / sqrtf((float)D);
#pragma omp parallel for schedule(static) if (part > 65536)
    for (size_t i = 0; i < 2 * part; i++) scratch[i] = 0.0f;

#pragma omp parallel for collapse(2) schedule(dynamic) num_threads(threads)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            int nq = cu_q[b + 1] - cu_q[b], n_k = nk[b];
            if (nq <= 0 || n_k <= 0) continue;
            int off = n_k - nq;
            float *P = scratch + 2 * part + (size_t)omp_get_thread_num() * slice;
            float *dS = P + (size_t)qb * max_nk;
            const float *K = k[b] + (size_t)(h / group) * D, *Vp = v[b] + (size_t)(h / group) * D;
            float *dK = dkh + (size_t)koff[b] * HD + (size_t)h * D, *dV = dvh + (size_t)koff[b] * HD + (size_t)h * D;
            for (int i0 = 0; i0 < nq; i0 += qb) {
                int nb = nq - i0 < qb ? nq - i0 : qb;
                int kend = causal ? off + i0 + nb : n_k;
                if (kend > n_k) kend = n_k;
                if (kend <= 0) continue; // rows that see no key: no gradient
                int64_t row0 = cu_q[b] + i0;
                const float *Q = q + row0 * ldq + (int64_t)h * D, *dO = dout + row0 * ldo + (int64_t)h * D;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, kend, D, scale, Q, (int)ldq, K, (int)ldkv,
                            0.0f, P, kend);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, kend, D, 1.0f, dO, (int)ldo, Vp, (int)ldkv,
                            0.0f, dS, kend);
                for (int r = 0; r < nb; r++) {
                    int lim = causal ? off + i0 + r + 1 : kend;
                    if (lim > kend) lim = kend;
                    if (lim < 0) lim = 0;
                    float l = lse[(row0 + r) * H + h], delta = 0;
                    float *p = P + (size_t)r * kend, *ds = dS + (size_t)r * kend;
#pragma omp simd reduction(+ : delta)
                    for (int j = 0; j < lim; j++) {
                        p[j] = vec_expf(p[j] - l);
                        delta += p[j] * ds[j];
                    }
#pragma omp simd
                    for (int j = 0; j < lim; j++) ds[j] = p[j] * (ds[j] - delta);
                    for (int j = lim; j < kend; j++) p[j] = 0.0f, ds[j] = 0.0f;
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb, D, kend, scale, dS, kend, K, (int)ldkv,
                            1.0f, dq + row0 * ldq + (int64_t)h * D, (int)ldq);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kend, D, nb, scale, dS, kend, Q, (int)ldq, 1.0f,
                            dK, HD);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kend, D, nb, 1.0f, P, kend, dO, (int)ldo, 1.0f,
                            dV, HD);
            }
        }
    }

    // each key/value head gets the sum of its query heads, in head order
    int *seg = xmalloc(sizeof(int) * (size_t)(total ? total : 1));
    for (int b = 0; b < B; b++)
        for (int64_t r = koff[b]; r < koff[b + 1]; r++) seg[r] = b;
#pragma omp parallel for schedule(static) if (part > 65536)
    for (int64_t r = 0; r < total; r++) {
        int b = seg[r];
        float *gk = dk[b] + (r - koff[b]) * ldkv, *gv = dv[b] + (r - koff[b]) * ldkv;
        const float *pk = dkh + (size_t)r * HD, *pv = dvh + (size_t)r * HD;
        for (int h = 0; h < H; h++) {
            float *ok = gk + (size_t)(h / group) * D, *ov = gv + (size_t)(h / group) * D;
            const float *ik = pk + (size_t)h * D, *iv = pv + (size_t)h * D;
#pragma omp simd
            for (int d = 0; d < D; d++) ok[d] += ik[d], ov[d] += iv[d];
        }
    }
    free(seg);
    free(koff);
}
