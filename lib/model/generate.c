// The generation engine (see generate.h): request checks, the admission queue over the KV pool, prefill once
// per request, batched decode steps, per-sequence sampling, stop tokens and strings, results.
#include "model/generate.h"

#include "core/error.h"
#include "core/rng.h"
#include "core/util.h"
#include "text/chat.h"

#include <cjson/cJSON.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define UTF8_REPLACEMENT "\xEF\xBF\xBD" // what the decoder emits for bytes that do not (yet) form a character
#define MAX_PENDING_IDS 8                // ids held back while their bytes may still complete a character

// ----------------------------------------------------------------------------
// engine

int maye_gen_engine_init(maye_gen_engine *e, const maye_model *m, const maye_gen_config *cfg) {
    memset(e, 0, sizeof *e);
    CHECK_OR_FAIL(cfg->n >= 1, "rollout.n must be at least 1 (got %d)", cfg->n);
    CHECK_OR_FAIL(cfg->max_tokens >= 1, "rollout.max_tokens must be at least 1 (got %d)", cfg->max_tokens);
    CHECK_OR_FAIL(cfg->min_tokens >= 0 && cfg->min_tokens <= cfg->max_tokens,
                  "rollout.min_tokens must be in [0, rollout.max_tokens = %d] (got %d)", cfg->max_tokens,
                  cfg->min_tokens);
    CHECK_OR_FAIL(cfg->max_batch_seqs >= 1, "rollout.max_batch_seqs must be at least 1 (got %d)", cfg->max_batch_seqs);
    CHECK_OR_FAIL(cfg->n_stop >= 0 && cfg->n_stop <= MAYE_GEN_MAX_STOP_IDS, "at most %d stop ids (got %d)",
                  MAYE_GEN_MAX_STOP_IDS, cfg->n_stop);
    for (int i = 0; i < cfg->n_stop; i++)
        CHECK_OR_FAIL(cfg->stop_ids[i] >= 0 && cfg->stop_ids[i] < m->cfg.vocab,
                      "stop id %d is outside the model's vocabulary [0, %d)", cfg->stop_ids[i], m->cfg.vocab);
    for (int i = 0; i < cfg->n_stop_strings; i++)
        CHECK_OR_FAIL(cfg->stop_strings[i] && cfg->stop_strings[i][0], "rollout.stop_strings[%d] is empty", i);
    CHECK_OR_FAIL(cfg->n_stop_strings == 0 || cfg->tok, "rollout.stop_strings need a tokenizer to decode the text");
    TRY(maye_sample_params_check(&cfg->sample));
    TRY(maye_kv_pool_init(&e->pool, &m->cfg, cfg->max_batch_tokens));
    e->m = m;
    e->cfg = *cfg;
    e->cfg.stop_strings = xmalloc(sizeof(char *) * (size_t)(cfg->n_stop_strings + 1));
    for (int i = 0; i < cfg->n_stop_strings; i++) e->cfg.stop_strings[i] = xstrdup(cfg->stop_strings[i]);
    return 0;
}

void maye_gen_engine_free(maye_gen_engine *e) {
    maye_kv_pool_free(&e->pool);
    for (int i = 0; i < e->cfg.n_stop_strings; i++) free(e->cfg.stop_strings[i]);
    free(e->cfg.stop_strings);
    memset(e, 0, sizeof *e);
}

void maye_gen_result_free(maye_gen_result *res, int n, int n_out) {
    for (int r = 0; r < n; r++) {
        for (int s = 0; res[r].out && s < n_out; s++) {
            free(res[r].out[s].ids);
            free(res[r].out[s].logprobs);
            free(res[r].out[s].text);
        }
        free(res[r].out);
    }
    memset(res, 0, sizeof *res * (size_t)n);
}

// ----------------------------------------------------------------------------
// stop ids

static void add_stop_id(int32_t *ids, int *n, int64_t id, int vocab) {
    if (id < 0 || id >= vocab || *n >= MAYE_GEN_MAX_STOP_IDS) return;
    for (int i = 0; i < *n; i++)
        if (ids[i] == id) return;
    ids[(*n)++] = (int32_t)id;
}

