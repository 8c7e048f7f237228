// The GPU generator (model/cuda/generate.h): per run, a slab KV cache and the slot state on the device; per
// admission wave, the vision tower and one packed prefill of the wave's prompts straight into their slots,
// the siblings' prompt rows copied, the first tokens drawn; then decode steps over all slots (a CUDA graph
// replayed per step, or the same launches eagerly) until slots finish, which the host collects between
// bursts of steps. Dimension letters as in model/cuda/generate.h.
#include "model/cuda/generate.h"
#include "model/cuda/internal.cuh"

extern "C" {
#include "core/log.h"
#include "core/util.h"
}

#include <stdlib.h>
#include <string.h>

#define SLOT_ALIGN 64 // rows: every slot's range starts on a multiple of 64 rows
#define BURST 8       // decode steps between collections while requests wait for a slot

// ----------------------------------------------------------------------------
// device bookkeeping

static __device__ __forceinline__ bool is_stop(int64_t tok, const int32_t *stop, int n_stop) {
    for (int i = 0; i < n_stop; i++)
        if (tok == stop[i]) return true;
    return false;
}

// Inputs of a decode step: keys per slot, the three M-RoPE axes (all n_past + delta) and the cache row of
// the fed token.
__global__ void step_prep_kernel(int S, int R, const int *n_past, const int64_t *delta, int *nk, int64_t *pos3,
                                 int *cache_rows) {
    for (int b = blockIdx.x * blockDim.x + threadIdx.x; b < S; b += gridDim.x * blockDim.x) {
        int p = n_past[b];
        int64_t pos = (int64_t)p + delta[b];
        nk[b] = p + 1;
        pos3[b] = pos3[S + b] = pos3[2 * S + b] = pos;
        cache_rows[b] = b * R + p;
    }
}

// After the sampler wrote ids / lp: each live slot appends its token, advances, and ends at a stop id or at
// MT tokens; suppression of the stop ids lasts while fewer than min_tokens tokens exist.
__global__ void step_post_kernel(int S, int MT, int min_tokens, const int64_t *ids, const float *lp, int *n_past,
                                 uint64_t *t, int *done, uint8_t *suppress, int32_t *out_ids, float *out_lp,
                                 const int32_t *stop, int n_stop) {
    for (int b = blockIdx.x * blockDim.x + threadIdx.x; b < S; b += gridDim.x * blockDim.x) {
        if (done[b]) continue;
        int64_t tok = ids[b];
        uint64_t k = t[b];
        out_ids[(int64_t)b * MT + k] = (int32_t)tok;
        out_lp[(int64_t)b * MT + k] = lp[b];
        t[b] = ++k;
        n_past[b]++;
        if (is_stop(tok, stop, n_stop) || k >= (uint64_t)MT) done[b] = 1;
        suppress[b] = k < (uint64_t)min_tokens;
    }
}

// A wave's W new samples: sample w goes to slot slots[w] with its first token (drawn from its prompt's
// logits), prompt length, position offset and stream.
__global__ void admit_kernel(int W, int MT, int min_tokens, const int *slots, const int64_t *tokens, const float *lps,
                             const int *plen, const int64_t *deltas, const uint64_t *wstreams, int64_t *ids,
                             int *n_past, int64_t *delta, uint64_t *t, int *done, uint8_t *suppress,
                             uint64_t *streams, int32_t *out_ids, float *out_lp, const int32_t *stop, int n_stop) {
    for (int w = blockIdx.x * blockDim.x + threadIdx.x; w < W; w += gridDim.x * blockDim.x) {
        int b = slots[w];
        int64_t tok = tokens[w];
        ids[b] = tok;
        out_ids[(int64_t)b * MT] = (int32_t)tok;
        out_lp[(int64_t)b * MT] = lps[w];
        t[b] = 1;
        n_past[b] = plen[w];
        delta[b] = deltas[w];
        streams[b] = wstreams[w];
        done[b] = is_stop(tok, stop, n_stop) || MT <= 1;
        suppress[b] = 1 < min_tokens;
    }
}

// ----------------------------------------------------------------------------
// run state

struct KvCache {
    int slots;      // S
    int rows;       // R
    void *k, *v;    // (L, S, R, KV*D) model dtype: keys after rotary, values (one allocation, k first)
    size_t bytes;   // of k and v together
};

// What a wave uploads (laid out identically on the host and the device): per new sample its slot, the packed
// row of its prompt's last token, prompt length, position offset and stream.
struct WaveArrays {
    int *slots, *rows, *plen;
    int64_t *delta;
    uint64_t *stream;
};

static int wave_regions(DevRegion *r, WaveArrays *w, int S) {
    r[0] = DEV_REGION(w->slots, (size_t)S * sizeof(int));
    r[1] = DEV_REGION(w->rows, (size_t)S * sizeof(int));
    r[2] = DEV_REGION(w->plen, (size_t)S * sizeof(int));
    r[3] = DEV_REGION(w->delta, (size_t)S * sizeof(int64_t));
    r[4] = DEV_REGION(w->stream, (size_t)S * sizeof(uint64_t));
    return 5;
}

