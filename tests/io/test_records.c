// Record streams end to end: every record kind with every field set survives writer -> reader and
// JSON -> record -> JSON; a flushed record crosses a real pipe while its writer waits (no reader-side
// buffering deadlock); a stream cut at every byte gives the records before the last complete flush and
// then a "truncated" error, never a crash or a bogus record; wrong kind, schema version, garbage,
// trailing data, oversized length prefixes, a closed pipe (EPIPE) and atomic files; tensor helpers.
#include "core/config.h"
#include "core/util.h"
#include "io/record_json.h"
#include "io/records.h"
#include "test.h"
#include "version.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>

// ----------------------------------------------------------------------------
// building records with every field set (all heap memory, freed with maye_record_free)

static int32_t *ints(size_t n, int32_t base) {
    int32_t *p = xmalloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = base + (int32_t)(i * 7919 % 100003) - (i == 1 ? 2 * base : 0);
    return p;
}

static int64_t *longs(size_t n, int64_t base) {
    int64_t *p = xmalloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = base + (int64_t)i;
    return p;
}

static float *floats(size_t n, float base) {
    float *p = xmalloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = base - 0.37f * (float)i;
    return p;
}

static Maye__Position *make_pos(int k) {
    Maye__Position *p = xmalloc(sizeof *p);
    maye__position__init(p);
    char id[32];
    snprintf(id, sizeof id, "geo-%d", k);
    p->sample_id = xstrdup(id);
    p->index = 1000 + k;
    p->epoch = 2;
    p->step = 40 + k;
    p->step_offset = k;
    p->step_records = 128;
    p->split = xstrdup("train");
    return p;
}

static Maye__Image *make_image(int h, int w, uint8_t seed) {
    Maye__Image *im = xmalloc(sizeof *im);
    maye__image__init(im);
    im->height = h;
    im->width = w;
    im->rgb = xmalloc(sizeof *im->rgb);
    int64_t shape[3] = {h, w, 3};
    uint8_t *px = xmalloc((size_t)(h * w * 3));
    for (int i = 0; i < h * w * 3; i++) px[i] = (uint8_t)(seed + i * 37 + (i >> 5));
    maye_tensor_set_u8(im->rgb, 3, shape, px);
    free(px);
    im->n_grid_thw = 3;
    im->grid_thw = longs(3, 1);
    im->source = xstrdup("images/geo 1.png");
    return im;
}

static Maye__Query *make_query(int k) {
    Maye__Query *q = xmalloc(sizeof *q);
    maye__query__init(q);
    q->pos = make_pos(k);
    q->version = 7;
    q->n_prompt_ids = 40 + (size_t)k;
    q->prompt_ids = ints(q->n_prompt_ids, 151644);
    q->n_images = 2;
    q->images = xmalloc(2 * sizeof *q->images);
    q->images[0] = make_image(4, 6, (uint8_t)k);
    q->images[1] = make_image(2, 2, 200);
    // newline, quote, backslash, tab, accents, an emoji, a control byte and a byte that is not UTF-8
    q->question = xstrdup("<image>Find \"x\" \\ in\tthe\ntriangle: é, 角, 😀, \x01, \xff end");
    q->answer = xstrdup("\\frac{1}{2}");
    q->solution = xstrdup("By symmetry, x = 1/2.");
    q->prompt_text = xstrdup("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Find x<|im_end|>\n");
    return q;
}

static Maye__Response *make_response(int i) {
    Maye__Response *r = xmalloc(sizeof *r);
    maye__response__init(r);
    r->sample_index = i;
    r->n_ids = 30;
    r->ids = ints(30, 100 + i);
    r->text = xstrdup("The answer is \\boxed{2}.");
    r->finish = i ? MAYE__FINISH_REASON__LENGTH : MAYE__FINISH_REASON__STOP;
    r->n_logprobs = 30;
    r->logprobs = floats(30, -0.01f);
    r->logprobs[3] = -INFINITY;
    r->logprobs[4] = -0.0f;
    r->logprobs[5] = 1e-40f; // subnormal
    r->seconds = 0.123456789012345;
    return r;
}

static Maye__Rollout *make_rollout(int k) {
    Maye__Rollout *r = xmalloc(sizeof *r);
    maye__rollout__init(r);
    r->query = make_query(k);
    r->n_responses = 3;
    r->responses = xmalloc(3 * sizeof *r->responses);
    for (int i = 0; i < 3; i++) r->responses[i] = make_response(i);
    r->version = 7;
    r->temperature = 0.6f;
    r->top_p = 0.95f;
    r->top_k = 50;
    r->seed = 0xfedcba9876543210ULL; // above 2^63: must survive JSON exactly
    r->prefill_seconds = 1.5;
    r->decode_seconds = 1e-300;
    return r;
}

static Maye__Trajectory *make_trajectory(int k) {
    Maye__Trajectory *t = xmalloc(sizeof *t);
    maye__trajectory__init(t);
    t->query = make_query(k);
    t->sample_index = 3;
    t->version = 7;
    size_t n = 50;
    t->n_response_ids = n;
    t->response_ids = ints(n, 9000);
    t->response_text = xstrdup("Wait, let me re-check. \\boxed{3}");
    t->finish = MAYE__FINISH_REASON__STOP;
    t->n_policy_logprobs = t->n_ref_logprobs = t->n_rollout_logprobs = t->n_response_mask = n;
    t->policy_logprobs = floats(n, -0.5f);
    t->ref_logprobs = floats(n, -0.25f);
    t->rollout_logprobs = floats(n, -0.125f);
    t->response_mask = floats(n, 1.0f);
    t->policy_logprobs[0] = NAN;
    t->score = 1.25f;
    const char *names[3] = {"accuracy", "language", "length"};
    float values[3] = {1.0f, 0.25f, -0.001f};
    t->n_rewards = 3;
    t->rewards = xmalloc(3 * sizeof *t->rewards);
    for (int i = 0; i < 3; i++) {
        t->rewards[i] = xmalloc(sizeof **t->rewards);
        maye__trajectory__rewards_entry__init(t->rewards[i]);
        t->rewards[i]->key = xstrdup(names[i]);
        t->rewards[i]->value = values[i];
    }
    t->correct = 1;
    t->extracted_answer = xstrdup("3");
    t->response_length = (int32_t)n;
    t->reflection = 1;
    t->n_reflection_counts = 15;
    t->reflection_counts = ints(15, 0);
    t->temperature = 1.0f;
    return t;
}