static void add_eos(const cJSON *eos, int32_t *ids, int *n, int vocab) {
    if (cJSON_IsNumber(eos)) add_stop_id(ids, n, (int64_t)eos->valuedouble, vocab);
    const cJSON *it;
    if (cJSON_IsArray(eos))
        cJSON_ArrayForEach(it, eos) if (cJSON_IsNumber(it)) add_stop_id(ids, n, (int64_t)it->valuedouble, vocab);
}

int maye_gen_stop_ids(const maye_model *m, const maye_tokenizer *tok, int32_t *ids, int *n) {
    *n = 0;
    if (tok) {
        int32_t chat[MAYE_CHAT_MAX_STOP];
        int nc;
        TRY(maye_chat_stop_ids(tok, chat, &nc));
        for (int i = 0; i < nc; i++) add_stop_id(ids, n, chat[i], m->cfg.vocab);
    }
    cJSON *root = m->config_json ? cJSON_Parse(m->config_json) : NULL;
    if (root) {
        add_eos(cJSON_GetObjectItemCaseSensitive(root, "eos_token_id"), ids, n, m->cfg.vocab);
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(root, "text_config");
        add_eos(cJSON_GetObjectItemCaseSensitive(text, "eos_token_id"), ids, n, m->cfg.vocab);
        cJSON_Delete(root);
    }
    return 0;
}

// ----------------------------------------------------------------------------
// run state

typedef struct {
    const maye_gen_request *rq;
    int64_t n_image_tokens; // NI
    int64_t reserve;        // KV rows per sample: prompt + max_tokens
    int64_t rope_delta;
    float *logits;          // (ldv) the prompt's next-token logits; NULL before the prefill, after the last admission
    int prefilled, admitted, finished;
    int held;               // a range with the prompt rows, parked for the next sample (-1: none)
    double t_admit;
} req_state;

typedef struct {
    int req, index;
    int kv;             // KV handle
    int n_past;         // rows in the cache
    int64_t token;      // the token fed at the next step
    uint64_t stream;
    maye_gen_output *out;
    maye_buf text;      // decoded text of ids [0, n_dec) while stop strings are looked for
    int n_dec;
    size_t scan_from;   // stop strings are looked for from this byte on
    double t_first, t_last;
} seq_state;

typedef struct {
    maye_gen_engine *e;
    const maye_model *m;
    req_state *rs;
    int n_req;
    maye_gen_result *res;
    seq_state *live; // (max_batch_seqs)
    int n_live;
    maye_decode_ws ws;
    maye_llm_acts acts;
    maye_sampler *samplers; // one per thread
    int n_samplers;
    float *row;             // (ldv) the first-token logits of a newly admitted sample
    int64_t *ids, *pos;     // (max_batch_seqs) decode step inputs
    int *kv, *n_past;
    int32_t *tokens;        // (max_batch_seqs) drawn tokens
    float *lps;             // (max_batch_seqs) their log-probs
} gen_run;

static float *alloc_row(int n) {
    void *p = NULL;
    if (posix_memalign(&p, 64, sizeof(float) * (size_t)n) != 0) maye_die("out of memory: logits row");
    return p;
}

// ----------------------------------------------------------------------------
// request checks

int maye_gen_request_check(const maye_model_config *c, const maye_gen_request *rq, int max_tokens,
                           int64_t *n_image_tokens) {
    const char *name = rq->name ? rq->name : "request";
    CHECK_OR_FAIL(rq->n_ids >= 1, "%s: the prompt is empty", name);
    CHECK_OR_FAIL((int64_t)rq->n_ids + max_tokens < (1 << 30), "%s: prompt of %d tokens is too long", name,
                  rq->n_ids);
    int64_t pads = 0;
    for (int t = 0; t < rq->n_ids; t++) {
        CHECK_OR_FAIL(rq->ids[t] >= 0 && rq->ids[t] < c->vocab,
                      "%s: prompt id %lld at position %d is outside the model's vocabulary [0, %d)", name,
                      (long long)rq->ids[t], t, c->vocab);
        pads += rq->ids[t] == c->image_token_id;
    }
    if (maye_vision_check(c, rq->n_patches, rq->grid_thw, rq->n_images, n_image_tokens) < 0)
        return maye_fail_ctx("%s", name);
    CHECK_OR_FAIL(rq->n_images == 0 || rq->pixels, "%s: image patches are missing", name);
    CHECK_OR_FAIL(pads == *n_image_tokens, "%s: the prompt has %lld image-pad tokens (id %lld) but its images "
                  "need %lld (t*h*w/%d per image)", name, (long long)pads, (long long)c->image_token_id,
                  (long long)*n_image_tokens, c->vision.merge * c->vision.merge);
    return 0;
}

