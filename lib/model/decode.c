// The CPU steps of the generation engine (see decode.h): the row-invariant matmul, the prefill of one prompt
// into its KV range, and the decode step over the live batch. Every per-row buffer of the decode workspace
// has a row stride rounded up to 16 floats, so all rows are 64-byte aligned and vectorised loops split every
// row the same way whatever its index.
#include "model/decode.h"

#include "core/error.h"
#include "kernels/cpu/kernels.h"
#include "model/lanes.h"

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define TILE_R 4            // input rows per tile
#define TILE_J 3            // weight rows per tile
#define BLOCK_FLOATS 16384  // weight floats per parallel block (64 KB, stays in L2 while the row tiles pass)
#define ATT_HEADS 3         // query heads of a kv group the decode attention takes together
#define ATT_KEYS 4          // keys per score tile (ATT_HEADS x ATT_KEYS accumulators)
#define ATT_COLS 32         // value columns per output tile (ATT_HEADS x ATT_VECS accumulators)
#define ATT_VECS (ATT_COLS / 8)
#define ATT_BLOCK 64        // cached rows per key block when a work item is a whole sequence
#define MATMUL_MAX_N 3      // weight matrices one fused product takes (q, k, v)
#define ROWS_PARALLEL_MIN 8 // sequences from which a decode step spreads its per-row work over the threads

static inline size_t pad16(size_t n) { return (n + 15) / 16 * 16; }

// ----------------------------------------------------------------------------
// row-invariant matmul

// An R x J tile of out against weight rows w (J, C). The inputs' first C8 columns are read in groups of 8:
// row r's group g at x + g * xk + r * xs (xk = 32, xs = 8 for a packed tile; xk = 8, xs = its row stride
// for plain rows); the tail columns come from the plain rows xt (row stride ldt).
static inline __attribute__((always_inline)) void tile(float *out, int64_t ldo, const float *x, int64_t xk,
                                                       int64_t xs, const float *xt, int64_t ldt, const float *w,
                                                       const float *bias, int C, int R, int J) {
    lanes8 acc[TILE_R * TILE_J]; // row r, weight row j at r * J + j
    // zeroed with constant indices: a loop to R * J makes GCC zero the array in memory with a call to memset
    // in every tile call (8% of a 32-row decode step)
    for (int r = 0; r < TILE_R; r++)
        for (int j = 0; j < TILE_J; j++)
            if (r < R && j < J) acc[r * J + j] = lanes_zero();
    int C8 = C & ~7;
    // unrolled by two: the loop's own instructions held the 4 x 3 tile at about 73 GFLOP/s on one core of the
    // 2-core test machine, unrolled it runs at about 86 (same operations in the same order)
#pragma GCC unroll 2
    for (int k = 0, g = 0; k < C8; k += 8, g++) {
        lanes8 wv[TILE_J];
        for (int j = 0; j < J; j++) wv[j] = lanes_load(w + (size_t)j * C + k);
        for (int r = 0; r < R; r++) {
            lanes8 xv = lanes_load(x + g * xk + r * xs);
            for (int j = 0; j < J; j++) acc[r * J + j] = lanes_fma(xv, wv[j], acc[r * J + j]);
        }
    }
    float sums[TILE_R * TILE_J];
    lanes_sums(sums, acc, R * J);
    for (int r = 0; r < R; r++) {
        for (int j = 0; j < J; j++) {
            float s = sums[r * J + j];
            for (int k = C8; k < C; k++) s = fmaf(xt[r * ldt + k], w[(size_t)j * C + k], s);
            out[r * ldo + j] = bias ? s + bias[j] : s;
        }
    }
}

#define TILE_FN(R, J)                                                                                          \
    static void tile_##R##x##J(float *out, int64_t ldo, const float *x, int64_t xk, int64_t xs, const float *xt, \
                               int64_t ldt, const float *w, const float *bias, int C) {                        \
        tile(out, ldo, x, xk, xs, xt, ldt, w, bias, C, R, J);                                                  \
    }
TILE_FN(1, 1) TILE_FN(1, 2) TILE_FN(1, 3)
TILE_FN(2, 1) TILE_FN(2, 2) TILE_FN(2, 3)
TILE_FN(3, 1) TILE_FN(3, 2) TILE_FN(3, 3)
TILE_FN(4, 1) TILE_FN(4, 2) TILE_FN(4, 3)