static Maye__WeightSync *make_weight_sync(int k) {
    Maye__WeightSync *w = xmalloc(sizeof *w);
    maye__weight_sync__init(w);
    w->version = k;
    w->kind = MAYE__SYNC_KIND__CUDA_IPC;
    w->path = xstrdup("runs/demo/weights/v3.safetensors");
    w->ipc_handle.len = 64;
    w->ipc_handle.data = xmalloc(64);
    for (int i = 0; i < 64; i++) w->ipc_handle.data[i] = (uint8_t)(i * 13 + k);
    w->ipc_bytes = 15LL << 30;
    w->nccl_id = xstrdup("a1b2c3");
    w->digest = 0x8000000000000001ULL;
    w->step = k - 1;
    return w;
}

static Maye__Metrics *make_metrics(int k) {
    Maye__Metrics *m = xmalloc(sizeof *m);
    maye__metrics__init(m);
    m->step = k;
    m->epoch = 1;
    m->version = k + 1;
    m->split = xstrdup("validation");
    m->setting = xstrdup("pass@8_t1.0");
    const char *names[4] = {"accuracy", "response_length", "kl", "weird key \" \\"};
    double values[4] = {0.5, 612.25, 1e-300, -1.0 / 3.0};
    m->n_values = 4;
    m->values = xmalloc(4 * sizeof *m->values);
    for (int i = 0; i < 4; i++) {
        m->values[i] = xmalloc(sizeof **m->values);
        maye__metrics__values_entry__init(m->values[i]);
        m->values[i]->key = xstrdup(names[i]);
        m->values[i]->value = values[i];
    }
    m->example = xstrdup("Hmm, wait: \\boxed{4}");
    return m;
}

static ProtobufCMessage *make_record(Maye__RecordKind kind, int k) {
    switch (kind) {
    case MAYE__RECORD_KIND__QUERY: return &make_query(k)->base;
    case MAYE__RECORD_KIND__ROLLOUT: return &make_rollout(k)->base;
    case MAYE__RECORD_KIND__TRAJECTORY: return &make_trajectory(k)->base;
    case MAYE__RECORD_KIND__WEIGHT_SYNC: return &make_weight_sync(k)->base;
    default: return &make_metrics(k)->base;
    }
}

// ----------------------------------------------------------------------------
// comparing

static uint8_t *packed(const ProtobufCMessage *m, size_t *n) {
    *n = protobuf_c_message_get_packed_size(m);
    uint8_t *p = xmalloc(*n + 1);
    protobuf_c_message_pack(m, p);
    return p;
}

// Same wire bytes; prints both as JSON on a mismatch.
static int same_message(const char *what, const ProtobufCMessage *got, const ProtobufCMessage *want) {
    size_t ng, nw;
    uint8_t *pg = packed(got, &ng), *pw = packed(want, &nw);
    int same = ng == nw && !memcmp(pg, pw, ng);
    if (!same) {
        maye_buf a = {0}, b = {0};
        maye_json_print_message(&a, got, MAYE_JSON_FULL);
        maye_json_print_message(&b, want, MAYE_JSON_FULL);
        fprintf(stderr, "%s: messages differ (%zu vs %zu bytes)\n  got:  %s\n  want: %s\n", what, ng, nw, a.data, b.data);
        maye_buf_free(&a);
        maye_buf_free(&b);
        test_failures++;
    }
    free(pg);
    free(pw);
    return same;
}

static Maye__StreamHeader test_header(Maye__RecordKind kind, const maye_config *cfg) {
    Maye__StreamHeader h;
    maye_header_init(&h, kind, "test_records", cfg);
    h.vocab_size = 151665;
    h.tokenizer_digest = 0x0123456789abcdefULL;
    return h;
}

static const Maye__RecordKind all_kinds[5] = {MAYE__RECORD_KIND__QUERY, MAYE__RECORD_KIND__ROLLOUT,
                                              MAYE__RECORD_KIND__TRAJECTORY, MAYE__RECORD_KIND__WEIGHT_SYNC,
                                              MAYE__RECORD_KIND__METRICS};

// ----------------------------------------------------------------------------
// round trips