struct cuda_gen_run_state {
    int S, R, MT, W_req;      // slots, rows per slot, max_tokens, requests per wave at most
    KvCache kv;
    cuda_llm_acts pre;        // prefill activations (keep 0)
    void *memory;             // everything below: one allocation
    size_t bytes;
    // slot state
    int64_t *ids;             // (S) the token each slot feeds next
    int *n_past;              // (S) rows in its cache
    int64_t *delta;           // (S) M-RoPE offset: a token at row p has position p + delta
    uint64_t *t;              // (S) tokens drawn so far = index of the next draw
    int *done;                // (S) 1: no live sequence
    uint8_t *suppress;        // (S) stop ids banned (fewer than min_tokens tokens)
    uint64_t *streams;        // (S) Philox stream of each slot's sample
    float *temperature;       // (S) sampling settings (all slots alike)
    int *top_k;               // (S)
    float *top_p;             // (S)
    int32_t *stop;            // (n_stop)
    int32_t *out_ids;         // (S, MT) drawn tokens
    float *out_lp;            // (S, MT) their log-probs
    // decode step
    int64_t *pos3;            // (3, S)
    int *nk, *cu, *cache_rows; // (S), (S+1), (S)
    const void **kv_ptrs;     // (L, 2, S) each slot's first key / value row per layer
    void *x, *ln1, *qkv, *att, *h, *ln2, *gu, *act, *hidden; // (S, ...) model dtype
    float *rstd1, *rstd2, *rstdf, *cos, *sin;                      // (S), (S), (S), (S, D/2), (S, D/2)
    float *logits;            // (S, V)
    float *lp;                // (S)
    void *attn_ws;            // split-K decode workspace
    size_t attn_ws_bytes;
    // admission
    WaveArrays wave;          // device twins of the wave's host arrays
    int64_t *first_tok;       // (S) first tokens of the wave's samples
    float *first_lp;          // (S)
    uint64_t *zeros;          // (S) draw index 0
    uint8_t *ones;            // (S) all 1: the first draws' suppression of the stop ids
    int *pre_rows;            // (T_cap) cache rows of the prefill's tokens
    void *embeds;             // (NI_cap, C) the wave's image features
    void *wave_host;          // host staging of WaveArrays
    size_t wave_bytes;
    cudaGraphExec_t exec;     // the captured decode step, or NULL
};

static void run_free(cuda_gen_run_state *st) {
    if (st->exec) cudaGraphExecDestroy(st->exec);
    cuda_llm_acts_free(&st->pre);
    if (st->kv.k) cudaFree(st->kv.k);
    if (st->memory) cudaFree(st->memory);
    free(st->wave_host);
    memset(st, 0, sizeof *st);
}