typedef void (*tile_fn)(float *, int64_t, const float *, int64_t, int64_t, const float *, int64_t, const float *,
                        const float *, int);
static const tile_fn tiles[TILE_R][TILE_J] = {
    {tile_1x1, tile_1x2, tile_1x3},
    {tile_2x1, tile_2x2, tile_2x3},
    {tile_3x1, tile_3x2, tile_3x3},
    {tile_4x1, tile_4x2, tile_4x3},
};

size_t maye_matmul_rows_pack_floats(int T, int C) {
    return (size_t)(T + TILE_R - 1) / TILE_R * TILE_R * (size_t)(C > 8 ? C : 8);
}

// Packs the first C8 columns of T rows as tiles of TILE_R rows, 8 columns at a time: (T/4, C8/8, 4, 8), the
// rows past T zero; into buf when given, else into a new allocation. One contiguous stream per tile instead
// of four strided ones.
static float *pack_rows(float *buf, const float *inp, int64_t ldi, int T, int C8) {
    float *p = buf;
    if (!p && posix_memalign((void **)&p, 64, sizeof(float) * maye_matmul_rows_pack_floats(T, C8)) != 0)
        maye_die("out of memory: packing %d x %d inputs", T, C8);
    for (int t0 = 0; t0 < T; t0 += TILE_R) {
        float *dst = p + (size_t)t0 * C8;
        for (int k = 0; k < C8; k += 8)
            for (int r = 0; r < TILE_R; r++, dst += 8) {
                if (t0 + r < T) memcpy(dst, inp + (t0 + r) * ldi + k, 8 * sizeof(float));
                else memset(dst, 0, 8 * sizeof(float));
            }
    }
    return p;
}

// ----------------------------------------------------------------------------
// block ranges: static shares with stealing

// The blocks [0, nb) of a parallel product in one contiguous share per thread. A thread takes blocks from
// the front of its own share and, once that is empty, from the back of the others', so a thread slowed by the
// machine does not hold the step back (with even static shares one of two threads sat idle for 14% of the
// matmul time of a 32-row decode step). Every block is computed whole by one thread with the same arithmetic,
// so the results do not depend on who computes what.
#define SHARES_MAX 64

typedef struct {
    _Alignas(64) _Atomic uint64_t fb; // front << 32 | back: the blocks [front, back) not yet taken
} block_share;

static void shares_init(block_share *sh, int ns, int nb) {
    for (int t = 0; t < ns; t++) {
        uint64_t lo = (uint64_t)nb * t / ns, hi = (uint64_t)nb * (t + 1) / ns;
        atomic_init(&sh[t].fb, lo << 32 | hi);
    }
}

// Takes the front block of share t (front) or its back block (!front); -1 when the share is empty.
static int share_take(block_share *sh, int t, int front) {
    uint64_t fb = atomic_load_explicit(&sh[t].fb, memory_order_relaxed);
    for (;;) {
        uint32_t f = (uint32_t)(fb >> 32), bk = (uint32_t)fb;
        if (f >= bk) return -1;
        uint64_t next = front ? (uint64_t)(f + 1) << 32 | bk : (uint64_t)f << 32 | (bk - 1);
        if (atomic_compare_exchange_weak_explicit(&sh[t].fb, &fb, next, memory_order_relaxed, memory_order_relaxed))
            return front ? (int)f : (int)bk - 1;
    }
}

// The next block for thread t of ns: its own share's front, else the back of the first other share with
// blocks left; -1 when all are taken. *own tells which.
static int next_block(block_share *sh, int ns, int t, int *own) {
    int b = t < ns ? share_take(sh, t, 1) : -1;
    *own = b >= 0;
    for (int i = 1; b < 0 && i <= ns; i++) b = share_take(sh, (t + i) % ns, 0);
    return b;
}

// ----------------------------------------------------------------------------
// products

// Block b of a product over several matrices (first[i]: matrix i's first block; jb weight rows per block):
// matrix *mi, its rows [*j0, *j1).
static void block_rows(const int *first, const int *OC, int jb, int b, int *mi, int *j0, int *j1) {
    int i = 0;
    while (b >= first[i + 1]) i++;
    *mi = i, *j0 = (b - first[i]) * jb, *j1 = *j0 + jb < OC[i] ? *j0 + jb : OC[i];
}

