// Greedy decoding against transformers' generate(): for every model folder under $MAYE_FIXTURES/golden whose
// expected.safetensors holds `<sample>.greedy_ids`, the prompt is the first n_prompt tokens (manifest.json
// samples[].n_prompt) of `<sample>.input_ids` with its pixel_values / image_grid_thw; the engine must produce
// greedy_ids (up to and including a stop token, when the reference stopped there). The stop ids are the
// model's eos ids from config.json. Each sample runs alone, then all samples of a folder run together with
// two responses each and small batch limits: every response must still be greedy_ids.
#include "core/util.h"
#include "io/safetensors.h"
#include "model/generate.h"
#include "support/golden.h"
#include "test.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SAMPLES 16

typedef struct {
    char name[32];
    int64_t *ids, *grid, *want;
    int n_prompt, n_want, n_images;
    float *pixels;
    int64_t P;
} golden_sample;

// Compares a response with the reference greedy ids, which end early only at a stop token.
static void check_response(const char *what, const maye_gen_output *o, const golden_sample *s,
                           const maye_gen_config *g) {
    int n = 0;
    while (n < s->n_want) {
        int stop = 0;
        for (int i = 0; i < g->n_stop; i++) stop |= s->want[n] == g->stop_ids[i];
        n++;
        if (stop) break;
    }
    EXPECT(o->n == n, "%s: %d tokens, expected %d", what, o->n, n);
    for (int t = 0; t < n && t < o->n; t++)
        if (o->ids[t] != s->want[t]) {
            EXPECT(o->ids[t] == s->want[t], "%s: token %d is %d, transformers gave %lld", what, t, o->ids[t],
                   (long long)s->want[t]);
            break;
        }
}

static int run_folder(const char *dir, const char *name) {
    char *exp_path = maye_path_join(dir, "expected.safetensors"), *man_path = maye_path_join(dir, "manifest.json");
    maye_safetensors st;
    maye_buf man = {0};
    int used = 0;
    if (!maye_file_exists(exp_path) || !maye_file_exists(man_path) || maye_st_open(&st, exp_path) < 0) goto out_paths;
    EXPECT_OK(maye_read_file(man_path, &man));
    cJSON *root = cJSON_Parse(man.data ? man.data : "");
    const cJSON *samples = cJSON_GetObjectItemCaseSensitive(root, "samples"), *it;
    golden_sample gs[MAX_SAMPLES];
    int ns = 0;
    cJSON_ArrayForEach(it, samples) {
        const cJSON *idx = cJSON_GetObjectItemCaseSensitive(it, "index"),
                    *np = cJSON_GetObjectItemCaseSensitive(it, "n_prompt");
        if (!cJSON_IsNumber(idx) || !cJSON_IsNumber(np) || ns == MAX_SAMPLES) continue;
        golden_sample *s = &gs[ns];
        memset(s, 0, sizeof *s);
        snprintf(s->name, sizeof s->name, "s%d", idx->valueint);
        char key[64];
        int64_t n_ids = 0, n_want = 0, n_grid = 0;
        snprintf(key, sizeof key, "%s.greedy_ids", s->name);
        s->want = test_st_i64(&st, key, &n_want);
        if (!s->want) continue;
        snprintf(key, sizeof key, "%s.input_ids", s->name);
        s->ids = test_st_i64(&st, key, &n_ids);
        snprintf(key, sizeof key, "%s.image_grid_thw", s->name);
        s->grid = test_st_i64(&st, key, &n_grid);
        snprintf(key, sizeof key, "%s.pixel_values", s->name);
        const maye_st_tensor *px = maye_st_find(&st, key);
        EXPECT(s->ids && np->valueint >= 1 && np->valueint <= n_ids, "%s/%s: input_ids or n_prompt missing", dir,
               s->name);
        if (!s->ids || np->valueint < 1 || np->valueint > n_ids) {
            free(s->want), free(s->ids), free(s->grid);
            continue;
        }
        s->n_prompt = np->valueint;
        s->n_want = (int)n_want;
        s->n_images = (int)(n_grid / 3);
        if (px) {
            s->P = px->shape[0];
            s->pixels = xmalloc(sizeof(float) * (size_t)px->numel);
            maye_st_to_f32(px, s->pixels);
        }
        ns++;
    }
    cJSON_Delete(root);
    maye_st_close(&st);
    if (ns == 0) goto out_paths;
    used = 1;

    maye_model m;
    if (maye_model_load(&m, dir) < 0) {
        EXPECT(0, "%s: %s", dir, maye_errmsg());
        goto out_samples;
    }
    maye_gen_config g = {.n = 1, .sample = {0, 1, 0}, .max_batch_seqs = 8};
    for (int i = 0; i < ns; i++) g.max_tokens = gs[i].n_want > g.max_tokens ? gs[i].n_want : g.max_tokens;
    EXPECT_OK(maye_gen_stop_ids(&m, NULL, g.stop_ids, &g.n_stop));
    maye_gen_request rq[MAX_SAMPLES];
    for (int i = 0; i < ns; i++) {
        rq[i] = (maye_gen_request){gs[i].ids, gs[i].n_prompt, gs[i].pixels, gs[i].P, gs[i].grid, gs[i].n_images,
                                   maye_sample_stream_key(gs[i].name, 0, 0), gs[i].name};
        g.max_batch_tokens = gs[i].n_prompt + g.max_tokens > g.max_batch_tokens ? gs[i].n_prompt + g.max_tokens
                                                                               : g.max_batch_tokens;
    }
    // alone
    int64_t one_seq = g.max_batch_tokens;
    for (int i = 0; i < ns; i++) {
        maye_gen_engine e;
        maye_gen_result res;
        EXPECT_OK(maye_gen_engine_init(&e, &m, &g));
        if (maye_gen_run(&e, &rq[i], 1, &res) < 0) {
            EXPECT(0, "%s/%s: %s", dir, gs[i].name, maye_errmsg());
        } else {
            char what[2048];
            snprintf(what, sizeof what, "%s/%s greedy", dir, gs[i].name);
            check_response(what, &res.out[0], &gs[i], &g);
            printf("%s: %d tokens match\n", what, res.out[0].n);
            maye_gen_result_free(&res, 1, 1);
        }
        maye_gen_engine_free(&e);
    }
    // together, two responses each, room for three sequences at a time
    g.n = 2;
    g.max_batch_seqs = 3;
    g.max_batch_tokens = 3 * (one_seq + 16);
    maye_gen_engine e;
    maye_gen_result res[MAX_SAMPLES];
    EXPECT_OK(maye_gen_engine_init(&e, &m, &g));
    if (maye_gen_run(&e, rq, ns, res) < 0) {
        EXPECT(0, "%s batched: %s", dir, maye_errmsg());
    } else {
        for (int i = 0; i < ns; i++)
            for (int k = 0; k < 2; k++) {
                char what[2048];
                snprintf(what, sizeof what, "%s/%s greedy in a batch, response %d", dir, gs[i].name, k);
                check_response(what, &res[i].out[k], &gs[i], &g);
            }
        maye_gen_result_free(res, ns, 2);
    }
    maye_gen_engine_free(&e);
    maye_model_free(&m);
out_samples:
    for (int i = 0; i < ns; i++) free(gs[i].ids), free(gs[i].grid), free(gs[i].want), free(gs[i].pixels);
out_paths:
    maye_buf_free(&man);
    free(exp_path), free(man_path);
    return used;
}

int main(void) { return test_golden_main(run_folder, "no fixture folder has greedy_ids"); }