// Allocates the run's device state for S slots of R rows, prefill waves of up to W_req prompts with T_cap
// tokens and NI_cap image rows; initialises the slot state (every slot empty) and the settings.
static int run_alloc(cuda_gen *g, cuda_gen_run_state *st, int S, int R, int W_req, int T_cap, int64_t NI_cap) {
    cuda_model *gm = g->gm;
    const maye_model_config *c = &gm->cfg;
    const maye_gen_config *cfg = &g->cfg;
    memset(st, 0, sizeof *st);
    st->S = S, st->R = R, st->MT = cfg->max_tokens, st->W_req = W_req;
    size_t es = gm_es(gm), Sz = (size_t)S, C = (size_t)c->hidden, QKV = (size_t)gm_qkv(c);
    size_t HD = (size_t)c->heads * c->head_dim, I = (size_t)c->intermediate, KVD = (size_t)c->kv_heads * c->head_dim;
    size_t L = (size_t)c->layers, D2 = (size_t)(c->head_dim / 2), MT = (size_t)cfg->max_tokens;

    // KV cache: keys then values, one allocation
    st->kv.slots = S, st->kv.rows = R;
    size_t half = L * Sz * (size_t)R * KVD * es;
    st->kv.bytes = 2 * half;
    CUDA_TRY(cudaMalloc(&st->kv.k, st->kv.bytes), "allocating a KV cache of %d slots x %d rows (%.3f GB); lower "
             "rollout.max_batch_seqs or rollout.max_batch_tokens", S, R, st->kv.bytes / 1e9);
    st->kv.v = (char *)st->kv.k + half;
    CUDA_TRY(cudaMemsetAsync(st->kv.k, 0, st->kv.bytes, gm->stream), "zeroing the KV cache");

    st->attn_ws_bytes = cuda_attention_workspace_bytes(gm->ctx, S, c->heads, c->head_dim, R);
    DevRegion r[48];
    int n = wave_regions(r, &st->wave, S);
    st->wave_bytes = dev_layout(r, n, NULL);
    r[n++] = DEV_REGION(st->ids, Sz * sizeof(int64_t));
    r[n++] = DEV_REGION(st->n_past, Sz * sizeof(int));
    r[n++] = DEV_REGION(st->delta, Sz * sizeof(int64_t));
    r[n++] = DEV_REGION(st->t, Sz * sizeof(uint64_t));
    r[n++] = DEV_REGION(st->done, Sz * sizeof(int));
    r[n++] = DEV_REGION(st->suppress, Sz);
    r[n++] = DEV_REGION(st->streams, Sz * sizeof(uint64_t));
    r[n++] = DEV_REGION(st->temperature, Sz * sizeof(float));
    r[n++] = DEV_REGION(st->top_k, Sz * sizeof(int));
    r[n++] = DEV_REGION(st->top_p, Sz * sizeof(float));
    r[n++] = DEV_REGION(st->stop, (size_t)(cfg->n_stop > 0 ? cfg->n_stop : 1) * sizeof(int32_t));
    r[n++] = DEV_REGION(st->out_ids, Sz * MT * sizeof(int32_t));
    r[n++] = DEV_REGION(st->out_lp, Sz * MT * sizeof(float));
    r[n++] = DEV_REGION(st->pos3, 3 * Sz * sizeof(int64_t));
    r[n++] = DEV_REGION(st->nk, Sz * sizeof(int));
    r[n++] = DEV_REGION(st->cu, (Sz + 1) * sizeof(int));
    r[n++] = DEV_REGION(st->cache_rows, Sz * sizeof(int));
    r[n++] = DEV_REGION(st->kv_ptrs, L * 2 * Sz * sizeof(void *));
    r[n++] = DEV_REGION(st->x, Sz * C * es);
    r[n++] = DEV_REGION(st->ln1, Sz * C * es);
    r[n++] = DEV_REGION(st->qkv, Sz * QKV * es);
    r[n++] = DEV_REGION(st->att, Sz * HD * es);
    r[n++] = DEV_REGION(st->h, Sz * C * es);
    r[n++] = DEV_REGION(st->ln2, Sz * C * es);
    r[n++] = DEV_REGION(st->gu, Sz * 2 * I * es);
    r[n++] = DEV_REGION(st->act, Sz * I * es);
    r[n++] = DEV_REGION(st->hidden, Sz * C * es);
    r[n++] = DEV_REGION(st->rstd1, Sz * sizeof(float));
    r[n++] = DEV_REGION(st->rstd2, Sz * sizeof(float));
    r[n++] = DEV_REGION(st->rstdf, Sz * sizeof(float));
    r[n++] = DEV_REGION(st->cos, Sz * D2 * sizeof(float));
    r[n++] = DEV_REGION(st->sin, Sz * D2 * sizeof(float));
    r[n++] = DEV_REGION(st->logits, Sz * (size_t)c->vocab * sizeof(float));
    r[n++] = DEV_REGION(st->lp, Sz * sizeof(float));
    r[n++] = DEV_REGION(st->attn_ws, st->attn_ws_bytes);
    r[n++] = DEV_REGION(st->first_tok, Sz * sizeof(int64_t));
    r[n++] = DEV_REGION(st->first_lp, Sz * sizeof(float));
    r[n++] = DEV_REGION(st->zeros, Sz * sizeof(uint64_t));
    r[n++] = DEV_REGION(st->ones, Sz);
    r[n++] = DEV_REGION(st->pre_rows, (size_t)T_cap * sizeof(int));
    r[n++] = DEV_REGION(st->embeds, (size_t)(NI_cap > 0 ? NI_cap : 1) * C * es);
    TRY(dev_alloc_table(r, n, &st->memory, &st->bytes, "the decode state"));
    TRY(cuda_llm_acts_init(&st->pre, gm, T_cap, W_req, 0));
    st->wave_host = malloc(st->wave_bytes);
    if (!st->wave_host) return maye_fail("out of host memory for the admission staging");

    // host images of the slot state, the settings and the per-layer cache pointers, uploaded once
    size_t state_bytes = (char *)st->pos3 - (char *)st->ids; // ids .. out_lp
    unsigned char *h = (unsigned char *)calloc(1, state_bytes);
    const void **kvp = (const void **)malloc(L * 2 * Sz * sizeof(void *));
    int *cu = (int *)malloc((Sz + 1) * sizeof(int));
    if (!h || !kvp || !cu) {
        free(h), free(kvp), free(cu);
        return maye_fail("out of host memory for the decode state");
    }
    size_t off_done = (char *)st->done - (char *)st->ids, off_temp = (char *)st->temperature - (char *)st->ids;
    size_t off_topk = (char *)st->top_k - (char *)st->ids, off_topp = (char *)st->top_p - (char *)st->ids;
    size_t off_stop = (char *)st->stop - (char *)st->ids;
    for (int b = 0; b < S; b++) {
        ((int *)(h + off_done))[b] = 1;
        ((float *)(h + off_temp))[b] = cfg->sample.temperature;
        ((int *)(h + off_topk))[b] = cfg->sample.top_k;
        ((float *)(h + off_topp))[b] = cfg->sample.top_p;
    }
    for (int i = 0; i < cfg->n_stop; i++) ((int32_t *)(h + off_stop))[i] = cfg->stop_ids[i];
    for (size_t l = 0; l < L; l++)
        for (int b = 0; b < S; b++) {
            size_t row0 = (l * Sz + (size_t)b) * (size_t)R * KVD;
            kvp[l * 2 * Sz + (size_t)b] = (char *)st->kv.k + row0 * es;
            kvp[l * 2 * Sz + Sz + (size_t)b] = (char *)st->kv.v + row0 * es;
        }
    for (int b = 0; b <= S; b++) cu[b] = b;
    cudaError_t err = cudaMemcpyAsync(st->ids, h, state_bytes, cudaMemcpyHostToDevice, gm->stream);
    if (err == cudaSuccess)
        err = cudaMemcpyAsync(st->kv_ptrs, kvp, L * 2 * Sz * sizeof(void *), cudaMemcpyHostToDevice, gm->stream);
    if (err == cudaSuccess) err = cudaMemcpyAsync(st->cu, cu, (Sz + 1) * sizeof(int), cudaMemcpyHostToDevice, gm->stream);
    if (err == cudaSuccess) err = cudaMemsetAsync(st->zeros, 0, Sz * sizeof(uint64_t), gm->stream);
    if (err == cudaSuccess) err = cudaMemsetAsync(st->ones, 1, Sz, gm->stream);
    gm_mark(gm, NULL);
    if (err == cudaSuccess) err = cudaStreamSynchronize(gm->stream);
    free(h), free(kvp), free(cu);
    if (err != cudaSuccess) return cuda_fail(err, "initialising the decode state");
    return 0;
}