// Products of one input with n weight matrices in one parallel loop over all their blocks (the input packed
// once): out[i] (T, OC[i]) = inp (T, C) @ w[i] (OC[i], C)^T + bias[i].
static void matmul_rows_n(int n, float *const *out, const int64_t *ldo, const float *const *w,
                          const float *const *bias, const int *OC, const float *inp, int64_t ldi, int T, int C,
                          float *pack) {
    if (T <= 0) return;
    int C8 = C > 0 ? C & ~7 : 0;
    int packed = T >= TILE_R;
    float *pk = packed ? pack_rows(pack, inp, ldi, T, C8) : NULL;
    int jb = BLOCK_FLOATS / (C > 0 ? C : 1) / TILE_J * TILE_J;
    if (jb < TILE_J) jb = TILE_J;
    int first[MATMUL_MAX_N + 1] = {0}; // first block of each matrix
    int64_t work = 0;
    for (int i = 0; i < n; i++) {
        first[i + 1] = first[i] + (OC[i] + jb - 1) / jb;
        work += (int64_t)T * OC[i] * (C > 0 ? C : 1);
    }
    int parallel = work > (1 << 18) && first[n] > 1;
    int ns = parallel ? omp_get_max_threads() : 1;
    ns = ns < SHARES_MAX ? ns : SHARES_MAX;
    block_share sh[SHARES_MAX];
    shares_init(sh, ns, first[n]);
#pragma omp parallel if (parallel)
    {
        int t = omp_get_thread_num(), own;
        for (int b = next_block(sh, ns, t, &own); b >= 0;) {
            int i, j0, j1;
            block_rows(first, OC, jb, b, &i, &j0, &j1);
            // Software prefetch into L2 of the block this thread will likely take next (the next one of its
            // share, or the one below when stealing), a share before every tile call of this one; packed
            // inputs only (one row is bandwidth-bound and the hardware prefetcher streams it). Without it
            // every block's first row tile waits on DRAM: about 12% slower with 32 rows.
            int nb = own ? b + 1 : b - 1;
            const float *pf = NULL, *pf_end = NULL;
            if (packed && nb >= 0 && nb < first[n]) {
                int ni, p0, p1;
                block_rows(first, OC, jb, nb, &ni, &p0, &p1);
                pf = w[ni] + (size_t)p0 * C, pf_end = w[ni] + (size_t)p1 * C;
            }
            int calls = (j1 - j0 + TILE_J - 1) / TILE_J * ((T + TILE_R - 1) / TILE_R);
            int64_t pf_lines = pf < pf_end ? (pf_end - pf + 15) / 16 : 0, pf_per = (pf_lines + calls - 1) / calls;
            for (int j = j0; j < j1; j += TILE_J) {
                int J = j1 - j < TILE_J ? j1 - j : TILE_J;
                const float *wj = w[i] + (size_t)j * C;
                const float *bj = bias[i] ? bias[i] + j : NULL;
                float *o = out[i] + j;
                for (int r0 = 0; r0 < T; r0 += TILE_R) {
                    int R = T - r0 < TILE_R ? T - r0 : TILE_R;
                    for (int64_t q = 0; q < pf_per && pf < pf_end; q++, pf += 16) __builtin_prefetch(pf, 0, 2);
                    if (packed)
                        tiles[R - 1][J - 1](o + r0 * ldo[i], ldo[i], pk + (size_t)r0 * C8, 32, 8, inp + r0 * ldi, ldi,
                                            wj, bj, C);
                    else
                        tiles[R - 1][J - 1](o + r0 * ldo[i], ldo[i], inp + r0 * ldi, 8, ldi, inp + r0 * ldi, ldi,
                                            wj, bj, C);
                }
            }
            b = next_block(sh, ns, t, &own);
        }
    }
    if (pk != pack) free(pk);
}

void maye_matmul_rows(float *out, int64_t ldo, const float *inp, int64_t ldi, const float *w, const float *bias,
                      int T, int C, int OC, float *pack) {
    if (OC > 0) matmul_rows_n(1, &out, &ldo, &w, &bias, &OC, inp, ldi, T, C, pack);
}

// ----------------------------------------------------------------------------
// prefill