// The request checks plus its KV range: prompt + max_tokens rows must fit in the pool.
static int check_request(const maye_gen_engine *e, const maye_gen_request *rq, req_state *st) {
    const char *name = rq->name ? rq->name : "request";
    TRY(maye_gen_request_check(&e->m->cfg, rq, e->cfg.max_tokens, &st->n_image_tokens));
    st->reserve = maye_kv_pool_round(&e->pool, (int64_t)rq->n_ids + e->cfg.max_tokens);
    CHECK_OR_FAIL(st->reserve <= e->pool.n_rows, "%s: prompt of %d tokens + rollout.max_tokens %d needs %lld KV-cache "
                  "rows but rollout.max_batch_tokens allows %lld; raise rollout.max_batch_tokens or lower "
                  "rollout.max_tokens", name, rq->n_ids, e->cfg.max_tokens, (long long)st->reserve,
                  (long long)e->pool.n_rows);
    st->rq = rq;
    st->held = -1;
    return 0;
}

// ----------------------------------------------------------------------------
// text and stop conditions

// Appends the text of ids (special tokens left out; ids the tokenizer does not know add nothing).
static int decode_ids(const maye_tokenizer *tok, const int32_t *ids, int n, maye_buf *out) {
    for (int i = 0; i < n;) {
        int j = i;
        size_t len;
        while (j < n && maye_tokenizer_id_token(tok, ids[j], &len)) j++;
        if (j > i) TRY(maye_tokenizer_decode(tok, ids + i, (size_t)(j - i), 1, out));
        i = j + 1;
    }
    return 0;
}

// The earliest occurrence of any stop string in text[from, len); NULL if none.
static const char *find_stop(const maye_gen_config *cfg, const char *text, size_t len, size_t from) {
    const char *best = NULL;
    for (int i = 0; i < cfg->n_stop_strings; i++) {
        const char *hit = memmem(text + from, len - from, cfg->stop_strings[i], strlen(cfg->stop_strings[i]));
        if (hit && (!best || hit < best)) best = hit;
    }
    return best;
}

// Decodes the ids not yet in s->text (holding back up to MAX_PENDING_IDS ids whose bytes may still complete
// a character) and returns 1 when the text now contains a stop string.
static int stop_string_seen(const maye_gen_config *cfg, seq_state *s) {
    maye_buf piece = {0};
    int n = s->out->n;
    if (decode_ids(cfg->tok, s->out->ids + s->n_dec, n - s->n_dec, &piece) < 0) {
        maye_buf_free(&piece);
        return -1;
    }
    size_t rl = sizeof UTF8_REPLACEMENT - 1;
    int partial = piece.len >= rl && !memcmp(piece.data + piece.len - rl, UTF8_REPLACEMENT, rl);
    if (partial && n - s->n_dec < MAX_PENDING_IDS) {
        maye_buf_free(&piece);
        return 0;
    }
    maye_buf_append(&s->text, piece.data ? piece.data : "", piece.len);
    maye_buf_free(&piece);
    s->n_dec = n;
    if (!s->text.len) return 0;
    if (find_stop(cfg, s->text.data, s->text.len, s->scan_from)) return 1;
    size_t longest = 0;
    for (int i = 0; i < cfg->n_stop_strings; i++) {
        size_t l = strlen(cfg->stop_strings[i]);
        longest = l > longest ? l : longest;
    }
    s->scan_from = s->text.len >= longest ? s->text.len - longest + 1 : 0;
    return 0;
}

// Appends a drawn token and decides whether the sequence ends: returns 1 (ended, out->finish set), 0, or -1.
static int take_token(const maye_gen_config *cfg, seq_state *s, int32_t token, float logprob) {
    maye_gen_output *o = s->out;
    o->ids[o->n] = token;
    o->logprobs[o->n] = logprob;
    o->n++;
    s->t_last = maye_now();
    if (o->n == 1) s->t_first = s->t_last;
    for (int i = 0; i < cfg->n_stop; i++)
        if (token == cfg->stop_ids[i]) {
            o->finish = MAYE_FINISH_STOP;
            return 1;
        }
    if (cfg->n_stop_strings && o->n >= cfg->min_tokens) {
        int seen = stop_string_seen(cfg, s);
        if (seen < 0) return -1;
        if (seen) {
            o->finish = MAYE_FINISH_STOP;
            return 1;
        }
    }
    if (o->n >= cfg->max_tokens) {
        o->finish = MAYE_FINISH_LENGTH;
        return 1;
    }
    s->token = token;
    return 0;
}