// ----------------------------------------------------------------------------
// the decode step

// Every launch of one decode step over all S slots (the body of the CUDA graph).
static int step_launch(cuda_gen *g, cuda_gen_run_state *st) {
    cuda_model *gm = g->gm;
    const maye_model_config *c = &gm->cfg;
    const cuda_weights *w = &gm->w;
    cuda_dtype dt = gm->dt;
    cuda_stream s = gm->stream;
    int S = st->S, C = c->hidden, L = c->layers, V = c->vocab, KVD = c->kv_heads * c->head_dim;
    size_t layer_rows = (size_t)S * st->R * KVD;

    GmIdleOnReturn idle_on_return{gm};
    gm_phase(gm, "decode");
    gm_mark(gm, "inputs");
    step_prep_kernel<<<(S + 127) / 128, 128, 0, s>>>(S, st->R, st->n_past, st->delta, st->nk, st->pos3, st->cache_rows);
    CUDA_LAUNCHED("decode step: inputs");
    TRY(cuda_embedding_forward(dt, st->x, st->ids, w->embed, S, C, s));
    TRY(cuda_mrope_cos_sin_forward(st->cos, st->sin, st->pos3, S, S, c->head_dim, c->rope_theta, c->mrope_section, s));
    TRY(cuda_rmsnorm_forward(dt, st->ln1, st->rstd1, st->x, w->ln1_w, S, C, c->rms_eps, s));
    LayerActs la = {st->ln1, st->rstd1, st->qkv, st->att, NULL, st->h, st->ln2, st->rstd2, st->gu};
    for (int l = 0; l < L; l++) {
        AttnPlan ap;
        memset(&ap, 0, sizeof ap);
        ap.kv = st->kv_ptrs + (size_t)l * 2 * S;
        ap.ldkv = KVD;
        ap.cu_q = st->cu, ap.nk = st->nk, ap.B = S, ap.max_nq = 1, ap.max_nk = st->R;
        ap.cache_rows = st->cache_rows;
        ap.cache_k = gm_at(gm, st->kv.k, (size_t)l * layer_rows);
        ap.cache_v = gm_at(gm, st->kv.v, (size_t)l * layer_rows);
        ap.ws = st->attn_ws, ap.ws_bytes = st->attn_ws_bytes;
        TRY(llm_layer_body(gm, l, st->x, st->x, S, st->cos, st->sin, la, st->act, ap));
        gm_mark(gm, "mlp_norm");
        if (l + 1 < L)
            TRY(cuda_rmsnorm_forward(dt, st->ln1, st->rstd1, st->x, gm_layer(gm, w->ln1_w, l + 1, (size_t)C), S, C,
                                     c->rms_eps, s));
        else
            TRY(cuda_rmsnorm_forward(dt, st->hidden, st->rstdf, st->x, w->norm_w, S, C, c->rms_eps, s));
    }
    gm_mark(gm, "lm_head");
    TRY(cuda_gemm(gm->ctx, dt, CUDA_F32, 0, 1, S, V, C, 1.0f, st->hidden, C, w->lm_head, C, 0.0f, st->logits, V, s));
    gm_mark(gm, "sample");
    TRY(cuda_sample_forward(st->ids, st->lp, st->logits, V, S, V, st->temperature, st->top_k, st->top_p, g->cfg.seed,
                            st->streams, st->t, st->stop, g->cfg.n_stop, st->suppress, s));
    gm_mark(gm, "bookkeeping");
    step_post_kernel<<<(S + 127) / 128, 128, 0, s>>>(S, st->MT, g->cfg.min_tokens, st->ids, st->lp, st->n_past, st->t,
                                                     st->done, st->suppress, st->out_ids, st->out_lp, st->stop,
                                                     g->cfg.n_stop);
    CUDA_LAUNCHED("decode step: bookkeeping");
    return 0;
}