void maye_prefill(const maye_model *m, maye_llm_acts *a, maye_kv_pool *pool, int h, const int64_t *ids, int T,
                  const int64_t *pos, const float *image_embeds, float *logits) {
    const maye_model_config *c = &m->cfg;
    int C = c->hidden;
    embedding_forward(a->embeds, ids, m->w.embed, T, C);
    int64_t row = 0;
    for (int t = 0; t < T; t++)
        if (ids[t] == c->image_token_id)
            memcpy(a->embeds + (size_t)t * C, image_embeds + (size_t)(row++) * C, sizeof(float) * (size_t)C);
    maye_mrope_tables(c, pos, T, T, a->cos, a->sin);
    memcpy(a->resid, a->embeds, sizeof(float) * (size_t)T * C);
    int cu[2] = {0, T};
    float *kp, *vp;
    maye_kv_view kv = {1, cu, NULL, &kp, &vp};
    // the attention scratch depends on T alone, so the blocking of the prompt's rows does not depend on how
    // large the activations were made for other prompts
    size_t scratch_n = attention_scratch_floats(T);
    if (scratch_n > a->scratch_n) scratch_n = a->scratch_n;
    for (int l = 0; l < c->layers; l++) {
        maye_llm_layer_acts la = maye_llm_acts_layer(a, c, l);
        kp = maye_kv_keys(pool, l, h);
        vp = maye_kv_values(pool, l, h);
        maye_llm_layer_forward(m, l, a->resid, a->resid, T, a->cos, a->sin, &kv, &la, a->scratch, scratch_n);
    }
    rmsnorm_forward(a->hidden, NULL, a->resid + (size_t)(T - 1) * C, m->w.norm_w, 1, C, c->rms_eps);
    maye_matmul_rows(logits, c->vocab, a->hidden, C, m->w.lm_head, NULL, 1, C, c->vocab, NULL);
}

// ----------------------------------------------------------------------------
// decode attention

// Scores of nh <= ATT_HEADS queries q[h] (the query heads of one kv group) against nk keys (row stride ldk):
// S[h][j] = dot(q[h], k_j) * scale with the arithmetic of maye_matmul_rows (lane sums over D8 in order, the
// fixed reduction, then the tail by fmaf). Four keys of all the heads at a time: each key vector loaded once
// for the heads, 7 loads for 12 FMAs, and every score's own operations are those of one head alone.
static inline __attribute__((always_inline)) void scores_heads(float *const *S, const float *const *q, int nh,
                                                               const float *K, int64_t ldk, int nk, int D,
                                                               float scale) {
    int D8 = D & ~7, j = 0;
    for (; j + ATT_KEYS <= nk; j += ATT_KEYS) {
        lanes8 acc[ATT_HEADS * ATT_KEYS]; // head h, key i at h * ATT_KEYS + i
        for (int h = 0; h < ATT_HEADS; h++)
            for (int i = 0; i < ATT_KEYS; i++)
                if (h < nh) acc[h * ATT_KEYS + i] = lanes_zero();
        for (int d = 0; d < D8; d += 8) {
            lanes8 qv[ATT_HEADS];
            for (int h = 0; h < nh; h++) qv[h] = lanes_load(q[h] + d);
            for (int i = 0; i < ATT_KEYS; i++) {
                lanes8 kv = lanes_load(K + (j + i) * ldk + d);
                for (int h = 0; h < nh; h++) acc[h * ATT_KEYS + i] = lanes_fma(qv[h], kv, acc[h * ATT_KEYS + i]);
            }
        }
        float sums[ATT_HEADS * ATT_KEYS];
        lanes_sums(sums, acc, nh * ATT_KEYS);
        for (int h = 0; h < nh; h++)
            for (int k = 0; k < ATT_KEYS; k++) S[h][j + k] = sums[h * ATT_KEYS + k];
    }
    for (; j < nk; j++)
        for (int h = 0; h < nh; h++) {
            lanes8 acc = lanes_zero();
            for (int d = 0; d < D8; d += 8) acc = lanes_fma(lanes_load(q[h] + d), lanes_load(K + j * ldk + d), acc);
            S[h][j] = lanes_sum(acc);
        }
    for (int h = 0; h < nh; h++)
        for (j = 0; j < nk; j++) {
            float s = S[h][j];
            for (int d = D8; d < D; d++) s = fmaf(q[h][d], K[j * ldk + d], s);
            S[h][j] = s * scale;
        }
}

// S (nk) = softmax(S): the maximum, exponentials of S - max clamped at -87, their sum, then the products
// with its inverse, in a fixed order.
static void softmax_row(float *S, int nk) {
    int j;
    float mx = lanes_row_max(S, nk);
    lanes8 vm = lanes_set1(mx), lo = lanes_set1(-87.0f), acc = lanes_zero();
    for (j = 0; j + 8 <= nk; j += 8) {
        lanes8 e = lanes_exp(lanes_max(lanes_sub(lanes_load(S + j), vm), lo));
        lanes_store(S + j, e);
        acc = lanes_fma(e, lanes_set1(1.0f), acc);
    }
    float sum = lanes_sum(acc);
    for (; j < nk; j++) sum += S[j] = lanes_exp1(S[j] - mx);
    float inv = 1.0f / sum;
    for (j = 0; j < nk; j++) S[j] *= inv;
}

