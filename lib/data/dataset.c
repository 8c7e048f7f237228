// MAYE-format datasets, the step schedule and Query building (see dataset.h).
#include "data/dataset.h"

#include "core/error.h"
#include "core/rng.h"
#include "io/records.h"
#include "vision/image.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// loading

static int sample_string(cJSON *obj, const char *key, bool required, char **out, const char *path, int line) {
    cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) return maye_fail("%s:%d: field '%s' is missing", path, line, key);
        *out = NULL;
        return 0;
    }
    if (cJSON_IsString(v)) {
        *out = xstrdup(v->valuestring);
        return 0;
    }
    if (cJSON_IsNumber(v)) { // answers like 12 or 3.5 written as JSON numbers
        char buf[64];
        double d = v->valuedouble;
        if (d == (double)(int64_t)d && d > -1e15 && d < 1e15) snprintf(buf, sizeof buf, "%lld", (long long)d);
        else snprintf(buf, sizeof buf, "%.17g", d);
        *out = xstrdup(buf);
        return 0;
    }
    return maye_fail("%s:%d: field '%s' must be a string", path, line, key);
}

static void sample_free(maye_sample *s) {
    free(s->id), free(s->question), free(s->answer), free(s->solution), free(s->image);
}

int maye_dataset_load(maye_dataset *ds, const char *path, int64_t limit) {
    memset(ds, 0, sizeof *ds);
    maye_buf text = {0};
    if (maye_read_file(path, &text) < 0) return maye_fail_ctx("dataset");
    char *dir = maye_dirname(path);
    ds->path = xstrdup(path);
    int cap = 0, line = 0, rc = 0;
    char *p = text.data, *end = text.data + text.len;
    while (p < end && rc == 0) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *eol = nl ? nl : end;
        line++;
        char *b = p;
        p = nl ? nl + 1 : end;
        while (b < eol && (*b == ' ' || *b == '\t' || *b == '\r')) b++;
        if (b == eol) continue; // blank line
        if (limit > 0 && ds->n >= limit) break;
        cJSON *obj = cJSON_ParseWithLength(b, (size_t)(eol - b));
        if (!obj || !cJSON_IsObject(obj)) {
            const char *at = cJSON_GetErrorPtr();
            int col = at && at >= b && at <= eol ? (int)(at - b) + 1 : 1;
            rc = maye_fail("%s:%d:%d: not a JSON object (malformed JSON)", path, line, col);
            cJSON_Delete(obj);
            break;
        }
        maye_sample s = {0};
        s.line = line;
        char *image = NULL;
        rc = sample_string(obj, "question", true, &s.question, path, line);
        if (rc == 0) rc = sample_string(obj, "answer", true, &s.answer, path, line);
        if (rc == 0) rc = sample_string(obj, "solution", false, &s.solution, path, line);
        if (rc == 0) rc = sample_string(obj, "id", false, &s.id, path, line);
        if (rc == 0) rc = sample_string(obj, "image", false, &image, path, line);
        cJSON_Delete(obj);
        if (rc == 0 && image) {
            if (!image[0]) rc = maye_fail("%s:%d: field 'image' is empty", path, line);
            else {
                s.image = maye_path_join(dir, image);
                if (!maye_file_exists(s.image))
                    rc = maye_fail("%s:%d: field 'image': file '%s' does not exist", path, line, s.image);
            }
        }
        free(image);
        if (rc == 0 && !s.solution) s.solution = xstrdup("");
        if (rc == 0 && !s.id) {
            char buf[64];
            snprintf(buf, sizeof buf, "line%d", line);
            s.id = xstrdup(buf);
        }
        if (rc < 0) {
            sample_free(&s);
            break;
        }
        if (ds->n == cap) {
            cap = cap ? 2 * cap : 256;
            ds->samples = xrealloc(ds->samples, sizeof(maye_sample) * (size_t)cap);
        }
        ds->samples[ds->n++] = s;
    }
    if (rc == 0 && ds->n == 0) rc = maye_fail("%s: the dataset is empty (no JSON lines)", path);
    free(dir);
    maye_buf_free(&text);
    if (rc < 0) maye_dataset_free(ds);
    return rc;
}

