// config.json parsing for Qwen2-VL / Qwen2.5-VL (see config.h). Keys are looked up where each layout puts
// them: text keys in `text_config` first, then at the top level; token ids at the top level first.
#include "model/config.h"

#include "core/error.h"
#include "core/util.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

// ----------------------------------------------------------------------------
// typed lookups

typedef struct {
    const char *where;  // file name for messages
    const cJSON *root, *text, *vision;
} json_src;

static const cJSON *item(const cJSON *obj, const char *key) {
    return obj && cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
}

// First of (a, b) holding `key`.
static const cJSON *item2(const cJSON *a, const cJSON *b, const char *key) {
    const cJSON *it = item(a, key);
    return it ? it : item(b, key);
}

// An integer in [lo, hi]; `def` when absent unless `required`.
static int get_int(const json_src *s, const cJSON *it, const char *key, int required, int64_t def, int64_t lo,
                   int64_t hi, int64_t *out) {
    if (!it || cJSON_IsNull(it)) {
        if (required) return maye_fail("%s: missing key '%s' (needed to build the model)", s->where, key);
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble))
        return maye_fail("%s: key '%s' must be an integer", s->where, key);
    if (it->valuedouble < (double)lo || it->valuedouble > (double)hi)
        return maye_fail("%s: key '%s' = %.0f is out of range [%lld, %lld]", s->where, key, it->valuedouble,
                         (long long)lo, (long long)hi);
    *out = (int64_t)it->valuedouble;
    return 0;
}

static int get_i32(const json_src *s, const cJSON *it, const char *key, int required, int def, int lo, int hi,
                   int *out) {
    int64_t v = 0;
    TRY(get_int(s, it, key, required, def, lo, hi, &v));
    *out = (int)v;
    return 0;
}

static int get_float(const json_src *s, const cJSON *it, const char *key, double def, double *out) {
    if (!it || cJSON_IsNull(it)) return *out = def, 0;
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble))
        return maye_fail("%s: key '%s' must be a number", s->where, key);
    *out = it->valuedouble;
    return 0;
}

static int get_bool(const json_src *s, const cJSON *it, const char *key, int def, int *out) {
    if (!it || cJSON_IsNull(it)) return *out = def, 0;
    if (!cJSON_IsBool(it)) return maye_fail("%s: key '%s' must be true or false", s->where, key);
    *out = cJSON_IsTrue(it);
    return 0;
}

static const char *get_str(const cJSON *it, const char *def) { return cJSON_IsString(it) ? it->valuestring : def; }

static int parse_act(const json_src *s, const char *key, const char *name, act_kind *out) {
    if (!strcmp(name, "silu") || !strcmp(name, "swish")) *out = ACT_SILU;
    else if (!strcmp(name, "gelu")) *out = ACT_GELU;
    else if (!strcmp(name, "gelu_pytorch_tanh") || !strcmp(name, "gelu_new")) *out = ACT_GELU_TANH;
    else if (!strcmp(name, "quick_gelu")) *out = ACT_QUICK_GELU;
    else
        return maye_fail("%s: %s '%s' is not supported (silu, gelu, gelu_pytorch_tanh, quick_gelu)", s->where, key,
                         name);
    return 0;
}

// ----------------------------------------------------------------------------
// architecture

const char *maye_arch_name(maye_arch a) { return a == MAYE_ARCH_QWEN2_VL ? "qwen2_vl" : "qwen2_5_vl"; }

static int detect_arch(const json_src *s, maye_arch *out) {
    const char *mt = get_str(item(s->root, "model_type"), NULL);
    if (mt && !strcmp(mt, "qwen2_vl")) return *out = MAYE_ARCH_QWEN2_VL, 0;
    if (mt && !strcmp(mt, "qwen2_5_vl")) return *out = MAYE_ARCH_QWEN2_5_VL, 0;
    const cJSON *archs = item(s->root, "architectures");
    const char *first = cJSON_IsArray(archs) ? get_str(cJSON_GetArrayItem(archs, 0), NULL) : NULL;
    if (first && !strcmp(first, "Qwen2VLForConditionalGeneration")) return *out = MAYE_ARCH_QWEN2_VL, 0;
    if (first && !strcmp(first, "Qwen2_5_VLForConditionalGeneration")) return *out = MAYE_ARCH_QWEN2_5_VL, 0;
    return maye_fail("%s: unsupported architecture (model_type '%s', architectures[0] '%s'); supported: "
                     "qwen2_vl (Qwen2VLForConditionalGeneration), qwen2_5_vl (Qwen2_5_VLForConditionalGeneration)",
                     s->where, mt ? mt : "(none)", first ? first : "(none)");
}