// Captures the step into st->exec; on any failure warns, clears the error state and leaves exec NULL.
static void step_capture(cuda_gen *g, cuda_gen_run_state *st) {
    cudaStream_t s = g->gm->stream;
    cudaGraph_t graph = NULL;
    cudaError_t err = cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
    int rc = err == cudaSuccess ? step_launch(g, st) : -1;
    cudaError_t end = err == cudaSuccess ? cudaStreamEndCapture(s, &graph) : err;
    if (rc == 0 && end == cudaSuccess && graph) end = cudaGraphInstantiate(&st->exec, graph, 0);
    if (graph) cudaGraphDestroy(graph);
    if (rc < 0 || end != cudaSuccess || !st->exec) {
        log_warn("CUDA graph capture of the decode step failed (%s); launching the step's kernels every step",
                 rc < 0 ? maye_errmsg() : cudaGetErrorString(end));
        cudaGetLastError();
        if (st->exec) cudaGraphExecDestroy(st->exec);
        st->exec = NULL;
        g->graph_failed = true;
    }
}

// One decode step: the first eagerly (it also fills cuBLASLt's heuristic cache), then captured and replayed;
// every step eagerly while a profile runs (a graph would hide the step's regions).
static int step(cuda_gen *g, cuda_gen_run_state *st, bool *warm) {
    if (g->use_graph && !g->graph_failed && *warm && !st->exec && !g->gm->prof) step_capture(g, st);
    if (st->exec && !g->gm->prof) {
        CUDA_TRY(cudaGraphLaunch(st->exec, g->gm->stream), "replaying the decode step's CUDA graph");
    } else {
        TRY(step_launch(g, st));
    }
    *warm = true;
    g->stats.decode_steps++;
    return 0;
}

// ----------------------------------------------------------------------------
// requests

typedef struct {
    int64_t n_img_tokens; // NI
    int64_t delta;        // rope delta
    int finished;         // samples collected
    double t_admit;
} req_info;

// ----------------------------------------------------------------------------
// admission