// The final text of an ended sequence: its ids without the stop token, cut before the earliest stop string.
static int final_text(const maye_gen_config *cfg, seq_state *s) {
    maye_gen_output *o = s->out;
    int n = o->n;
    for (int i = 0; n > 0 && i < cfg->n_stop; i++)
        if (o->ids[n - 1] == cfg->stop_ids[i]) {
            n--;
            break;
        }
    maye_buf full = {0};
    if (decode_ids(cfg->tok, o->ids, n, &full) < 0) {
        maye_buf_free(&full);
        return -1;
    }
    maye_buf_putc(&full, 0);
    full.len--;
    if (cfg->n_stop_strings && o->n >= cfg->min_tokens) {
        const char *hit = find_stop(cfg, full.data, full.len, 0);
        if (hit) {
            full.len = (size_t)(hit - full.data);
            full.data[full.len] = 0;
            o->finish = MAYE_FINISH_STOP;
        }
    }
    o->text = full.data;
    return 0;
}

int maye_gen_output_finish(const maye_gen_config *cfg, maye_gen_output *out) {
    seq_state s;
    memset(&s, 0, sizeof s);
    s.out = out;
    int n = out->n, rc = 0;
    for (int k = 1; k <= n && cfg->n_stop_strings && cfg->tok; k++) {
        int stop_id = 0;
        for (int i = 0; i < cfg->n_stop; i++) stop_id |= out->ids[k - 1] == cfg->stop_ids[i];
        if (stop_id) break; // the sequence ended here, before any stop-string check
        if (k < cfg->min_tokens) continue;
        out->n = k; // stop_string_seen decodes the ids [n_dec, out->n)
        int seen = stop_string_seen(cfg, &s);
        if (seen != 0) {
            rc = seen < 0 ? -1 : 0;
            if (seen > 0) n = k, out->finish = MAYE_FINISH_STOP;
            break;
        }
    }
    out->n = n;
    if (rc == 0 && cfg->tok) rc = final_text(cfg, &s);
    maye_buf_free(&s.text);
    return rc;
}

// ----------------------------------------------------------------------------
// sequences

// Ends sequence s: final text, timing, its KV range parked for a waiting sibling or released.
static int end_sequence(gen_run *run, seq_state *s) {
    maye_gen_engine *e = run->e;
    req_state *st = &run->rs[s->req];
    int rc = e->cfg.tok ? final_text(&e->cfg, s) : 0;
    maye_buf_free(&s->text);
    s->out->seconds = s->t_last - s->t_first;
    e->stats.sequences++;
    e->stats.tokens += s->out->n;
    if (st->admitted < e->cfg.n && st->held < 0) st->held = s->kv;
    else maye_kv_release(&e->pool, s->kv);
    if (++st->finished == e->cfg.n) run->res[s->req].decode_seconds = maye_now() - st->t_admit;
    if (e->progress) maye_progress_update(e->progress, e->progress->done + 1);
    return rc;
}

// Vision tower and prompt prefill of request r into KV range kv; the logits go to st->logits.
static int prefill_request(gen_run *run, int r, int kv) {
    maye_gen_engine *e = run->e;
    const maye_model *m = run->m;
    req_state *st = &run->rs[r];
    const maye_gen_request *rq = st->rq;
    double t0 = maye_now();
    float *embeds = NULL;
    int rc = 0, tiles = cpu_matmul_fixed_tiles(1); // bits independent of the thread count
    if (rq->n_images) {
        embeds = xmalloc(sizeof(float) * (size_t)st->n_image_tokens * (size_t)m->cfg.hidden);
        rc = maye_vision_forward(m, rq->pixels, rq->n_patches, rq->grid_thw, rq->n_images, embeds);
    }
    double t1 = maye_now();
    int64_t *pos = xmalloc(sizeof(int64_t) * 3 * (size_t)rq->n_ids);
    if (rc == 0)
        rc = maye_mrope_positions(&m->cfg, rq->ids, rq->n_ids, rq->grid_thw, rq->n_images, pos, rq->n_ids,
                                  &st->rope_delta);
    if (rc == 0) {
        st->logits = alloc_row(run->ws.ldv);
        maye_prefill(m, &run->acts, &e->pool, kv, rq->ids, rq->n_ids, pos, embeds, st->logits);
        st->prefilled = 1;
    }
    cpu_matmul_fixed_tiles(tiles);
    free(embeds);
    free(pos);
    double t2 = maye_now();
    run->res[r].prefill_seconds = t2 - t0;
    e->stats.vision_seconds += t1 - t0;
    e->stats.prefill_seconds += t2 - t0;
    e->stats.prompt_tokens += rq->n_ids;
    e->stats.requests++;
    if (rc < 0) return maye_fail_ctx("%s", rq->name ? rq->name : "request");
    return 0;
}