// o[h][d] = sum_j P[h][j] v_j[d] in key order for nh <= ATT_HEADS heads sharing the values (row stride ldk),
// or o[h][d] + that sum when `more` (the next keys of a sum begun by an earlier call: the same operations as
// one call over all the keys): ATT_COLS columns of all the heads at a time, each value vector loaded once for
// the heads.
static inline __attribute__((always_inline)) void values_heads(float *const *o, const float *const *P, int nh,
                                                               const float *Vv, int64_t ldk, int nk, int D,
                                                               int more) {
    int d0 = 0;
    for (; d0 + ATT_COLS <= D; d0 += ATT_COLS) {
        lanes8 acc[ATT_HEADS * ATT_VECS]; // head h, column vector c at h * ATT_VECS + c
        for (int h = 0; h < ATT_HEADS; h++)
            for (int c = 0; c < ATT_VECS; c++)
                if (h < nh) acc[h * ATT_VECS + c] = more ? lanes_load(o[h] + d0 + 8 * c) : lanes_zero();
        for (int j = 0; j < nk; j++) {
            lanes8 p[ATT_HEADS];
            for (int h = 0; h < nh; h++) p[h] = lanes_set1(P[h][j]);
            const float *vj = Vv + (size_t)j * ldk + d0;
            for (int c = 0; c < ATT_VECS; c++) {
                lanes8 vv = lanes_load(vj + 8 * c);
                for (int h = 0; h < nh; h++) acc[h * ATT_VECS + c] = lanes_fma(p[h], vv, acc[h * ATT_VECS + c]);
            }
        }
        for (int h = 0; h < nh; h++)
            for (int c = 0; c < ATT_VECS; c++) lanes_store(o[h] + d0 + 8 * c, acc[h * ATT_VECS + c]);
    }
    for (; d0 + 8 <= D; d0 += 8)
        for (int h = 0; h < nh; h++) {
            lanes8 acc = more ? lanes_load(o[h] + d0) : lanes_zero();
            for (int j = 0; j < nk; j++)
                acc = lanes_fma(lanes_set1(P[h][j]), lanes_load(Vv + (size_t)j * ldk + d0), acc);
            lanes_store(o[h] + d0, acc);
        }
    for (int h = 0; h < nh; h++)
        for (int d = d0; d < D; d++) {
            float a = more ? o[h][d] : 0.0f;
            for (int j = 0; j < nk; j++) a = fmaf(P[h][j], Vv[(size_t)j * ldk + d], a);
            o[h][d] = a;
        }
}

// scores_heads and values_heads compiled for each head count, so their loops over heads unroll
static void scores_tile(int nh, float *const *S, const float *const *q, const float *K, int64_t ldk, int nk, int D,
                        float scale) {
    switch (nh) {
    case 1: scores_heads(S, q, 1, K, ldk, nk, D, scale); break;
    case 2: scores_heads(S, q, 2, K, ldk, nk, D, scale); break;
    default: scores_heads(S, q, 3, K, ldk, nk, D, scale); break;
    }
}

static void values_tile(int nh, float *const *o, const float *const *P, const float *Vv, int64_t ldk, int nk, int D,
                        int more) {
    switch (nh) {
    case 1: values_heads(o, P, 1, Vv, ldk, nk, D, more); break;
    case 2: values_heads(o, P, 2, Vv, ldk, nk, D, more); break;
    default: values_heads(o, P, 3, Vv, ldk, nk, D, more); break;
    }
}