// Vision, packed prefill into the first sample's slot, sibling copies and first draws for requests
// [r0, r1) whose samples take the slots `slots` (request r's sample k at slots[(r - r0) * n + k]).
static int admit(cuda_gen *g, cuda_gen_run_state *st, const maye_gen_request *reqs, req_info *ri, maye_gen_result *res,
                 int r0, int r1, const int *slots) {
    cuda_model *gm = g->gm;
    const maye_model_config *c = &gm->cfg;
    const maye_gen_config *cfg = &g->cfg;
    cuda_stream s = gm->stream;
    int nr = r1 - r0, nsmp = cfg->n, W = nr * nsmp, C = c->hidden, V = c->vocab, KVD = c->kv_heads * c->head_dim;
    size_t es = gm_es(gm);
    double t0 = maye_now();
    GmIdleOnReturn idle_on_return{gm};

    // images of the wave, in order
    int64_t NI = 0;
    int n_img = 0, T = 0;
    for (int r = r0; r < r1; r++) NI += ri[r].n_img_tokens, n_img += reqs[r].n_images, T += reqs[r].n_ids;
    int rc = 0;
    if (n_img > 0) {
        const float **parts = (const float **)xmalloc(sizeof(float *) * (size_t)nr);
        int64_t *part_patches = (int64_t *)xmalloc(sizeof(int64_t) * (size_t)nr);
        int64_t *grid = (int64_t *)xmalloc(sizeof(int64_t) * 3 * (size_t)n_img);
        int np = 0, k = 0;
        for (int r = r0; r < r1; r++) {
            if (!reqs[r].n_images) continue;
            parts[np] = reqs[r].pixels, part_patches[np++] = reqs[r].n_patches;
            memcpy(grid + 3 * k, reqs[r].grid_thw, sizeof(int64_t) * 3 * (size_t)reqs[r].n_images);
            k += reqs[r].n_images;
        }
        rc = cuda_vision_forward_parts(gm, parts, part_patches, np, grid, n_img, st->embeds);
        if (rc == 0) rc = cuda_model_sync(gm);
        free(parts), free(part_patches), free(grid);
    }
    double t1 = maye_now();

    // the wave as one packed batch, its keys and values written into the first sample's slot
    int *cu = (int *)xmalloc(sizeof(int) * (size_t)(nr + 1));
    int64_t *ids = (int64_t *)xmalloc(sizeof(int64_t) * (size_t)T), *pos = (int64_t *)xmalloc(sizeof(int64_t) * 3 * (size_t)T);
    int *rows = (int *)xmalloc(sizeof(int) * (size_t)T);
    cu[0] = 0;
    for (int i = 0; i < nr && rc == 0; i++) {
        const maye_gen_request *rq = &reqs[r0 + i];
        cu[i + 1] = cu[i] + rq->n_ids;
        memcpy(ids + cu[i], rq->ids, sizeof(int64_t) * (size_t)rq->n_ids);
        rc = maye_mrope_positions(c, rq->ids, rq->n_ids, rq->grid_thw, rq->n_images, pos + cu[i], T, &ri[r0 + i].delta);
        if (rc < 0) rc = maye_fail_ctx("%s", rq->name ? rq->name : "request");
        for (int j = 0; j < rq->n_ids; j++) rows[cu[i] + j] = slots[i * nsmp] * st->R + j;
    }
    gm_phase(gm, "prefill");
    gm_mark(gm, "cache_rows");
    if (rc == 0)
        rc = cudaMemcpyAsync(st->pre_rows, rows, sizeof(int) * (size_t)T, cudaMemcpyHostToDevice, s) == cudaSuccess
                 ? 0 : maye_fail("uploading the prefill's cache rows");
    if (rc == 0) {
        cuda_llm_batch b = {nr, T, cu, ids, pos, NI ? st->embeds : NULL, NI, NULL};
        rc = llm_forward_impl(gm, &b, &st->pre, st->pre_rows, st->kv.k, st->kv.v, (size_t)st->S * st->R * KVD);
    }
    // siblings: the prompt rows of every layer copied from sample 0's slot
    gm_phase(gm, "first_draw");
    gm_mark(gm, "sibling_copy");
    size_t pitch = (size_t)st->S * st->R * KVD * es;
    for (int i = 0; i < nr && rc == 0; i++)
        for (int k = 1; k < nsmp && rc == 0; k++) {
            size_t src = (size_t)slots[i * nsmp] * st->R * KVD * es, dst = (size_t)slots[i * nsmp + k] * st->R * KVD * es;
            size_t width = (size_t)reqs[r0 + i].n_ids * KVD * es;
            for (int kv = 0; kv < 2 && rc == 0; kv++) {
                char *base = (char *)(kv ? st->kv.v : st->kv.k);
                cudaError_t err = cudaMemcpy2DAsync(base + dst, pitch, base + src, pitch, width, (size_t)c->layers,
                                                    cudaMemcpyDeviceToDevice, s);
                if (err != cudaSuccess) rc = cuda_fail(err, "copying a prompt's cache rows to a sibling slot");
            }
        }

    // first draws: every sample from its prompt's last hidden row, at draw index 0
    WaveArrays h;
    DevRegion wr[5];
    wave_regions(wr, &h, st->S);
    dev_layout(wr, 5, (char *)st->wave_host);
    for (int i = 0; i < nr; i++)
        for (int k = 0; k < nsmp; k++) {
            int w = i * nsmp + k;
            h.slots[w] = slots[w];
            h.rows[w] = cu[i + 1] - 1;
            h.plen[w] = reqs[r0 + i].n_ids;
            h.delta[w] = ri[r0 + i].delta;
            h.stream[w] = maye_sample_stream(reqs[r0 + i].stream_key, k);
        }
    gm_mark(gm, "inputs");
    if (rc == 0) {
        cudaError_t up = cudaMemcpyAsync(st->wave.slots, st->wave_host, st->wave_bytes, cudaMemcpyHostToDevice, s);
        if (up != cudaSuccess) rc = cuda_fail(up, "uploading the wave's samples");
    }
    if (rc == 0) rc = cuda_copy_rows(gm->dt, st->x, C, NULL, gm->dt, st->pre.hidden, C, st->wave.rows, W, C, 0, s);
    gm_mark(gm, "lm_head");
    if (rc == 0)
        rc = cuda_gemm(gm->ctx, gm->dt, CUDA_F32, 0, 1, W, V, C, 1.0f, st->x, C, gm->w.lm_head, C, 0.0f, st->logits, V, s);
    gm_mark(gm, "sample");
    if (rc == 0)
        rc = cuda_sample_forward(st->first_tok, st->first_lp, st->logits, V, W, V, st->temperature, st->top_k, st->top_p,
                                 cfg->seed, st->wave.stream, st->zeros, st->stop, cfg->n_stop,
                                 cfg->min_tokens > 0 ? st->ones : NULL, s);
    gm_mark(gm, "bookkeeping");
    if (rc == 0) {
        admit_kernel<<<(W + 127) / 128, 128, 0, s>>>(W, st->MT, cfg->min_tokens, st->wave.slots, st->first_tok,
                                                     st->first_lp, st->wave.plen, st->wave.delta, st->wave.stream,
                                                     st->ids, st->n_past, st->delta, st->t, st->done, st->suppress,
                                                     st->streams, st->out_ids, st->out_lp, st->stop, cfg->n_stop);
        cudaError_t err = cudaGetLastError();
        gm_mark(gm, NULL);
        if (err == cudaSuccess) err = cudaStreamSynchronize(s);
        if (err != cudaSuccess) rc = cuda_fail(err, "admitting %d samples", W);
    }
    free(cu), free(ids), free(pos), free(rows);
    double t2 = maye_now();
    for (int r = r0; r < r1; r++) {
        res[r].prefill_seconds = t2 - t0;
        ri[r].t_admit = t2;
    }
    g->stats.vision_seconds += t1 - t0;
    g->stats.prefill_seconds += t2 - t0;
    g->stats.requests += nr;
    g->stats.prompt_tokens += T;
    if (rc < 0) return maye_fail_ctx("admitting requests %d..%d on the GPU", r0, r1 - 1);
    return 0;
}

// ----------------------------------------------------------------------------
// collection