void maye_dataset_free(maye_dataset *ds) {
    for (int i = 0; i < ds->n; i++) sample_free(&ds->samples[i]);
    free(ds->samples);
    free(ds->path);
    memset(ds, 0, sizeof *ds);
}

// ----------------------------------------------------------------------------
// schedule

int maye_schedule_init(maye_schedule *s, int n_samples, int batch_size, bool train, bool shuffle, uint64_t seed,
                       int64_t epochs) {
    memset(s, 0, sizeof *s);
    if (batch_size <= 0) return maye_fail("data.batch_size must be positive, got %d", batch_size);
    if (train && n_samples < batch_size)
        return maye_fail("the training set has %d samples, fewer than one batch (data.batch_size=%d); lower "
                         "data.batch_size", n_samples, batch_size);
    if (epochs <= 0) return maye_fail("train.epochs must be positive, got %lld", (long long)epochs);
    s->n_samples = n_samples;
    s->batch_size = batch_size;
    s->train = train;
    s->shuffle = train && shuffle;
    s->seed = seed;
    s->epochs = train ? epochs : 1;
    s->steps_per_epoch = train ? n_samples / batch_size : (n_samples + batch_size - 1) / batch_size;
    return 0;
}

int64_t maye_schedule_total_steps(const maye_schedule *s) { return s->epochs * s->steps_per_epoch; }

void maye_schedule_step(const maye_schedule *s, int64_t step, int *idx, int *n, int64_t *epoch) {
    int64_t e = step / s->steps_per_epoch, k = step % s->steps_per_epoch;
    *epoch = e;
    int64_t first = k * s->batch_size;
    int count = (int)(first + s->batch_size <= s->n_samples ? s->batch_size : s->n_samples - first);
    if (!s->shuffle) {
        for (int i = 0; i < count; i++) idx[i] = (int)(first + i);
    } else {
        // the epoch's permutation, recomputed: O(n) per step keeps every step independent (resume, --steps)
        int64_t *perm = xmalloc(sizeof(int64_t) * (size_t)s->n_samples);
        for (int i = 0; i < s->n_samples; i++) perm[i] = i;
        maye_rng rng;
        maye_rng_init(&rng, s->seed, maye_stream_id(0x62617463685fULL /* "batch_" */, (uint64_t)e, 0));
        maye_rng_shuffle_i64(&rng, perm, s->n_samples);
        for (int i = 0; i < count; i++) idx[i] = (int)perm[first + i];
        free(perm);
    }
    *n = count;
}

// ----------------------------------------------------------------------------
// Query building

int maye_query_builder_init(maye_query_builder *b, const maye_tokenizer *tok, const maye_image_processor_config *img,
                            const char *system_prompt, const char *prompt_suffix, bool strip_image_tag,
                            int64_t max_prompt_tokens) {
    memset(b, 0, sizeof *b);
    b->tok = tok;
    TRY(maye_chat_init(&b->chat, tok));
    b->image_cfg = *img;
    TRY(maye_image_processor_config_check(img, "image processor"));
    b->system_prompt = system_prompt;
    b->prompt_suffix = prompt_suffix ? prompt_suffix : "";
    b->strip_image_tag = strip_image_tag;
    b->max_prompt_tokens = max_prompt_tokens;
    return 0;
}

// question + suffix, with "<image>" removed when asked.
static char *user_text(const maye_query_builder *b, const char *question) {
    maye_buf t = {0};
    const char *p = question;
    const char *tag = "<image>";
    while (*p) {
        const char *hit = b->strip_image_tag ? strstr(p, tag) : NULL;
        if (!hit) {
            maye_buf_puts(&t, p);
            break;
        }
        maye_buf_append(&t, p, (size_t)(hit - p));
        p = hit + strlen(tag);
    }
    maye_buf_puts(&t, b->prompt_suffix);
    if (!t.data) maye_buf_puts(&t, "");
    return t.data;
}