// Attention of the query heads [h0, h1) of one sequence, all of kv group h0 / group or not, over keys
// [j0, j1) (a step of the scores, or of the value sums with `more` when j0 > 0), ATT_HEADS heads of a group at
// a time. S: one row of ld_s floats per head of the sequence. pass 0: scores, pass 1: value sums.
static void heads_keys(int pass, float *o, const float *q, const float *K, const float *Vv, int64_t ldk, int j0, int j1,
                       int h0, int h1, int group, int D, float scale, float *S, size_t ld_s) {
    for (int h = h0; h < h1;) {
        int g = h / group, end = (g + 1) * group < h1 ? (g + 1) * group : h1;
        int nh = end - h < ATT_HEADS ? end - h : ATT_HEADS;
        float *oh[ATT_HEADS], *Sh[ATT_HEADS];
        const float *qh[ATT_HEADS];
        for (int i = 0; i < nh; i++)
            oh[i] = o + (int64_t)(h + i) * D, qh[i] = q + (int64_t)(h + i) * D, Sh[i] = S + (h + i) * ld_s + j0;
        if (pass == 0)
            scores_tile(nh, Sh, qh, K + (size_t)j0 * ldk + (size_t)g * D, ldk, j1 - j0, D, scale);
        else
            values_tile(nh, oh, (const float *const *)Sh, Vv + (size_t)j0 * ldk + (size_t)g * D, ldk, j1 - j0, D,
                        j0 > 0);
        h += nh;
    }
}

// The attention of query heads [h0, h1) of one sequence (o, q: rows of all its heads) against its nk cached
// rows (row stride ldk, every kv head in each): s_j = (q . k_j) / sqrt(D), p = softmax(s), o = sum_j p_j v_j,
// each head with the same operations whatever the others. Keys in blocks of `block` rows for all the heads at
// once, so the cached rows stream from memory whole (the heads of a row are interleaved). S: a row of ld_s
// floats per head of the sequence.
static void attend_rows(float *o, const float *q, const float *K, const float *Vv, int64_t ldk, int nk, int h0,
                        int h1, int group, int D, float scale, float *S, size_t ld_s, int block) {
    for (int j0 = 0; j0 < nk; j0 += block)
        heads_keys(0, o, q, K, Vv, ldk, j0, j0 + block < nk ? j0 + block : nk, h0, h1, group, D, scale, S, ld_s);
    for (int h = h0; h < h1; h++) softmax_row(S + h * ld_s, nk);
    for (int j0 = 0; j0 < nk; j0 += block)
        heads_keys(1, o, q, K, Vv, ldk, j0, j0 + block < nk ? j0 + block : nk, h0, h1, group, D, scale, S, ld_s);
}

// One query row per sequence against its n[b] cached rows, every head h with kv head g = h / (H/KV), each
// (b, h) with the same operations however the work is split (so a sequence's result does not depend on the
// others): with enough sequences one work item per sequence, its rows streamed in key blocks for all its
// heads; else one per sequence and kv group (all the keys of one group at a time). scores: a row of ld_scores
// floats per head per thread.
static void decode_attention(float *out, int64_t ldo, const float *q, int64_t ldq, float *const *k, float *const *v,
                             int KVD, const int *n, int B, int H, int KV, int D, float *scores, size_t ld_scores) {
    int group = H / KV;
    float scale = 1.0f / sqrtf((float)D);
    int64_t work = 0;
    for (int b = 0; b < B; b++) work += (int64_t)n[b] * H * D;
    int parallel = work > (1 << 16), per_sequence = B >= 2 * omp_get_max_threads();
    if (per_sequence) {
#pragma omp parallel for schedule(dynamic) if (parallel)
        for (int b = 0; b < B; b++)
            attend_rows(out + b * ldo, q + b * ldq, k[b], v[b], KVD, n[b], 0, H, group, D, scale,
                        scores + (size_t)omp_get_thread_num() * H * ld_scores, ld_scores, ATT_BLOCK);
    } else {
#pragma omp parallel for collapse(2) schedule(dynamic) if (parallel)
        for (int b = 0; b < B; b++)
            for (int g = 0; g < KV; g++)
                attend_rows(out + b * ldo, q + b * ldq, k[b], v[b], KVD, n[b], g * group, (g + 1) * group, group,
                            D, scale, scores + (size_t)omp_get_thread_num() * H * ld_scores, ld_scores,
                            n[b] > 0 ? n[b] : 1);
    }
}

// ----------------------------------------------------------------------------
// decode step

// gate (n) = silu(gate) * up = gate / (1 + exp(-gate)) * up, exp's argument clamped to [-87, 88].
static void silu_mul_row(float *gate, const float *up, int n) {
    lanes8 lo = lanes_set1(-87.0f), hi = lanes_set1(88.0f), one = lanes_set1(1.0f), zero = lanes_zero();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        lanes8 g = lanes_load(gate + i);
        lanes8 e = lanes_exp(lanes_min(lanes_max(lanes_sub(zero, g), lo), hi));
        lanes_store(gate + i, lanes_mul(lanes_div(g, lanes_add(one, e)), lanes_load(up + i)));
    }
    for (; i < n; i++) {
        float x = -gate[i];
        x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
        gate[i] = gate[i] / (1.0f + maye_sample_expf(x)) * up[i];
    }
}