// Host view of the slots: which request and sample each holds (-1: free) and the tokens it has.
typedef struct {
    int *req, *index;
    uint64_t *t;
    int *done;
} slot_table;

// Reads every slot's state and moves the finished sequences' tokens into their results (freeing the slots);
// returns the number of slots still live in *live.
static int collect(cuda_gen *g, cuda_gen_run_state *st, slot_table *sl, const maye_gen_request *reqs, req_info *ri,
                   maye_gen_result *res, int *live) {
    cuda_stream s = g->gm->stream;
    int S = st->S;
    gm_mark(g->gm, NULL); // the reads are not charged
    cudaError_t err = cudaMemcpyAsync(sl->done, st->done, sizeof(int) * (size_t)S, cudaMemcpyDeviceToHost, s);
    if (err == cudaSuccess) err = cudaMemcpyAsync(sl->t, st->t, sizeof(uint64_t) * (size_t)S, cudaMemcpyDeviceToHost, s);
    if (err == cudaSuccess) err = cudaStreamSynchronize(s);
    if (err != cudaSuccess) return cuda_fail(err, "reading the slots' state");
    double now = maye_now();
    *live = 0;
    for (int b = 0; b < S; b++) {
        int r = sl->req[b];
        if (r < 0) continue;
        if (!sl->done[b]) {
            (*live)++;
            continue;
        }
        maye_gen_output *o = &res[r].out[sl->index[b]];
        int n = (int)sl->t[b];
        o->n = n;
        o->ids = (int32_t *)xmalloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
        o->logprobs = (float *)xmalloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
        err = cudaMemcpyAsync(o->ids, st->out_ids + (size_t)b * st->MT, sizeof(int32_t) * (size_t)n,
                              cudaMemcpyDeviceToHost, s);
        if (err == cudaSuccess)
            err = cudaMemcpyAsync(o->logprobs, st->out_lp + (size_t)b * st->MT, sizeof(float) * (size_t)n,
                                  cudaMemcpyDeviceToHost, s);
        if (err == cudaSuccess) err = cudaStreamSynchronize(s);
        if (err != cudaSuccess) return cuda_fail(err, "reading the tokens of %s", reqs[r].name ? reqs[r].name : "a request");
        o->finish = MAYE_FINISH_LENGTH;
        for (int i = 0; n > 0 && i < g->cfg.n_stop; i++)
            if (o->ids[n - 1] == g->cfg.stop_ids[i]) o->finish = MAYE_FINISH_STOP;
        o->seconds = now - ri[r].t_admit;
        g->stats.sequences++;
        g->stats.tokens += n;
        if (++ri[r].finished == g->cfg.n) res[r].decode_seconds = now - ri[r].t_admit;
        sl->req[b] = -1;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// engine

int cuda_gen_init(cuda_gen *g, cuda_model *gm, const maye_gen_config *cfg, bool use_graph) {
    memset(g, 0, sizeof *g);
    CHECK_OR_FAIL(cfg->n >= 1, "rollout.n must be at least 1 (got %d)", cfg->n);
    CHECK_OR_FAIL(cfg->max_tokens >= 1, "rollout.max_tokens must be at least 1 (got %d)", cfg->max_tokens);
    CHECK_OR_FAIL(cfg->min_tokens >= 0 && cfg->min_tokens <= cfg->max_tokens,
                  "rollout.min_tokens must be in [0, rollout.max_tokens = %d] (got %d)", cfg->max_tokens,
                  cfg->min_tokens);
    CHECK_OR_FAIL(cfg->max_batch_seqs >= cfg->n, "rollout.max_batch_seqs = %d must be at least rollout.n = %d on the "
                  "GPU (the samples of a request are admitted together)", cfg->max_batch_seqs, cfg->n);
    CHECK_OR_FAIL(cfg->n_stop >= 0 && cfg->n_stop <= MAYE_GEN_MAX_STOP_IDS, "at most %d stop ids (got %d)",
                  MAYE_GEN_MAX_STOP_IDS, cfg->n_stop);
    for (int i = 0; i < cfg->n_stop; i++)
        CHECK_OR_FAIL(cfg->stop_ids[i] >= 0 && cfg->stop_ids[i] < gm->cfg.vocab,
                      "stop id %d is outside the model's vocabulary [0, %d)", cfg->stop_ids[i], gm->cfg.vocab);
    CHECK_OR_FAIL(cfg->n_stop_strings == 0, "rollout.stop_strings are not supported by the GPU generator (stop ids "
                  "are); remove them or generate on the CPU");
    TRY(maye_sample_params_check(&cfg->sample));
    g->gm = gm;
    g->cfg = *cfg;
    g->cfg.stop_strings = NULL;
    g->use_graph = use_graph;
    return 0;
}

void cuda_gen_free(cuda_gen *g) { memset(g, 0, sizeof *g); }

static int cmp_desc_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x < y) - (x > y);
}

// The sum of the k largest of v (n), sorting v.
static int64_t sum_largest(int64_t *v, int n, int k) {
    qsort(v, (size_t)n, sizeof *v, cmp_desc_i64);
    int64_t s = 0;
    for (int i = 0; i < k && i < n; i++) s += v[i];
    return s;
}