static Maye__Image *build_image(const maye_query_builder *b, const maye_sample *s, const char *ds_path) {
    maye_image raw = {0}, resized = {0};
    if (maye_image_load_alpha(&raw, s->image, 0, b->image_cfg.alpha) < 0) {
        maye_fail_ctx("%s:%d: field 'image'", ds_path, s->line);
        return NULL;
    }
    int rc = maye_image_resize_for_model(&raw, &b->image_cfg, &resized);
    maye_image_free(&raw);
    if (rc < 0) {
        maye_fail_ctx("%s:%d: field 'image' ('%s')", ds_path, s->line, s->image);
        return NULL;
    }
    Maye__Image *im = xmalloc(sizeof *im);
    maye__image__init(im);
    im->height = resized.height;
    im->width = resized.width;
    im->rgb = xmalloc(sizeof *im->rgb);
    maye__tensor__init(im->rgb);
    int64_t shape[3] = {resized.height, resized.width, 3};
    maye_tensor_set_u8(im->rgb, 3, shape, resized.pixels);
    maye_image_free(&resized);
    im->n_grid_thw = 3;
    im->grid_thw = xmalloc(sizeof(int64_t) * 3);
    im->grid_thw[0] = 1;
    im->grid_thw[1] = im->height / b->image_cfg.patch_size;
    im->grid_thw[2] = im->width / b->image_cfg.patch_size;
    im->source = xstrdup(s->image);
    return im;
}

int maye_query_build(const maye_query_builder *b, const maye_dataset *ds, int sample_index, Maye__Query *q) {
    const maye_sample *s = &ds->samples[sample_index];
    maye__query__init(q);
    if (s->image) {
        Maye__Image *im = build_image(b, s, ds->path);
        if (!im) return -1;
        q->n_images = 1;
        q->images = xmalloc(sizeof(Maye__Image *));
        q->images[0] = im;
    }
    char *text = user_text(b, s->question);
    int64_t grid[3] = {0, 0, 0};
    if (q->n_images) memcpy(grid, q->images[0]->grid_thw, sizeof grid);
    maye_chat_prompt p = {.system = b->system_prompt, .text = text, .n_images = (int)q->n_images,
                          .image_grid_thw = q->n_images ? grid : NULL, .merge_size = b->image_cfg.merge_size};
    maye_token_ids ids = {0};
    maye_buf ptext = {0};
    int rc = maye_chat_prompt_ids(&b->chat, &p, &ids);
    if (rc == 0) rc = maye_chat_prompt_text(&p, &ptext);
    free(text);
    if (rc < 0) {
        maye_fail_ctx("%s:%d: field 'question'", ds->path, s->line);
    } else if (b->max_prompt_tokens > 0 && (int64_t)ids.len > b->max_prompt_tokens) {
        rc = maye_fail("%s:%d: sample '%s': the prompt has %zu tokens (image included), more than "
                       "data.max_prompt_tokens=%lld; raise it or lower data.max_pixels", ds->path, s->line, s->id,
                       ids.len, (long long)b->max_prompt_tokens);
    }
    if (rc < 0) {
        maye_token_ids_free(&ids);
        maye_buf_free(&ptext);
        maye_query_clear(q);
        return -1;
    }
    q->n_prompt_ids = ids.len;
    q->prompt_ids = ids.data; // owned by q now
    q->prompt_text = ptext.data ? ptext.data : xstrdup("");
    q->question = xstrdup(s->question);
    q->answer = xstrdup(s->answer);
    q->solution = xstrdup(s->solution);
    return 0;
}

void maye_query_clear(Maye__Query *q) {
    for (size_t i = 0; i < q->n_images; i++) {
        Maye__Image *im = q->images[i];
        if (im->rgb) maye_tensor_clear(im->rgb);
        free(im->rgb);
        free(im->grid_thw);
        if (im->source != protobuf_c_empty_string) free(im->source);
        free(im);
    }
    free(q->images);
    free(q->prompt_ids);
    char **strs[] = {&q->question, &q->answer, &q->solution, &q->prompt_text};
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++)
        if (*strs[i] != protobuf_c_empty_string) free(*strs[i]);
    if (q->pos) {
        if (q->pos->sample_id != protobuf_c_empty_string) free(q->pos->sample_id);
        if (q->pos->split != protobuf_c_empty_string) free(q->pos->split);
        free(q->pos);
    }
    maye__query__init(q);
}