// ----------------------------------------------------------------------------
// sections

static int parse_text(const json_src *s, maye_model_config *c) {
    const cJSON *t = s->text, *r = s->root;
    const int BIG = 1 << 30;
    TRY(get_i32(s, item2(t, r, "vocab_size"), "vocab_size", 1, 0, 1, BIG, &c->vocab));
    TRY(get_i32(s, item2(t, r, "hidden_size"), "hidden_size", 1, 0, 1, 1 << 20, &c->hidden));
    TRY(get_i32(s, item2(t, r, "num_hidden_layers"), "num_hidden_layers", 1, 0, 0, 4096, &c->layers));
    TRY(get_i32(s, item2(t, r, "num_attention_heads"), "num_attention_heads", 1, 0, 1, 4096, &c->heads));
    TRY(get_i32(s, item2(t, r, "num_key_value_heads"), "num_key_value_heads", 0, c->heads, 1, 4096, &c->kv_heads));
    TRY(get_i32(s, item2(t, r, "intermediate_size"), "intermediate_size", 1, 0, 1, 1 << 22, &c->intermediate));
    double eps = 0, range = 0, theta = 0;
    TRY(get_float(s, item2(t, r, "rms_norm_eps"), "rms_norm_eps", 1e-6, &eps));
    TRY(get_float(s, item2(t, r, "initializer_range"), "initializer_range", 0.02, &range));
    const cJSON *rope = item2(t, r, "rope_parameters");
    if (!rope) rope = item2(t, r, "rope_scaling");
    const cJSON *theta_it = item2(t, r, "rope_theta");
    if (!theta_it) theta_it = item(rope, "rope_theta");
    TRY(get_float(s, theta_it, "rope_theta", 1000000.0, &theta));
    c->rms_eps = (float)eps, c->initializer_range = (float)range, c->rope_theta = (float)theta;
    CHECK_OR_FAIL(eps > 0 && theta > 0, "%s: rms_norm_eps and rope_theta must be positive", s->where);
    const char *act = get_str(item2(t, r, "hidden_act"), "silu");
    CHECK_OR_FAIL(!strcmp(act, "silu"), "%s: hidden_act '%s' is not supported by the language model (silu)",
                  s->where, act);
    int sliding = 0;
    TRY(get_bool(s, item2(t, r, "use_sliding_window"), "use_sliding_window", 0, &sliding));
    CHECK_OR_FAIL(!sliding, "%s: use_sliding_window: true is not supported; set it to false", s->where);
    TRY(get_bool(s, item2(r, t, "tie_word_embeddings"), "tie_word_embeddings", 0, &c->tie_embeddings));

    CHECK_OR_FAIL(c->hidden % c->heads == 0, "%s: hidden_size %d is not a multiple of num_attention_heads %d",
                  s->where, c->hidden, c->heads);
    CHECK_OR_FAIL(c->heads % c->kv_heads == 0, "%s: num_attention_heads %d is not a multiple of "
                  "num_key_value_heads %d", s->where, c->heads, c->kv_heads);
    c->head_dim = c->hidden / c->heads;
    CHECK_OR_FAIL(c->head_dim % 2 == 0, "%s: head dim %d (hidden_size / num_attention_heads) must be even",
                  s->where, c->head_dim);

    const char *rope_type = get_str(item(rope, "rope_type"), get_str(item(rope, "type"), "default"));
    CHECK_OR_FAIL(!strcmp(rope_type, "mrope") || !strcmp(rope_type, "default"),
                  "%s: rope type '%s' is not supported (M-RoPE only)", s->where, rope_type);
    const cJSON *sec = item(rope, "mrope_section");
    CHECK_OR_FAIL(cJSON_IsArray(sec) && cJSON_GetArraySize(sec) == 3,
                  "%s: rope_scaling.mrope_section (3 integers) is missing", s->where);
    int sum = 0;
    for (int i = 0; i < 3; i++) {
        TRY(get_i32(s, cJSON_GetArrayItem(sec, i), "mrope_section", 1, 0, 0, 1 << 20, &c->mrope_section[i]));
        sum += c->mrope_section[i];
    }
    CHECK_OR_FAIL(sum == c->head_dim / 2, "%s: mrope_section [%d, %d, %d] sums to %d but head dim / 2 is %d",
                  s->where, c->mrope_section[0], c->mrope_section[1], c->mrope_section[2], sum, c->head_dim / 2);

    const int64_t MAXID = (int64_t)1 << 40;
    TRY(get_int(s, item2(r, t, "image_token_id"), "image_token_id", 1, 0, 0, MAXID, &c->image_token_id));
    TRY(get_int(s, item2(r, t, "vision_start_token_id"), "vision_start_token_id", 1, 0, 0, MAXID,
                &c->vision_start_token_id));
    TRY(get_int(s, item2(r, t, "video_token_id"), "video_token_id", 0, -1, -1, MAXID, &c->video_token_id));
    TRY(get_int(s, item2(r, t, "vision_end_token_id"), "vision_end_token_id", 0, -1, -1, MAXID,
                &c->vision_end_token_id));
    CHECK_OR_FAIL(c->image_token_id < c->vocab, "%s: image_token_id %lld is outside the vocabulary (%d)", s->where,
                  (long long)c->image_token_id, c->vocab);
    return 0;
}