void maye_decode_ws_init(maye_decode_ws *ws, const maye_model_config *c, int B_cap, int max_ctx) {
    memset(ws, 0, sizeof *ws);
    if (B_cap < 1) B_cap = 1;
    if (max_ctx < 1) max_ctx = 1;
    ws->B_cap = B_cap, ws->max_ctx = max_ctx;
    ws->ldv = (int)pad16((size_t)c->vocab);
    size_t B = (size_t)B_cap, C = pad16((size_t)c->hidden), HD = pad16((size_t)c->heads * c->head_dim),
           KVD = pad16((size_t)c->kv_heads * c->head_dim), I = pad16((size_t)c->intermediate),
           D2 = pad16((size_t)c->head_dim / 2), widest = C > HD ? (C > I ? C : I) : (HD > I ? HD : I);
    struct {
        float **ptr;
        size_t n;
    } table[] = {
        {&ws->x, B * C},     {&ws->ln, B * C},    {&ws->q, B * HD},    {&ws->k, B * KVD},
        {&ws->v, B * KVD},   {&ws->att, B * HD},  {&ws->h, B * C},     {&ws->gate, B * I},
        {&ws->up, B * I},    {&ws->cos, B * D2},  {&ws->sin, B * D2},  {&ws->logits, B * (size_t)ws->ldv},
        {&ws->pack, maye_matmul_rows_pack_floats(B_cap, (int)widest)},
    };
    size_t n = 0;
    for (size_t i = 0; i < sizeof table / sizeof *table; i++) n += pad16(table[i].n);
    void *mem = NULL;
    if (posix_memalign(&mem, 64, n * sizeof(float)) != 0)
        maye_die("out of memory: %.2f GB of decode workspace for %d sequences", n * 4.0 / 1e9, B_cap);
    ws->memory = mem;
    size_t off = 0;
    for (size_t i = 0; i < sizeof table / sizeof *table; i++) {
        *table[i].ptr = ws->memory + off;
        off += pad16(table[i].n);
    }
    ws->pos = xmalloc(sizeof(int64_t) * 3 * B);
    ws->nk = xmalloc(sizeof(int) * B);
    ws->kp = xmalloc(sizeof(float *) * B);
    ws->vp = xmalloc(sizeof(float *) * B);
}

void maye_decode_ws_free(maye_decode_ws *ws) {
    free(ws->memory), free(ws->scores), free(ws->pos), free(ws->nk), free(ws->kp), free(ws->vp);
    memset(ws, 0, sizeof *ws);
}