static void test_round_trip(const maye_config *cfg) {
    for (int ki = 0; ki < 5; ki++) {
        Maye__RecordKind kind = all_kinds[ki];
        const char *name = maye_record_kind_name(kind);
        char file[64];
        snprintf(file, sizeof file, "%s.zst", name);
        char *path = maye_path_join(test_tmpdir(), file);
        Maye__StreamHeader h = test_header(kind, cfg);
        ProtobufCMessage *recs[3];
        for (int k = 0; k < 3; k++) recs[k] = make_record(kind, k);

        maye_writer *w;
        maye_writer_opts opts = {.atomic = 1};
        EXPECT_OK(maye_writer_open(&w, path, &h, &opts));
        for (int k = 0; k < 3; k++) {
            EXPECT_OK(maye_writer_write(w, recs[k]));
            if (k != 1) EXPECT_OK(maye_writer_flush(w));
        }
        EXPECT(maye_writer_count(w) == 3, "%s: count %lld", name, (long long)maye_writer_count(w));
        EXPECT_OK(maye_writer_close(w));

        maye_reader *r;
        EXPECT_OK(maye_reader_open(&r, path, kind));
        if (!r) continue;
        const Maye__StreamHeader *rh = maye_reader_header(r);
        same_message("header", &rh->base, &h.base);
        EXPECT(!strcmp(rh->producer, "test_records " MAYE_VERSION), "producer '%s'", rh->producer);
        EXPECT(rh->config_digest == maye_config_digest(cfg), "config digest");
        EXPECT(maye_reader_kind(r) == kind, "kind");
        EXPECT_OK(maye_reader_check_tokenizer(r, 151665, 0x0123456789abcdefULL));
        EXPECT_OK(maye_reader_check_tokenizer(r, 0, 0));
        EXPECT_FAIL(maye_reader_check_tokenizer(r, 151643, 0), "vocabulary of 151665 tokens");
        EXPECT_FAIL(maye_reader_check_tokenizer(r, 0, 42), "tokenizer 0x0123456789abcdef");
        for (int k = 0; k < 3; k++) {
            ProtobufCMessage *m = NULL;
            int64_t index = -1;
            EXPECT(maye_reader_next(r, &m, &index) == 1, "%s record %d: %s", name, k + 1, maye_errmsg());
            if (!m) break;
            EXPECT(index == k + 1, "%s: index %lld, expected %d", name, (long long)index, k + 1);
            same_message(name, m, recs[k]);
            maye_record_free(m);
        }
        ProtobufCMessage *m = NULL;
        EXPECT(maye_reader_next(r, &m, NULL) == 0, "%s: expected the end: %s", name, maye_errmsg());
        EXPECT(maye_reader_next(r, &m, NULL) == 0, "%s: the end stays the end", name);
        maye_reader_close(r);

        // JSON: full mode reads back to the same message; summary mode refuses to
        maye_buf js = {0};
        for (int k = 0; k < 3; k++) {
            maye_buf_clear(&js);
            maye_json_print_record(&js, maye_record_kind_key(kind), recs[k], MAYE_JSON_FULL);
            ProtobufCMessage *back = NULL;
            EXPECT_OK(maye_json_parse_record(js.data, js.len, 2 + k, maye_record_kind_key(kind),
                                             maye_record_descriptor(kind), &back));
            if (back) same_message("json full", back, recs[k]);
            maye_record_free(back);
            maye_buf_clear(&js);
            maye_json_print_record(&js, maye_record_kind_key(kind), recs[k], MAYE_JSON_SUMMARY);
            int has_tensor = kind <= MAYE__RECORD_KIND__TRAJECTORY;
            EXPECT(!!strstr(js.data, "\"checksum\":\"0x") == has_tensor, "%s summary: %s", name, js.data);
            if (has_tensor)
                EXPECT_FAIL(maye_json_parse_record(js.data, js.len, 9, maye_record_kind_key(kind),
                                                   maye_record_descriptor(kind), &back), "--full");
        }
        maye_buf_clear(&js);
        maye_json_print_record(&js, "header", &h.base, MAYE_JSON_FULL);
        EXPECT(strstr(js.data, "\"tokenizer_digest\":\"0x0123456789abcdef\""), "header json: %s", js.data);
        maye_buf_free(&js);
        for (int k = 0; k < 3; k++) maye_record_free(recs[k]);
        maye_header_free(&h);
        free(path);
    }
}

// Exact JSON text for the tricky scalars, so a change in the mapping is noticed.
static void test_json_text(void) {
    Maye__Trajectory *t = make_trajectory(0);
    maye_buf js = {0};
    maye_json_print_message(&js, &t->base, MAYE_JSON_SUMMARY);
    const char *want[] = {"\"policy_logprobs\":[\"NaN\",-0.87,", "\"finish\":\"STOP\"", "\"correct\":true",
                          "\"rewards\":{\"accuracy\":1,\"language\":0.25,\"length\":-0.001}",
                          "\\\\ in\\tthe\\ntriangle: é, 角, 😀, \\u0001, \\udcff end\"", "\"sample_id\":\"geo-0\"",
                          "\"rgb\":{\"dtype\":\"U8\",\"shape\":[4,6,3],\"checksum\":\"0x"};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        EXPECT(strstr(js.data, want[i]), "trajectory JSON lacks %s:\n%s", want[i], js.data);
    maye_record_free(&t->base);
    Maye__Rollout *r = make_rollout(0);
    maye_buf_clear(&js);
    maye_json_print_message(&js, &r->base, MAYE_JSON_SUMMARY);
    EXPECT(strstr(js.data, "\"seed\":18364758544493064720"), "uint64 seed: %s", js.data);
    EXPECT(strstr(js.data, "\"logprobs\":[-0.01,-0.38,-0.75,\"-Infinity\",-0,1e-40,"), "logprobs: %s", js.data);
    EXPECT(strstr(js.data, "\"decode_seconds\":1e-300"), "double: %s", js.data);
    maye_record_free(&r->base);
    maye_buf_free(&js);
}