static int parse_vision(const json_src *s, maye_model_config *c) {
    const cJSON *v = s->vision;
    CHECK_OR_FAIL(cJSON_IsObject(v), "%s: missing object 'vision_config'", s->where);
    int q25 = c->arch == MAYE_ARCH_QWEN2_5_VL;
    TRY(get_i32(s, item(v, "depth"), "vision_config.depth", 0, 32, 0, MAYE_MAX_VISION_DEPTH, &c->vision.depth));
    TRY(get_i32(s, item(v, "num_heads"), "vision_config.num_heads", 0, 16, 1, 4096, &c->vision.heads));
    const cJSON *chans = item(v, "in_chans") ? item(v, "in_chans") : item(v, "in_channels");
    TRY(get_i32(s, chans, "vision_config.in_chans", 0, 3, 1, 64, &c->vision.in_chans));
    TRY(get_i32(s, item(v, "patch_size"), "vision_config.patch_size", 0, 14, 1, 1024, &c->vision.patch));
    TRY(get_i32(s, item(v, "temporal_patch_size"), "vision_config.temporal_patch_size", 0, 2, 1, 64,
                &c->vision.temporal_patch));
    TRY(get_i32(s, item(v, "spatial_merge_size"), "vision_config.spatial_merge_size", 0, 2, 1, 64,
                &c->vision.merge));
    const char *act;
    if (q25) {
        TRY(get_i32(s, item(v, "hidden_size"), "vision_config.hidden_size", 0, 1280, 1, 1 << 16, &c->vision.width));
        TRY(get_i32(s, item(v, "intermediate_size"), "vision_config.intermediate_size", 0, 3420, 1, 1 << 20,
                    &c->vision.intermediate));
        TRY(get_i32(s, item(v, "out_hidden_size"), "vision_config.out_hidden_size", 0, 3584, 1, 1 << 20,
                    &c->vision.out_hidden));
        TRY(get_i32(s, item(v, "window_size"), "vision_config.window_size", 0, 112, 1, 1 << 20,
                    &c->vision.window_size));
        TRY(get_i32(s, item(v, "tokens_per_second"), "vision_config.tokens_per_second", 0, 4, 0, 1 << 20,
                    &c->vision.tokens_per_second));
        act = get_str(item(v, "hidden_act"), "silu");
        CHECK_OR_FAIL(c->vision.window_size / c->vision.merge / c->vision.patch >= 1,
                      "%s: vision_config.window_size %d is smaller than spatial_merge_size x patch_size (%d)",
                      s->where, c->vision.window_size, c->vision.merge * c->vision.patch);
        const cJSON *full = item(v, "fullatt_block_indexes");
        if (!full) {
            static const int def[4] = {7, 15, 23, 31};
            for (int i = 0; i < 4; i++)
                if (def[i] < c->vision.depth) c->vision.full_attention[def[i]] = 1;
        } else {
            CHECK_OR_FAIL(cJSON_IsArray(full), "%s: vision_config.fullatt_block_indexes must be a list", s->where);
            for (const cJSON *it = full->child; it; it = it->next) {
                int b;
                TRY(get_i32(s, it, "vision_config.fullatt_block_indexes", 1, 0, 0, MAYE_MAX_VISION_DEPTH - 1, &b));
                CHECK_OR_FAIL(b < c->vision.depth, "%s: vision_config.fullatt_block_indexes names block %d but "
                              "depth is %d", s->where, b, c->vision.depth);
                c->vision.full_attention[b] = 1;
            }
        }
    } else {
        TRY(get_i32(s, item(v, "embed_dim"), "vision_config.embed_dim", 0, 1280, 1, 1 << 16, &c->vision.width));
        double ratio = 0;
        TRY(get_float(s, item(v, "mlp_ratio"), "vision_config.mlp_ratio", 4.0, &ratio));
        CHECK_OR_FAIL(ratio > 0 && ratio * c->vision.width < (1 << 20), "%s: vision_config.mlp_ratio %g is out of "
                      "range", s->where, ratio);
        c->vision.intermediate = (int)(c->vision.width * ratio);
        TRY(get_i32(s, item(v, "hidden_size"), "vision_config.hidden_size", 0, 3584, 1, 1 << 20,
                    &c->vision.out_hidden));
        act = get_str(item(v, "hidden_act"), "quick_gelu");
        for (int b = 0; b < c->vision.depth; b++) c->vision.full_attention[b] = 1;
    }
    TRY(parse_act(s, "vision_config.hidden_act", act, &c->vision.act));
    CHECK_OR_FAIL(c->vision.out_hidden == c->hidden, "%s: the vision merger outputs %d channels (vision_config.%s) "
                  "but the language model's hidden_size is %d", s->where, c->vision.out_hidden,
                  q25 ? "out_hidden_size" : "hidden_size", c->hidden);
    CHECK_OR_FAIL(c->vision.width % c->vision.heads == 0, "%s: vision width %d is not a multiple of "
                  "vision_config.num_heads %d", s->where, c->vision.width, c->vision.heads);
    c->vision.head_dim = c->vision.width / c->vision.heads;
    CHECK_OR_FAIL(c->vision.head_dim % 4 == 0, "%s: vision head dim %d must be a multiple of 4 (2-D rotary)",
                  s->where, c->vision.head_dim);
    c->vision.patch_dim = c->vision.in_chans * c->vision.temporal_patch * c->vision.patch * c->vision.patch;
    return 0;
}

// ----------------------------------------------------------------------------
// entry points

int maye_model_config_parse(maye_model_config *c, const char *json, const char *where) {
    memset(c, 0, sizeof *c);
    cJSON *root = cJSON_Parse(json);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return maye_fail("%s: not a JSON object", where);
    }
    json_src s = {where, root, item(root, "text_config"), item(root, "vision_config")};
    int rc = detect_arch(&s, &c->arch);
    if (rc == 0) rc = parse_text(&s, c);
    if (rc == 0) rc = parse_vision(&s, c);
    cJSON_Delete(root);
    return rc;
}

int maye_model_config_load(maye_model_config *c, const char *path) {
    maye_buf text = {0};
    if (maye_read_file(path, &text) < 0) return -1;
    int rc = maye_model_config_parse(c, text.data, path);
    maye_buf_free(&text);
    return rc;
}