// Admits sample `index` of request r: returns 1 (admitted; it may already have ended), 0 (no room), -1.
static int admit(gen_run *run, int r, int index) {
    maye_gen_engine *e = run->e;
    const maye_gen_config *cfg = &e->cfg;
    req_state *st = &run->rs[r];
    int kv = st->held;
    if (kv >= 0) {
        st->held = -1;
    } else {
        kv = maye_kv_alloc(&e->pool, st->reserve);
        if (kv < 0) return 0;
        if (st->prefilled) {
            int donor = -1;
            for (int i = 0; i < run->n_live && donor < 0; i++)
                if (run->live[i].req == r) donor = run->live[i].kv;
            if (donor < 0) maye_die("generate: no sequence holds the prompt of request %d", r);
            maye_kv_copy_prefix(&e->pool, kv, donor, st->rq->n_ids);
        } else if (prefill_request(run, r, kv) < 0) {
            maye_kv_release(&e->pool, kv);
            return -1;
        }
    }
    if (st->admitted++ == 0) st->t_admit = maye_now();
    seq_state s = {.req = r, .index = index, .kv = kv, .n_past = st->rq->n_ids,
                   .stream = maye_sample_stream(st->rq->stream_key, index), .out = &run->res[r].out[index]};
    s.out->ids = xmalloc(sizeof(int32_t) * (size_t)cfg->max_tokens);
    s.out->logprobs = xmalloc(sizeof(float) * (size_t)cfg->max_tokens);
    memcpy(run->row, st->logits, sizeof(float) * (size_t)run->m->cfg.vocab);
    if (st->admitted == cfg->n) {
        free(st->logits);
        st->logits = NULL;
    }
    float lp;
    int32_t token = maye_sample(&run->samplers[0], &cfg->sample, run->row, cfg->stop_ids,
                                cfg->min_tokens > 0 ? cfg->n_stop : 0, maye_uniform_at(cfg->seed, s.stream, 0), &lp);
    int ended = take_token(cfg, &s, token, lp);
    if (ended < 0) {
        maye_buf_free(&s.text);
        maye_kv_release(&e->pool, kv);
        return -1;
    }
    if (!ended) run->live[run->n_live++] = s;
    else if (end_sequence(run, &s) < 0) return -1;
    return 1;
}

// One decode step over the live sequences, their draws, and the ends.
static int decode_step(gen_run *run) {
    maye_gen_engine *e = run->e;
    const maye_gen_config *cfg = &e->cfg;
    int B = run->n_live;
    for (int i = 0; i < B; i++) {
        seq_state *s = &run->live[i];
        run->ids[i] = s->token;
        run->pos[i] = s->n_past + run->rs[s->req].rope_delta;
        run->kv[i] = s->kv;
        run->n_past[i] = s->n_past;
    }
    double t0 = maye_now();
    maye_decode_step(run->m, &run->ws, &e->pool, B, run->ids, run->pos, run->kv, run->n_past);
    double t1 = maye_now();
#pragma omp parallel for schedule(dynamic) if (B > 1 && (int64_t)B * run->m->cfg.vocab > 32768)
    for (int i = 0; i < B; i++) {
        seq_state *s = &run->live[i];
        int t = s->out->n;
        run->tokens[i] = maye_sample(&run->samplers[omp_get_thread_num()], &cfg->sample,
                                     run->ws.logits + (size_t)i * run->ws.ldv, cfg->stop_ids,
                                     t < cfg->min_tokens ? cfg->n_stop : 0, maye_uniform_at(cfg->seed, s->stream, t),
                                     &run->lps[i]);
    }
    e->stats.decode_seconds += t1 - t0;
    e->stats.sample_seconds += maye_now() - t1;
    e->stats.decode_steps++;
    int kept = 0, rc = 0;
    for (int i = 0; i < B; i++) {
        seq_state *s = &run->live[i];
        s->n_past++;
        int ended = rc == 0 ? take_token(cfg, s, run->tokens[i], run->lps[i]) : 0;
        if (ended < 0) rc = -1;
        if (ended > 0 && end_sequence(run, s) < 0) rc = -1;
        if (ended <= 0) run->live[kept++] = *s;
    }
    run->n_live = kept;
    return rc;
}