// Tensors of every dtype in full mode, including values that need care.
static void test_json_tensors(void) {
    float f[6] = {0.1f, -2.5f, INFINITY, -0.0f, 3.4028235e38f, 1e-45f};
    int64_t i64[3] = {INT64_MIN, -1, INT64_MAX};
    int32_t i32[4] = {INT32_MIN, 0, 7, INT32_MAX};
    uint16_t h16[3] = {0x3f80, 0x7fc0, 0xff80}; // bf16 1, NaN, -inf
    int64_t s23[2] = {2, 3}, s3[1] = {3}, s4[2] = {2, 2};
    Maye__Tensor ts[5];
    maye_tensor_set_f32(&ts[0], 2, s23, f);
    maye_tensor_set_i64(&ts[1], 1, s3, i64);
    maye_tensor_set_i32(&ts[2], 2, s4, i32);
    maye_tensor_set(&ts[3], MAYE__DTYPE__BF16, 1, s3, h16);
    maye_tensor_set(&ts[4], MAYE__DTYPE__F16, 1, s3, (uint16_t[3]){0x3c00, 0x0001, 0xfbff}); // 1, min subnormal, -max
    maye_buf js = {0};
    for (int i = 0; i < 5; i++) {
        maye_buf_clear(&js);
        maye_json_print_message(&js, &ts[i].base, MAYE_JSON_FULL);
        EXPECT(strstr(js.data, "\"data\":["), "tensor %d as numbers: %s", i, js.data);
        ProtobufCMessage *back = NULL;
        EXPECT_OK(maye_json_parse_message(js.data, js.len, 1, "t", &maye__tensor__descriptor, &back));
        if (back) same_message(js.data, back, &ts[i].base);
        maye_record_free(back);
    }
    // a data length that does not match the shape is kept as base64 and read back as is
    ts[0].data.len = 5;
    maye_buf_clear(&js);
    maye_json_print_message(&js, &ts[0].base, MAYE_JSON_FULL);
    EXPECT(strstr(js.data, "\"data\":\"zczMPQA=\""), "odd tensor as base64: %s", js.data);
    ProtobufCMessage *back = NULL;
    EXPECT_OK(maye_json_parse_message(js.data, js.len, 1, "t", &maye__tensor__descriptor, &back));
    if (back) same_message("odd tensor", back, &ts[0].base);
    maye_record_free(back);
    ts[0].data.len = 24;
    for (int i = 0; i < 5; i++) maye_tensor_clear(&ts[i]);
    maye_buf_free(&js);

    const char *bad[][2] = {
        {"{\"dtype\":\"U8\",\"shape\":[2],\"data\":[1,256]}", "line 4: rgb.data[1]: integer out of range"},
        {"{\"dtype\":\"U8\",\"shape\":[2,2],\"data\":[1,2,3]}", "line 4: rgb.data: 3 values, but shape [2, 2] needs 4"},
        {"{\"shape\":[1],\"data\":[1]}", "set \"dtype\""},
        {"{\"dtype\":\"F16\",\"shape\":[1],\"data\":[1e6]}", "rgb.data[0]: number out of range for this dtype"},
        {"{\"dtype\":\"I32\",\"shape\":[1],\"data\":[1.5]}", "rgb.data[0]: expected an integer, got 1.5"},
        {"{\"dtype\":\"F32\",\"shape\":[1],\"data\":\"@@@@\"}", "invalid base64"},
        {"{\"dtype\":\"F32\",\"shape\":[1],\"checksum\":\"0x1\"}", "maye cat --full"},
        {"{\"dtype\":\"F64\"}", "rgb.dtype: expected one of DTYPE_UNSPECIFIED, F32, F16, BF16, I64, I32, U8, got \"F64\""},
        {"{\"dtype\":\"F32\",\"scale\":2}", "rgb.scale: unknown field"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        EXPECT_FAIL(maye_json_parse_message(bad[i][0], strlen(bad[i][0]), 4, "rgb", &maye__tensor__descriptor, &back),
                    bad[i][1]);
}

static void test_json_errors(void) {
    const ProtobufCMessageDescriptor *qd = &maye__query__descriptor;
    const char *bad[][2] = {
        {"{\"query\":{\"pos\":{\"step\":\"3\"}}}", "line 3: query.pos.step: expected an integer, got \"3\""},
        {"{\"query\":{\"pos\":{\"step\":1.5}}}", "line 3: query.pos.step: expected an integer, got 1.5"},
        {"{\"query\":{\"pos\":{\"stepp\":1}}}", "line 3: query.pos: unknown field 'stepp' (a Position has: sample_id,"},
        {"{\"query\":{\"version\":9223372036854775808}}", "query.version: integer out of range"},
        {"{\"query\":{\"prompt_ids\":[1,2,\"x\"]}}", "query.prompt_ids[2]: expected an integer"},
        {"{\"query\":{\"prompt_ids\":[1,2,2147483648]}}", "query.prompt_ids[2]: integer out of range"},
        {"{\"query\":{\"images\":[{\"height\":1},{\"width\":true}]}}", "query.images[1].width: expected an integer, got true"},
        {"{\"query\":{\"images\":[null]}}", "query.images[0]: expected an object, got null"},
        {"{\"query\":{\"question\":5}}", "query.question: expected a string, got 5"},
        {"{\"query\":{\"question\":\"a\\u0000b\"}}", "NUL character"},
        {"{\"query\":{\"version\":1,\"version\":2}}", "query.version: the key appears twice"},
        {"{\"rollout\":{}}", "line 3: expected a \"query\" record, got \"rollout\""},
        {"{\"query\":{}, \"x\":1}", "line 3: expected one object with a single key"},
        {"{\"query\":{\"pos\":{\"step\":1,}}}", "line 3: column 27: invalid JSON: expected a \"key\""},
        {"{\"query\":{\"question\":\"abc}}", "line 3: column 23: invalid JSON: unterminated string"},
        {"{\"query\":{}} x", "unexpected text after the value"},
        {"{\"query\":{\"question\":\"\\ud800\"}}", "unpaired surrogate"},
        {"", "unexpected end of the line"},
    };
    ProtobufCMessage *m = NULL;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        EXPECT_FAIL(maye_json_parse_record(bad[i][0], strlen(bad[i][0]), 3, "query", qd, &m), bad[i][1]);
    const char *deep = "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
                       "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]";
    EXPECT_FAIL(maye_json_parse_record(deep, strlen(deep), 1, "query", qd, &m), "nested too deeply");
    const char *ms = "{\"metrics\":{\"values\":{\"a\":1,\"b\":\"x\"}}}";
    EXPECT_FAIL(maye_json_parse_record(ms, strlen(ms), 5, "metrics", &maye__metrics__descriptor, &m),
                "line 5: metrics.values[\"b\"]: expected a number");
    const char *dup = "{\"metrics\":{\"values\":{\"a\":1,\"a\":2}}}";
    EXPECT_FAIL(maye_json_parse_record(dup, strlen(dup), 5, "metrics", &maye__metrics__descriptor, &m), "appears twice");
    // hand-written minimal input: absent fields take their defaults, digests accept hex or numbers
    const char *ok = "{\"weight_sync\":{\"version\":3,\"kind\":\"FILE\",\"digest\":\"0xFF\",\"ipc_handle\":\"AAEC\"}}";
    EXPECT_OK(maye_json_parse_record(ok, strlen(ok), 1, "weight_sync", &maye__weight_sync__descriptor, &m));
    Maye__WeightSync *ws = (Maye__WeightSync *)m;
    if (ws) {
        EXPECT(ws->version == 3 && ws->kind == MAYE__SYNC_KIND__FILE && ws->digest == 255 && ws->ipc_handle.len == 3 &&
               ws->ipc_handle.data[2] == 2 && !strcmp(ws->path, ""), "minimal weight_sync");
        maye_record_free(m);
    }
}

// ----------------------------------------------------------------------------
// pipes: latency and large records

// The child writes `n` records, flushing each, and after each one waits for the parent's acknowledgement
// before going on: a reader that waited for more bytes than a record needs would deadlock here.
static void lockstep_child(int data_fd, int ack_fd, ProtobufCMessage **recs, int n) {
    Maye__StreamHeader h = test_header(MAYE__RECORD_KIND__TRAJECTORY, NULL);
    maye_writer *w;
    if (maye_writer_open_fd(&w, data_fd, "child", &h, NULL) < 0) _exit(2);
    for (int i = 0; i < n; i++) {
        if (maye_writer_write(w, recs[i]) < 0 || maye_writer_flush(w) < 0) _exit(3);
        struct pollfd pfd = {.fd = ack_fd, .events = POLLIN};
        char c;
        if (poll(&pfd, 1, 10000) != 1 || read(ack_fd, &c, 1) != 1) _exit(4); // the parent never got it
    }
    if (maye_writer_close(w) < 0) _exit(5);
    _exit(0);
}

static void test_pipe_lockstep(void) {
    enum { N = 4 };
    ProtobufCMessage *recs[N];
    for (int i = 0; i < N; i++) recs[i] = make_record(MAYE__RECORD_KIND__TRAJECTORY, i);
    // record 3 carries a 3 MB image: it crosses the pipe in many reads and several zstd blocks
    Maye__Trajectory *big = (Maye__Trajectory *)recs[2];
    maye_record_free(&big->query->images[1]->base);
    big->query->images[1] = make_image(1024, 1000, 9);
    int data[2], ack[2];
    if (pipe(data) || pipe(ack)) maye_die("pipe");
    pid_t pid = fork();
    if (pid == 0) {
        close(data[0]);
        close(ack[1]);
        lockstep_child(data[1], ack[0], recs, N);
    }
    close(data[1]);
    close(ack[0]);
    signal(SIGPIPE, SIG_IGN); // a child that gave up waiting is reported below, not by a signal
    alarm(60);                // a deadlock ends the test instead of hanging it
    maye_reader *r;
    double t_open = maye_now();
    EXPECT_OK(maye_reader_open_fd(&r, data[0], "pipe", MAYE__RECORD_KIND__TRAJECTORY));
    EXPECT(maye_now() - t_open < 5, "the header took %.1f s to arrive", maye_now() - t_open);
    for (int i = 0; r && i < N; i++) {
        ProtobufCMessage *m = NULL;
        double t0 = maye_now();
        EXPECT(maye_reader_next(r, &m, NULL) == 1, "record %d: %s", i + 1, maye_errmsg());
        double dt = maye_now() - t0;
        EXPECT(dt < 5, "record %d took %.1f s to arrive", i + 1, dt);
        if (m) same_message("pipe record", m, recs[i]);
        maye_record_free(m);
        EXPECT(write(ack[1], "k", 1) == 1, "ack");
    }
    ProtobufCMessage *m = NULL;
    if (r) EXPECT(maye_reader_next(r, &m, NULL) == 0, "end of the piped stream: %s", maye_errmsg());
    maye_reader_close(r);
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "writer child: exit %d (4: no acknowledgement for a flushed record within 10 s, i.e. the reader waited for "
           "more bytes than the record needed)", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    alarm(0);
    close(data[0]);
    close(ack[1]);
    for (int i = 0; i < N; i++) maye_record_free(recs[i]);
}

// A reader that has gone away is an error at the writer, not a SIGPIPE death (the default disposition is
// in force here).
static void test_epipe(void) {
    signal(SIGPIPE, SIG_DFL);
    Maye__StreamHeader h = test_header(MAYE__RECORD_KIND__METRICS, NULL);
    int p[2];
    if (pipe(p)) maye_die("pipe");
    maye_writer *w;
    EXPECT_OK(maye_writer_open_fd(&w, p[1], "to-dead-reader", &h, NULL));
    close(p[0]);
    ProtobufCMessage *m = make_record(MAYE__RECORD_KIND__METRICS, 1);
    if (w) {
        EXPECT_OK(maye_writer_write(w, m)); // still in zstd's buffer
        EXPECT_FAIL(maye_writer_flush(w), "stream 'to-dead-reader': cannot write: the reading end of the pipe is closed");
        EXPECT_FAIL(maye_writer_write(w, m), "after an earlier error");
        maye_writer_abort(w);
    }
    if (pipe(p)) maye_die("pipe");
    close(p[0]);
    EXPECT_FAIL(maye_writer_open_fd(&w, p[1], "dead", &h, NULL), "pipe is closed");
    close(p[1]);
    sigset_t pending;
    sigpending(&pending);
    EXPECT(!sigismember(&pending, SIGPIPE), "a SIGPIPE was left pending");
    maye_record_free(m);
    maye_header_free(&h);
}

// ----------------------------------------------------------------------------
// truncation at every byte

// Reads a stream and counts the records; each must equal recs[i]. Returns the reader's final rc
// (0 = clean end, -1 = error; the message is kept).
static int read_all(maye_reader *r, ProtobufCMessage **recs, int n, int *count) {
    *count = 0;
    for (;;) {
        ProtobufCMessage *m = NULL;
        int rc = maye_reader_next(r, &m, NULL);
        if (rc <= 0) return rc;
        if (*count < n) same_message("record before the cut", m, recs[*count]);
        else EXPECT(0, "a record beyond the ones written");
        (*count)++;
        maye_record_free(m);
    }
}

// Checks one cut: `want` records (-1: the header is incomplete, so opening fails), then an error
// containing `needle` that names the stream and the record.
static void check_cut(const char *how, size_t cut, maye_reader *r, int opened, ProtobufCMessage **recs, int n, int want,
                      const char *needle) {
    int count = 0, rc = -1;
    if (want < 0) EXPECT(opened < 0, "%s cut %zu: the stream opened without a complete header", how, cut);
    else if (opened < 0) EXPECT(0, "%s cut %zu: open failed (%s), expected %d records", how, cut, maye_errmsg(), want);
    else rc = read_all(r, recs, n, &count);
    char msg[MAYE_ERRMSG_MAX];
    snprintf(msg, sizeof msg, "%s", maye_errmsg());
    EXPECT(rc < 0, "%s cut %zu: the stream read as complete (%d records)", how, cut, count);
    EXPECT(count == (want < 0 ? 0 : want), "%s cut %zu: %d records, expected %d", how, cut, count, want);
    EXPECT(strstr(msg, needle), "%s cut %zu: message '%s' lacks '%s'", how, cut, msg, needle);
    EXPECT(strstr(msg, "stream 'cut': record "), "%s cut %zu: message '%s' does not name the stream and record", how,
           cut, msg);
    maye_reader_close(r);
}

static void test_truncation(void) {
    enum { N = 4 };
    ProtobufCMessage *recs[N];
    for (int i = 0; i < N; i++) recs[i] = make_record(MAYE__RECORD_KIND__QUERY, i);
    Maye__StreamHeader h = test_header(MAYE__RECORD_KIND__QUERY, NULL);
    char *path = maye_path_join(test_tmpdir(), "cut.zst");
    maye_writer *w;
    EXPECT_OK(maye_writer_open(&w, path, &h, NULL));
    if (!w) return;
    size_t bound[N + 1]; // bound[k]: bytes written once record k (0 = header) was flushed
    bound[0] = (size_t)maye_writer_bytes(w);
    for (int i = 0; i < N; i++) {
        EXPECT_OK(maye_writer_write(w, recs[i]));
        EXPECT_OK(maye_writer_flush(w));
        bound[i + 1] = (size_t)maye_writer_bytes(w);
    }
    EXPECT_OK(maye_writer_close(w));
    maye_buf all = {0};
    EXPECT_OK(maye_read_file(path, &all));
    fprintf(stderr, "truncation: %zu cut points of a %d-record stream, read from memory and through a pipe\n",
            all.len, N);
    EXPECT(all.len > bound[N] && all.len < 65536, "stream of %zu bytes", all.len);
    if (all.len >= 65536) return;
    for (size_t cut = 0; cut < all.len; cut++) {
        int want = -1; // records readable: those flushed before the cut (-1: not even the header)
        for (int k = 0; k <= N; k++)
            if (bound[k] <= cut) want = k;
        const char *needle = cut == 0 ? "the stream is empty" : "truncated";
        maye_reader *r;
        int opened = maye_reader_open_mem(&r, all.data, cut, "cut", MAYE__RECORD_KIND__QUERY);
        check_cut("memory", cut, r, opened, recs, N, want, needle);
        // the same through a pipe: read(2) sees the bytes and then EOF
        int p[2];
        if (pipe(p)) maye_die("pipe");
        EXPECT(write(p[1], all.data, cut) == (ssize_t)cut, "pipe write");
        close(p[1]);
        opened = maye_reader_open_fd(&r, p[0], "cut", MAYE__RECORD_KIND__QUERY);
        check_cut("pipe", cut, r, opened, recs, N, want, needle);
        close(p[0]);
    }
    // the whole stream, then trailing bytes, then a second stream after it
    maye_reader *r;
    int count;
    EXPECT_OK(maye_reader_open_mem(&r, all.data, all.len, "cut", MAYE__RECORD_KIND__QUERY));
    if (r) EXPECT(read_all(r, recs, N, &count) == 0 && count == N, "whole stream: %d records, %s", count, maye_errmsg());
    maye_reader_close(r);
    size_t n = all.len;
    maye_buf_append(&all, "\n", 1);
    EXPECT_OK(maye_reader_open_mem(&r, all.data, all.len, "cut", MAYE__RECORD_KIND__QUERY));
    if (r) EXPECT(read_all(r, recs, N, &count) < 0 && count == N, "trailing byte: %d records", count);
    EXPECT(strstr(maye_errmsg(), "stream 'cut': record 5: unexpected data after the end of the stream"), "%s",
           maye_errmsg());
    maye_reader_close(r);
    all.len = n;
    maye_buf_reserve(&all, n);
    memcpy(all.data + n, all.data, n);
    all.len = 2 * n;
    EXPECT_OK(maye_reader_open_mem(&r, all.data, all.len, "cut", MAYE__RECORD_KIND__QUERY));
    if (r) EXPECT(read_all(r, recs, N, &count) < 0 && count == N, "two streams: %d records", count);
    EXPECT(strstr(maye_errmsg(), "two streams concatenated?"), "%s", maye_errmsg());
    maye_reader_close(r);
    // a flipped byte in the compressed data is caught (by zstd, its checksum or protobuf), never crashes
    all.len = n;
    for (size_t i = 0; i < n; i += 3) {
        all.data[i] ^= 0x20;
        if (maye_reader_open_mem(&r, all.data, n, "cut", MAYE__RECORD_KIND__QUERY) == 0) {
            for (;;) {
                ProtobufCMessage *m = NULL;
                int rc = maye_reader_next(r, &m, NULL);
                maye_record_free(m);
                if (rc <= 0) break;
            }
            maye_reader_close(r);
        }
        all.data[i] ^= 0x20;
    }
    maye_buf_free(&all);
    for (int i = 0; i < N; i++) maye_record_free(recs[i]);
    maye_header_free(&h);
    free(path);
}

// ----------------------------------------------------------------------------
// bad headers and framing, built by hand

static void put_delimited(maye_buf *b, const ProtobufCMessage *m) {
    size_t n = protobuf_c_message_get_packed_size(m);
    for (size_t v = n;; v >>= 7) {
        maye_buf_putc(b, (char)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0)));
        if (v < 0x80) break;
    }
    maye_buf_reserve(b, n);
    protobuf_c_message_pack(m, (uint8_t *)b->data + b->len);
    b->len += n;
}