int cuda_gen_run(cuda_gen *g, const maye_gen_request *reqs, int n, maye_gen_result *res) {
    const maye_gen_config *cfg = &g->cfg;
    if (n <= 0) return 0;
    memset(res, 0, sizeof *res * (size_t)n);
    req_info *ri = (req_info *)xcalloc((size_t)n, sizeof *ri);
    int64_t *plen = (int64_t *)xmalloc(sizeof(int64_t) * (size_t)n), *nimg = (int64_t *)xmalloc(sizeof(int64_t) * (size_t)n);
    int max_prompt = 1, rc = 0;
    for (int r = 0; r < n && rc == 0; r++) {
        rc = maye_gen_request_check(&g->gm->cfg, &reqs[r], g->cfg.max_tokens, &ri[r].n_img_tokens);
        plen[r] = reqs[r].n_ids, nimg[r] = ri[r].n_img_tokens;
        max_prompt = reqs[r].n_ids > max_prompt ? reqs[r].n_ids : max_prompt;
    }
    // slots of R rows within the KV budget
    int R = (max_prompt + cfg->max_tokens + SLOT_ALIGN - 1) / SLOT_ALIGN * SLOT_ALIGN;
    int64_t total = (int64_t)n * cfg->n, by_budget = cfg->max_batch_tokens / R;
    int S = (int)(cfg->max_batch_seqs < total ? cfg->max_batch_seqs : total);
    if (by_budget < S) S = (int)by_budget;
    if (rc == 0 && S < cfg->n)
        rc = maye_fail("rollout.max_batch_tokens = %lld holds %lld slot(s) of %d rows (longest prompt %d + "
                       "rollout.max_tokens %d, rounded to %d) but the %d samples of a request need %d; raise "
                       "rollout.max_batch_tokens", (long long)cfg->max_batch_tokens, (long long)by_budget, R, max_prompt,
                       cfg->max_tokens, SLOT_ALIGN, cfg->n, cfg->n);
    cuda_gen_run_state st;
    memset(&st, 0, sizeof st);
    int W_req = S / cfg->n;
    if (rc == 0) {
        int64_t T_cap = sum_largest(plen, n, W_req), NI_cap = sum_largest(nimg, n, W_req);
        rc = run_alloc(g, &st, S, R, W_req, (int)T_cap, NI_cap);
    }
    free(plen), free(nimg);
    if (rc < 0) {
        run_free(&st);
        free(ri);
        return -1;
    }
    size_t held = st.kv.bytes + st.bytes + st.pre.bytes + g->gm->scratch_bytes;
    if (held > g->peak_bytes) g->peak_bytes = held;
    for (int r = 0; r < n; r++) res[r].out = (maye_gen_output *)xcalloc((size_t)cfg->n, sizeof(maye_gen_output));

    slot_table sl;
    sl.req = (int *)xmalloc(sizeof(int) * (size_t)S);
    sl.index = (int *)xmalloc(sizeof(int) * (size_t)S);
    sl.t = (uint64_t *)xcalloc((size_t)S, sizeof(uint64_t));
    sl.done = (int *)xcalloc((size_t)S, sizeof(int));
    int *wave_slots = (int *)xmalloc(sizeof(int) * (size_t)S);
    for (int b = 0; b < S; b++) sl.req[b] = -1;
    int next = 0, live = 0;
    bool warm = false;
    while (rc == 0) {
        // admit whole requests while their samples fit in the free slots
        int r0 = next, w = 0;
        for (int b = 0, k = 0; b < S && next < n; b++) {
            if (sl.req[b] >= 0) continue;
            wave_slots[w++] = b;
            if (++k == cfg->n) k = 0, next++;
        }
        w = (next - r0) * cfg->n;
        for (int i = 0; i < w; i++) sl.req[wave_slots[i]] = r0 + i / cfg->n, sl.index[wave_slots[i]] = i % cfg->n;
        if (next > r0) rc = admit(g, &st, reqs, ri, res, r0, next, wave_slots);
        if (rc == 0) rc = collect(g, &st, &sl, reqs, ri, res, &live);
        if (rc < 0) break;
        if (live == 0) {
            if (next == n) break;
            continue;
        }
        // a burst of steps: to the longest remaining sequence when nothing waits, else up to BURST
        int lo = cfg->max_tokens, hi = 0;
        for (int b = 0; b < S; b++) {
            if (sl.req[b] < 0 || sl.done[b]) continue;
            int left = cfg->max_tokens - (int)sl.t[b];
            lo = left < lo ? left : lo, hi = left > hi ? left : hi;
        }
        int burst = next < n ? (lo < BURST ? lo : BURST) : hi;
        if (burst < 1) burst = 1;
        double t0 = maye_now();
        for (int i = 0; i < burst && rc == 0; i++) rc = step(g, &st, &warm);
        if (rc == 0) rc = cuda_model_sync(g->gm);
        g->stats.decode_seconds += maye_now() - t0;
    }
    free(sl.req), free(sl.index), free(sl.t), free(sl.done), free(wave_slots);
    run_free(&st);
    free(ri);
    if (rc < 0) maye_gen_result_free(res, n, cfg->n);
    return rc;
}