// ----------------------------------------------------------------------------
// run

static void run_free(gen_run *run) {
    for (int r = 0; r < run->n_req; r++) {
        free(run->rs[r].logits);
        if (run->rs[r].held >= 0) maye_kv_release(&run->e->pool, run->rs[r].held);
    }
    for (int i = 0; i < run->n_live; i++) {
        maye_buf_free(&run->live[i].text);
        maye_kv_release(&run->e->pool, run->live[i].kv);
    }
    for (int i = 0; i < run->n_samplers; i++) maye_sampler_free(&run->samplers[i]);
    maye_decode_ws_free(&run->ws);
    maye_llm_acts_free(&run->acts);
    free(run->rs), free(run->live), free(run->samplers), free(run->row);
    free(run->ids), free(run->pos), free(run->kv), free(run->n_past), free(run->tokens), free(run->lps);
}

int maye_gen_run(maye_gen_engine *e, const maye_gen_request *reqs, int n, maye_gen_result *res) {
    const maye_gen_config *cfg = &e->cfg;
    const maye_model_config *c = &e->m->cfg;
    if (n <= 0) return 0;
    memset(res, 0, sizeof *res * (size_t)n);
    gen_run run = {.e = e, .m = e->m, .n_req = n, .res = res};
    run.rs = xcalloc((size_t)n, sizeof *run.rs);
    int max_prompt = 1;
    int64_t max_ctx = 1;
    for (int r = 0; r < n; r++) {
        run.rs[r].held = -1;
        if (check_request(e, &reqs[r], &run.rs[r]) < 0) {
            maye_gen_result_free(res, r, cfg->n);
            free(run.rs);
            return -1;
        }
        max_prompt = reqs[r].n_ids > max_prompt ? reqs[r].n_ids : max_prompt;
        max_ctx = run.rs[r].reserve > max_ctx ? run.rs[r].reserve : max_ctx;
        res[r].out = xcalloc((size_t)cfg->n, sizeof(maye_gen_output));
    }
    int B = cfg->max_batch_seqs;
    run.live = xcalloc((size_t)B + 1, sizeof *run.live);
    maye_decode_ws_init(&run.ws, c, B, (int)max_ctx);
    maye_llm_acts_init(&run.acts, c, max_prompt, max_prompt, 0);
    run.n_samplers = omp_get_max_threads();
    run.samplers = xmalloc(sizeof *run.samplers * (size_t)run.n_samplers);
    for (int i = 0; i < run.n_samplers; i++) maye_sampler_init(&run.samplers[i], c->vocab);
    run.row = alloc_row(run.ws.ldv);
    run.ids = xmalloc(sizeof(int64_t) * (size_t)B);
    run.pos = xmalloc(sizeof(int64_t) * (size_t)B);
    run.kv = xmalloc(sizeof(int) * (size_t)B);
    run.n_past = xmalloc(sizeof(int) * (size_t)B);
    run.tokens = xmalloc(sizeof(int32_t) * (size_t)B);
    run.lps = xmalloc(sizeof(float) * (size_t)B);

    int total = n * cfg->n, next = 0, rc = 0;
    while (rc == 0) {
        while (next < total && run.n_live < B) {
            int a = admit(&run, next / cfg->n, next % cfg->n);
            if (a < 0) rc = -1;
            if (a <= 0) break;
            next++;
        }
        if (rc < 0 || run.n_live == 0) break;
        rc = decode_step(&run);
    }
    if (rc == 0 && next < total) maye_die("generate: %d samples left with nothing live", total - next);
    run_free(&run);
    if (rc < 0) maye_gen_result_free(res, n, cfg->n);
    return rc;
}