static void compress_into(maye_buf *out, const maye_buf *content) {
    maye_buf_clear(out);
    maye_buf_reserve(out, ZSTD_compressBound(content->len));
    out->len = ZSTD_compress(out->data, out->cap, content->data, content->len, 3);
}

static void test_bad_streams(void) {
    maye_reader *r;
    Maye__StreamHeader h = test_header(MAYE__RECORD_KIND__ROLLOUT, NULL);
    maye_buf content = {0}, z = {0};

    put_delimited(&content, &h.base);
    compress_into(&z, &content);
    EXPECT_FAIL(maye_reader_open_mem(&r, z.data, z.len, "rollouts.zst", MAYE__RECORD_KIND__QUERY),
                "stream 'rollouts.zst': record 0: expected a Query stream, got Rollout");
    EXPECT_OK(maye_reader_open_mem(&r, z.data, z.len, "rollouts.zst", MAYE__RECORD_KIND__RECORD_KIND_UNSPECIFIED));
    maye_reader_close(r);

    h.schema_version = 2;
    maye_buf_clear(&content);
    put_delimited(&content, &h.base);
    compress_into(&z, &content);
    EXPECT_FAIL(maye_reader_open_mem(&r, z.data, z.len, "s", MAYE__RECORD_KIND__ROLLOUT),
                "stream 's': record 0: schema version 2, this build reads 1");
    maye_writer *w;
    int devnull = open("/dev/null", O_WRONLY);
    EXPECT_FAIL(maye_writer_open_fd(&w, devnull, "out", &h, NULL), "schema version 2");
    h.schema_version = MAYE_SCHEMA_VERSION;
    h.kind = 9;
    EXPECT_FAIL(maye_writer_open_fd(&w, devnull, "out", &h, NULL), "record kind 9");
    h.kind = MAYE__RECORD_KIND__ROLLOUT;

    // a Query record in a Rollout stream is refused by the writer
    EXPECT_OK(maye_writer_open_fd(&w, devnull, "out", &h, NULL));
    ProtobufCMessage *q = make_record(MAYE__RECORD_KIND__QUERY, 0);
    if (w) EXPECT_FAIL(maye_writer_write(w, q), "stream 'out': record 1: cannot write a Query message into a stream "
                                                "of Rollout records");
    maye_writer_abort(w);
    close(devnull);

    // a corrupt length prefix: 2^31 bytes, far beyond the data and the limit
    maye_buf_clear(&content);
    put_delimited(&content, &h.base);
    maye_buf_append(&content, "\x80\x80\x80\x80\x08xyz", 8);
    compress_into(&z, &content);
    EXPECT_OK(maye_reader_open_mem(&r, z.data, z.len, "big", MAYE__RECORD_KIND__ROLLOUT));
    ProtobufCMessage *m = NULL;
    if (r) EXPECT_FAIL(maye_reader_next(r, &m, NULL), "stream 'big': record 1: corrupt stream: the length prefix says "
                                                      "2147483648 bytes, more than the 1073741824-byte limit");
    maye_reader_close(r);
    // a varint that never ends
    content.len -= 8;
    maye_buf_append(&content, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 11);
    compress_into(&z, &content);
    EXPECT_OK(maye_reader_open_mem(&r, z.data, z.len, "v", MAYE__RECORD_KIND__ROLLOUT));
    if (r) EXPECT_FAIL(maye_reader_next(r, &m, NULL), "invalid length prefix");
    maye_reader_close(r);
    // a lower limit set by the caller
    content.len -= 11;
    ProtobufCMessage *ro = make_record(MAYE__RECORD_KIND__ROLLOUT, 0);
    put_delimited(&content, ro);
    maye_record_free(ro);
    compress_into(&z, &content);
    EXPECT_OK(maye_reader_open_mem(&r, z.data, z.len, "small", MAYE__RECORD_KIND__ROLLOUT));
    if (r) {
        maye_reader_set_max_record(r, 100);
        EXPECT_FAIL(maye_reader_next(r, &m, NULL), "more than the 100-byte limit");
    }
    maye_reader_close(r);
    // a record that is not a valid Rollout message (a field with a wire type it cannot have)
    content.len = 0;
    put_delimited(&content, &h.base);
    maye_buf_append(&content, "\x03\x0f\x01\x02", 4);
    compress_into(&z, &content);
    EXPECT_OK(maye_reader_open_mem(&r, z.data, z.len, "c", MAYE__RECORD_KIND__ROLLOUT));
    if (r) EXPECT_FAIL(maye_reader_next(r, &m, NULL), "stream 'c': record 1: cannot decode a Rollout record of 3 bytes");
    maye_reader_close(r);
    // an empty frame: no header
    content.len = 0;
    compress_into(&z, &content);
    EXPECT_FAIL(maye_reader_open_mem(&r, z.data, z.len, "e", MAYE__RECORD_KIND__ROLLOUT), "holds no header");
    // garbage: not zstd at all, and zstd holding something that is not a header
    const char *text = "{\"header\": {\"kind\": \"QUERY\"}}\n";
    EXPECT_FAIL(maye_reader_open_mem(&r, text, strlen(text), "j", MAYE__RECORD_KIND__QUERY),
                "stream 'j': record 0: not a record stream: it does not start with a zstd frame");
    maye_buf_clear(&content);
    maye_buf_puts(&content, "\x05hello world");
    compress_into(&z, &content);
    EXPECT_FAIL(maye_reader_open_mem(&r, z.data, z.len, "g", MAYE__RECORD_KIND__QUERY), "stream 'g': record 0:");
    EXPECT_FAIL(maye_reader_open(&r, "/nonexistent/x.zst", MAYE__RECORD_KIND__QUERY),
                "cannot open stream '/nonexistent/x.zst'");
    maye_record_free(q);
    maye_buf_free(&content);
    maye_buf_free(&z);
    maye_header_free(&h);
}