void maye_decode_step(const maye_model *m, maye_decode_ws *ws, const maye_kv_pool *pool, int B, const int64_t *ids,
                      const int64_t *pos, const int *kv, const int *n_past) {
    const maye_model_config *c = &m->cfg;
    const maye_weights *w = &m->w;
    int C = c->hidden, H = c->heads, KV = c->kv_heads, D = c->head_dim, HD = H * D, KVD = KV * D,
        I = c->intermediate, V = c->vocab;
    int64_t ldc = (int64_t)pad16((size_t)C), ldhd = (int64_t)pad16((size_t)HD),
            ldkv = (int64_t)pad16((size_t)KVD), ldi = (int64_t)pad16((size_t)I), ld2 = (int64_t)pad16((size_t)D / 2);
    float *pk = ws->pack, eps = c->rms_eps;
    if (B > ws->B_cap) maye_die("decode step of %d sequences in a workspace for %d", B, ws->B_cap);
    for (int b = 0; b < B; b++)
        if (n_past[b] + 1 > ws->max_ctx)
            maye_die("decode step: context of %d rows in a workspace for %d", n_past[b] + 1, ws->max_ctx);
    // a row of max_ctx scores per head per thread
    size_t ld_scores = pad16((size_t)ws->max_ctx), need = (size_t)omp_get_max_threads() * c->heads * ld_scores;
    if (need > ws->n_scores) {
        free(ws->scores);
        if (posix_memalign((void **)&ws->scores, 64, need * sizeof(float)) != 0)
            maye_die("out of memory: %.2f GB of attention scores", need * 4.0 / 1e9);
        ws->n_scores = need;
    }
    int rows_parallel = B >= ROWS_PARALLEL_MIN; // the per-row work between the matmuls, spread over threads

#pragma omp parallel for schedule(static) if (rows_parallel)
    for (int b = 0; b < B; b++) {
        memcpy(ws->x + b * ldc, w->embed + (size_t)ids[b] * C, sizeof(float) * (size_t)C);
        for (int a = 0; a < 3; a++) ws->pos[a * B + b] = pos[b];
        ws->nk[b] = n_past[b] + 1;
        maye_mrope_tables(c, ws->pos + b, B, 1, ws->cos + b * ld2, ws->sin + b * ld2);
        rmsnorm_forward(ws->ln + b * ldc, NULL, ws->x + b * ldc, w->ln1_w, 1, C, eps);
    }
    for (int l = 0; l < c->layers; l++) {
        size_t L = (size_t)l;
        const float *next_norm = l + 1 < c->layers ? w->ln1_w + (L + 1) * C : w->norm_w;
        {
            float *const o[3] = {ws->q, ws->k, ws->v};
            const int64_t ld[3] = {ldhd, ldkv, ldkv};
            const float *const wt[3] = {w->q_w + L * HD * C, w->k_w + L * KVD * C, w->v_w + L * KVD * C};
            const float *const bs[3] = {w->q_b + L * HD, w->k_b + L * KVD, w->v_b + L * KVD};
            const int oc[3] = {HD, KVD, KVD};
            matmul_rows_n(3, o, ld, wt, bs, oc, ws->ln, ldc, B, C, pk);
        }
#pragma omp parallel for schedule(static) if (rows_parallel)
        for (int b = 0; b < B; b++) {
            rope_forward(ws->q + b * ldhd, ws->cos + b * ld2, ws->sin + b * ld2, 1, H, D, HD);
            rope_forward(ws->k + b * ldkv, ws->cos + b * ld2, ws->sin + b * ld2, 1, KV, D, KVD);
            ws->kp[b] = maye_kv_keys(pool, l, kv[b]);
            ws->vp[b] = maye_kv_values(pool, l, kv[b]);
            memcpy(ws->kp[b] + (size_t)n_past[b] * KVD, ws->k + b * ldkv, sizeof(float) * (size_t)KVD);
            memcpy(ws->vp[b] + (size_t)n_past[b] * KVD, ws->v + b * ldkv, sizeof(float) * (size_t)KVD);
        }
        decode_attention(ws->att, ldhd, ws->q, ldhd, ws->kp, ws->vp, KVD, ws->nk, B, H, KV, D, ws->scores, ld_scores);
        maye_matmul_rows(ws->h, ldc, ws->att, ldhd, w->o_w + L * C * HD, NULL, B, HD, C, pk);
#pragma omp parallel for schedule(static) if (rows_parallel)
        for (int b = 0; b < B; b++) {
            residual_forward(ws->h + b * ldc, ws->h + b * ldc, ws->x + b * ldc, C);
            rmsnorm_forward(ws->ln + b * ldc, NULL, ws->h + b * ldc, w->ln2_w + L * C, 1, C, eps);
        }
        {
            float *const o[2] = {ws->gate, ws->up};
            const int64_t ld[2] = {ldi, ldi};
            const float *const wt[2] = {w->gate_w + L * I * C, w->up_w + L * I * C};
            const float *const bs[2] = {NULL, NULL};
            const int oc[2] = {I, I};
            matmul_rows_n(2, o, ld, wt, bs, oc, ws->ln, ldc, B, C, pk);
        }
#pragma omp parallel for schedule(static) if (rows_parallel)
        for (int b = 0; b < B; b++) silu_mul_row(ws->gate + b * ldi, ws->up + b * ldi, I);
        maye_matmul_rows(ws->x, ldc, ws->gate, ldi, w->down_w + L * C * I, NULL, B, I, C, pk);
#pragma omp parallel for schedule(static) if (rows_parallel)
        for (int b = 0; b < B; b++) {
            residual_forward(ws->x + b * ldc, ws->x + b * ldc, ws->h + b * ldc, C);
            rmsnorm_forward(ws->ln + b * ldc, NULL, ws->x + b * ldc, next_norm, 1, C, eps);
        }
    }
    maye_matmul_rows(ws->logits, ws->ldv, ws->ln, ldc, w->lm_head, NULL, B, C, V, pk);
}