// ----------------------------------------------------------------------------
// atomic files

static void test_atomic(void) {
    Maye__StreamHeader h = test_header(MAYE__RECORD_KIND__METRICS, NULL);
    char *path = maye_path_join(test_tmpdir(), "atomic.zst");
    maye_buf tmp = {0};
    maye_buf_printf(&tmp, "%s.tmp.%d", path, (int)getpid());
    maye_writer_opts opts = {.atomic = 1, .level = 19};
    maye_writer *w;
    EXPECT_OK(maye_writer_open(&w, path, &h, &opts));
    ProtobufCMessage *m = make_record(MAYE__RECORD_KIND__METRICS, 1);
    if (w) EXPECT_OK(maye_writer_write(w, m));
    EXPECT(!maye_file_exists(path) && maye_file_exists(tmp.data), "while writing only the temporary exists");
    maye_writer_abort(w); // a crashed or failed stage: nothing that looks complete is left
    EXPECT(!maye_file_exists(path) && !maye_file_exists(tmp.data), "abort leaves nothing");
    EXPECT_OK(maye_writer_open(&w, path, &h, &opts));
    if (w) EXPECT_OK(maye_writer_write(w, m));
    if (w) EXPECT_OK(maye_writer_close(w));
    EXPECT(maye_file_exists(path) && !maye_file_exists(tmp.data), "close renames into place");
    maye_reader *r;
    int count = 0;
    EXPECT_OK(maye_reader_open(&r, path, MAYE__RECORD_KIND__METRICS));
    if (r) EXPECT(read_all(r, &m, 1, &count) == 0 && count == 1, "atomic stream: %d records", count);
    maye_reader_close(r);
    opts.level = 99;
    EXPECT_FAIL(maye_writer_open(&w, path, &h, &opts), "zstd level 99 is out of range");
    setenv("MAYE_ZSTD_LEVEL", "fast", 1);
    EXPECT_FAIL(maye_writer_open(&w, path, &h, NULL), "MAYE_ZSTD_LEVEL");
    unsetenv("MAYE_ZSTD_LEVEL");
    maye_record_free(m);
    maye_buf_free(&tmp);
    maye_header_free(&h);
    free(path);
}

// ----------------------------------------------------------------------------
// tensor helpers

static void test_tensors(void) {
    float f[6] = {1, 2, 3, 4, 5, 6};
    int64_t s23[2] = {2, 3}, s32[2] = {3, 2}, any3[2] = {-1, 3}, neg[2] = {2, -3};
    Maye__Tensor t;
    EXPECT_OK(maye_tensor_set_f32(&t, 2, s23, f));
    EXPECT_OK(maye_tensor_check(&t, "logits", MAYE__DTYPE__F32, 2, s23));
    EXPECT_OK(maye_tensor_check(&t, "logits", MAYE__DTYPE__F32, 2, any3));
    EXPECT_OK(maye_tensor_check(&t, "logits", MAYE__DTYPE__F32, -1, NULL));
    EXPECT_FAIL(maye_tensor_check(&t, "logits", MAYE__DTYPE__F32, 2, s32), "logits: shape [2, 3], expected [3, 2]");
    EXPECT_FAIL(maye_tensor_check(&t, "logits", MAYE__DTYPE__F32, 3, NULL), "logits: shape [2, 3], expected 3 dimensions");
    EXPECT_FAIL(maye_tensor_check(&t, "logits", MAYE__DTYPE__BF16, 2, s23), "logits: dtype F32, expected BF16");
    EXPECT_FAIL(maye_tensor_check(NULL, "rgb", MAYE__DTYPE__U8, 3, NULL), "rgb: missing tensor");
    float back[6];
    EXPECT_OK(maye_tensor_to_f32(&t, "logits", back, 6));
    test_close_f32("logits", back, f, 6, 0, 0);
    EXPECT_FAIL(maye_tensor_to_f32(&t, "logits", back, 5), "6 elements, more than the 5 expected");
    int64_t i64[6];
    EXPECT_FAIL(maye_tensor_to_i64(&t, "logits", i64, 6), "logits: dtype F32, expected I64, I32 or U8");
    t.data.len -= 4;
    EXPECT_FAIL(maye_tensor_to_f32(&t, "logits", back, 6), "logits: 20 data bytes, but shape [2, 3] of F32 needs 24");
    t.data.len += 4;
    maye_tensor_clear(&t);
    EXPECT_FAIL(maye_tensor_set_f32(&t, 2, neg, f), "invalid shape [2, -3]");

    uint16_t bf[3] = {maye_f32_to_bf16(1.5f), maye_f32_to_bf16(-2.0f), maye_f32_to_bf16(0.25f)};
    int64_t s3[1] = {3};
    EXPECT_OK(maye_tensor_view(&t, MAYE__DTYPE__BF16, 1, s3, bf));
    EXPECT(t.data.data == (uint8_t *)bf, "view borrows the data");
    float want[3] = {1.5f, -2.0f, 0.25f};
    EXPECT_OK(maye_tensor_to_f32(&t, "bf", back, 3));
    test_close_f32("bf16 -> f32", back, want, 3, 0, 0);
    int32_t i32[3] = {-5, 0, 70000};
    EXPECT_OK(maye_tensor_set_i32(&t, 1, s3, i32));
    int64_t want64[3] = {-5, 0, 70000};
    EXPECT_OK(maye_tensor_to_i64(&t, "ids", i64, 3));
    test_equal_i64("i32 -> i64", i64, want64, 3);
    int32_t i32b[3];
    EXPECT_OK(maye_tensor_to_i32(&t, "ids", i32b, 3));
    EXPECT(!memcmp(i32b, i32, sizeof i32), "i32 copy");
    maye_tensor_clear(&t);
    uint8_t u8[3] = {0, 128, 255}, u8b[3];
    EXPECT_OK(maye_tensor_set_u8(&t, 1, s3, u8));
    EXPECT_OK(maye_tensor_to_u8(&t, "px", u8b, 3));
    EXPECT(!memcmp(u8, u8b, 3), "u8 copy");
    EXPECT_OK(maye_tensor_to_i64(&t, "px", i64, 3));
    EXPECT(i64[2] == 255, "u8 -> i64: %lld", (long long)i64[2]);
    maye_tensor_clear(&t);
    // the wire format is little-endian: the bytes of 1.0f are 00 00 80 3f
    float one = 1.0f;
    int64_t s1[1] = {1};
    EXPECT_OK(maye_tensor_set_f32(&t, 1, s1, &one));
    EXPECT(t.data.len == 4 && t.data.data[3] == 0x3f && t.data.data[2] == 0x80, "little-endian f32");
    maye_tensor_clear(&t);
}

int main(void) {
    maye_config cfg;
    if (maye_config_load(&cfg, NULL, 0, NULL) < 0) {
        fprintf(stderr, "config: %s\n", maye_errmsg());
        return 1;
    }
    maye_config_set(&cfg, "run_dir", "runs/geo-seed1/");
    test_round_trip(&cfg);
    test_json_text();
    test_json_tensors();
    test_json_errors();
    test_tensors();
    test_bad_streams();
    test_atomic();
    test_epipe();
    test_pipe_lockstep();
    test_truncation();
    Maye__StreamHeader h = test_header(MAYE__RECORD_KIND__QUERY, &cfg);
    EXPECT(!strcmp(h.run_id, "geo-seed1"), "run id '%s'", h.run_id);
    maye_header_free(&h);
    maye_config_free(&cfg);
    return TEST_RESULT();
}
