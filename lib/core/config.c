// Config loading: defaults from the schema, a YAML file through libyaml, `key.path=value` overrides;
// printing the effective config as YAML (see config.h).
#include "core/config.h"

#include "core/error.h"
#include "core/util.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

// ----------------------------------------------------------------------------
// key lookup and suggestions

static const maye_cfg_field *find_field(const char *key) {
    for (int i = 0; i < maye_cfg_nfields; i++)
        if (!strcmp(maye_cfg_fields[i].key, key)) return &maye_cfg_fields[i];
    return NULL;
}

// Is `prefix` a section ("rollout") of some key?
static int is_section(const char *prefix) {
    size_t n = strlen(prefix);
    for (int i = 0; i < maye_cfg_nfields; i++)
        if (!strncmp(maye_cfg_fields[i].key, prefix, n) && maye_cfg_fields[i].key[n] == '.') return 1;
    return 0;
}

static int edit_distance(const char *a, const char *b) {
    int n = (int)strlen(a), m = (int)strlen(b);
    if (n > 128 || m > 128) return 1 << 20;
    int prev[129], cur[129];
    for (int j = 0; j <= m; j++) prev[j] = j;
    for (int i = 1; i <= n; i++) {
        cur[0] = i;
        for (int j = 1; j <= m; j++) {
            int sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            int del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, sizeof(int) * (size_t)(m + 1));
    }
    return prev[m];
}

const char *maye_config_suggest(const char *key) {
    const char *best = NULL;
    int best_d = 1 << 20;
    const char *leaf = strrchr(key, '.');
    leaf = leaf ? leaf + 1 : key;
    for (int i = 0; i < maye_cfg_nfields; i++) {
        const char *k = maye_cfg_fields[i].key;
        const char *kleaf = strrchr(k, '.');
        kleaf = kleaf ? kleaf + 1 : k;
        int d = edit_distance(key, k);
        int dl = edit_distance(leaf, kleaf) + 1; // the right name under the wrong section
        if (dl < d) d = dl;
        if (d < best_d) best_d = d, best = k;
    }
    int limit = (int)strlen(leaf) / 2 + 2;
    return best_d <= limit ? best : NULL;
}

static int unknown_key(const char *key, const char *where) {
    const char *s = maye_config_suggest(key);
    if (s) return maye_fail("%sunknown config key '%s'; did you mean '%s'?", where, key, s);
    return maye_fail("%sunknown config key '%s' (see --print-config for every key)", where, key);
}

// ----------------------------------------------------------------------------
// setting values

static void *slot(maye_config *c, const maye_cfg_field *f) { return (char *)c + f->offset; }

static int parse_bool(const char *s, bool *out) {
    static const char *yes[] = {"true", "yes", "on", "1", "True", "TRUE", "Yes"};
    static const char *no[] = {"false", "no", "off", "0", "False", "FALSE", "No"};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
        if (!strcmp(s, yes[i])) return *out = true, 0;
    for (size_t i = 0; i < sizeof no / sizeof *no; i++)
        if (!strcmp(s, no[i])) return *out = false, 0;
    return -1;
}

static void strlist_free(maye_strlist *l) {
    for (int i = 0; i < l->n; i++) free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

// Splits "a,b,c" (optionally wrapped in [ ]) into items; an empty string gives an empty list.
static int split_list(const char *s, char ***items_out) {
    size_t n = strlen(s);
    const char *b = s, *e = s + n;
    while (b < e && isspace((unsigned char)*b)) b++;
    while (e > b && isspace((unsigned char)e[-1])) e--;
    if (b < e && *b == '[' && e[-1] == ']') b++, e--;
    char **items = NULL;
    int count = 0;
    const char *p = b;
    while (p < e) {
        const char *q = p;
        while (q < e && *q != ',') q++;
        const char *ib = p, *ie = q;
        while (ib < ie && isspace((unsigned char)*ib)) ib++;
        while (ie > ib && isspace((unsigned char)ie[-1])) ie--;
        items = xrealloc(items, sizeof(char *) * (size_t)(count + 1));
        items[count] = xmalloc((size_t)(ie - ib) + 1);
        memcpy(items[count], ib, (size_t)(ie - ib));
        items[count][ie - ib] = 0;
        count++;
        p = q < e ? q + 1 : e;
    }
    *items_out = items;
    return count;
}

// Sets field f from a list of scalar texts (n == 1 with is_list == 0 for a plain scalar).
static int set_field(maye_config *c, const maye_cfg_field *f, int n, char *const *vals, int is_list) {
    void *p = slot(c, f);
    if (f->type != CFG_STRLIST && f->type != CFG_FLOATLIST && (is_list || n != 1))
        return maye_fail("key '%s' takes a single value, not a list", f->key);
    switch (f->type) {
    case CFG_INT: {
        int64_t v;
        if (maye_parse_i64(vals[0], &v, f->key) < 0) return -1;
        *(int64_t *)p = v;
        return 0;
    }
    case CFG_FLOAT: {
        double v;
        if (maye_parse_f64(vals[0], &v, f->key) < 0) return -1;
        *(double *)p = v;
        return 0;
    }
    case CFG_BOOL:
        if (parse_bool(vals[0], (bool *)p) < 0)
            return maye_fail("%s: expected true or false, got '%s'", f->key, vals[0]);
        return 0;
    case CFG_STRING: {
        if (f->choices) {
            size_t n0 = strlen(vals[0]);
            const char *ch = f->choices;
            int ok = 0;
            while (*ch) {
                const char *bar = strchr(ch, '|');
                size_t len = bar ? (size_t)(bar - ch) : strlen(ch);
                if (len == n0 && !strncmp(ch, vals[0], len)) ok = 1;
                ch += len + (bar ? 1 : 0);
            }
            if (!ok) return maye_fail("%s: '%s' is not one of %s", f->key, vals[0], f->choices);
        }
        char **s = (char **)p;
        free(*s);
        *s = xstrdup(vals[0]);
        return 0;
    }
    case CFG_STRLIST: {
        maye_strlist *l = p;
        strlist_free(l);
        l->items = xmalloc(sizeof(char *) * (size_t)(n ? n : 1));
        for (int i = 0; i < n; i++) l->items[i] = xstrdup(vals[i]);
        l->n = n;
        return 0;
    }
    case CFG_FLOATLIST: {
        maye_floatlist *l = p;
        double *v = xmalloc(sizeof(double) * (size_t)(n ? n : 1));
        for (int i = 0; i < n; i++) {
            if (maye_parse_f64(vals[i], &v[i], f->key) < 0) {
                free(v);
                return -1;
            }
        }
        free(l->v);
        l->v = v;
        l->n = n;
        return 0;
    }
    }
    return maye_fail("%s: unsupported type", f->key);
}

// Sets a list field from override text "a,b" / "[a, b]", any other field from the text itself.
static int set_from_text(maye_config *c, const maye_cfg_field *f, const char *value) {
    if (f->type == CFG_STRLIST || f->type == CFG_FLOATLIST) {
        char **items;
        int n = split_list(value, &items);
        int rc = set_field(c, f, n, items, 1);
        for (int i = 0; i < n; i++) free(items[i]);
        free(items);
        return rc;
    }
    char *v = (char *)value;
    return set_field(c, f, 1, &v, 0);
}

int maye_config_set(maye_config *c, const char *key, const char *value) {
    const maye_cfg_field *f = find_field(key);
    if (!f) {
        if (is_section(key)) return maye_fail("'%s' is a section, not a key; set one of its keys", key);
        return unknown_key(key, "");
    }
    return set_from_text(c, f, value);
}

// ----------------------------------------------------------------------------
// YAML

static int load_yaml_node(maye_config *c, yaml_document_t *doc, yaml_node_t *node, const char *prefix,
                          const char *path) {
    int line = (int)node->start_mark.line + 1;
    if (node->type == YAML_MAPPING_NODE) {
        if (prefix[0] && find_field(prefix))
            return maye_fail("%s:%d: '%s' takes a value, not a mapping", path, line, prefix);
        for (yaml_node_pair_t *pr = node->data.mapping.pairs.start; pr < node->data.mapping.pairs.top; pr++) {
            yaml_node_t *k = yaml_document_get_node(doc, pr->key);
            yaml_node_t *v = yaml_document_get_node(doc, pr->value);
            if (!k || k->type != YAML_SCALAR_NODE)
                return maye_fail("%s:%d: mapping keys must be plain names", path, (int)k->start_mark.line + 1);
            maye_buf key = {0};
            if (prefix[0]) maye_buf_printf(&key, "%s.", prefix);
            maye_buf_append(&key, k->data.scalar.value, k->data.scalar.length);
            int rc = load_yaml_node(c, doc, v, key.data, path);
            maye_buf_free(&key);
            if (rc < 0) return -1;
        }
        return 0;
    }
    const maye_cfg_field *f = find_field(prefix);
    if (!f) {
        char where[512];
        snprintf(where, sizeof where, "%s:%d: ", path, line);
        if (is_section(prefix)) return maye_fail("%s'%s' is a section and needs a mapping of keys", where, prefix);
        return unknown_key(prefix, where);
    }
    int rc;
    if (node->type == YAML_SEQUENCE_NODE) {
        int n = (int)(node->data.sequence.items.top - node->data.sequence.items.start);
        char **vals = xmalloc(sizeof(char *) * (size_t)(n ? n : 1));
        rc = 0;
        for (int i = 0; i < n; i++) {
            yaml_node_t *it = yaml_document_get_node(doc, node->data.sequence.items.start[i]);
            if (!it || it->type != YAML_SCALAR_NODE) {
                rc = maye_fail("%s:%d: '%s' items must be plain values", path, line, prefix);
                n = i;
                break;
            }
            vals[i] = (char *)it->data.scalar.value;
        }
        if (rc == 0) rc = set_field(c, f, n, vals, 1);
        free(vals);
    } else {
        char *v = (char *)node->data.scalar.value;
        // a YAML null (`key:` or `key: ~`) means empty for strings and lists
        int is_null = node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && (!strcmp(v, "") || !strcmp(v, "~") ||
                                                                           !strcmp(v, "null"));
        if (is_null && (f->type == CFG_STRING || f->type == CFG_STRLIST || f->type == CFG_FLOATLIST))
            rc = set_field(c, f, f->type == CFG_STRING ? 1 : 0, (char *[]){""}, f->type != CFG_STRING);
        else if (f->type == CFG_STRLIST || f->type == CFG_FLOATLIST)
            rc = set_field(c, f, 1, &v, 1); // a single scalar is a one-item list
        else
            rc = set_field(c, f, 1, &v, 0);
    }
    if (rc < 0) return maye_fail_ctx("%s:%d", path, line);
    return 0;
}

static int load_yaml(maye_config *c, const char *path) {
    maye_buf text = {0};
    if (maye_read_file(path, &text) < 0) return -1;
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text.data, text.len);
    int rc = 0;
    if (!yaml_parser_load(&parser, &doc)) {
        rc = maye_fail("%s:%d:%d: YAML syntax error: %s", path, (int)parser.problem_mark.line + 1,
                       (int)parser.problem_mark.column + 1, parser.problem ? parser.problem : "unknown");
        yaml_parser_delete(&parser);
        maye_buf_free(&text);
        return rc;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root) {
        if (root->type != YAML_MAPPING_NODE)
            rc = maye_fail("%s: the top level must be a mapping of keys", path);
        else
            rc = load_yaml_node(c, &doc, root, "", path);
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    maye_buf_free(&text);
    return rc;
}

// ----------------------------------------------------------------------------
// load, print, free

int maye_config_load(maye_config *c, const char *yaml_path, int n_overrides, char *const *overrides) {
    memset(c, 0, sizeof *c);
    for (int i = 0; i < maye_cfg_nfields; i++)
        if (set_from_text(c, &maye_cfg_fields[i], maye_cfg_fields[i].def) < 0)
            maye_die("bad default for config key %s: %s", maye_cfg_fields[i].key, maye_errmsg());
    if (yaml_path && load_yaml(c, yaml_path) < 0) return -1;
    for (int i = 0; i < n_overrides; i++) {
        const char *eq = strchr(overrides[i], '=');
        if (!eq || eq == overrides[i])
            return maye_fail("override '%s' is not of the form key.path=value", overrides[i]);
        char *key = xmalloc((size_t)(eq - overrides[i]) + 1);
        memcpy(key, overrides[i], (size_t)(eq - overrides[i]));
        key[eq - overrides[i]] = 0;
        int rc = maye_config_set(c, key, eq + 1);
        free(key);
        if (rc < 0) return maye_fail_ctx("command-line override '%s'", overrides[i]);
    }
    return 0;
}

// Writes a scalar so that YAML reads it back as the same string.
static void yaml_quote(maye_buf *b, const char *s) {
    maye_buf_putc(b, '"');
    for (const char *p = s; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '"' || ch == '\\') maye_buf_printf(b, "\\%c", ch);
        else if (ch == '\n') maye_buf_puts(b, "\\n");
        else if (ch == '\t') maye_buf_puts(b, "\\t");
        else if (ch < 0x20) maye_buf_printf(b, "\\x%02x", ch);
        else maye_buf_putc(b, (char)ch);
    }
    maye_buf_putc(b, '"');
}

char *maye_config_to_yaml(const maye_config *c) {
    maye_buf b = {0};
    char section[64] = "";
    for (int i = 0; i < maye_cfg_nfields; i++) {
        const maye_cfg_field *f = &maye_cfg_fields[i];
        const char *dot = strchr(f->key, '.');
        const char *leaf = f->key;
        const char *indent = "";
        if (dot) {
            size_t n = (size_t)(dot - f->key);
            if (strlen(section) != n || strncmp(section, f->key, n)) {
                memcpy(section, f->key, n);
                section[n] = 0;
                maye_buf_printf(&b, "%s:\n", section);
            }
            leaf = dot + 1;
            indent = "  ";
        } else {
            section[0] = 0;
        }
        maye_buf_printf(&b, "%s%s: ", indent, leaf);
        const void *p = (const char *)c + f->offset;
        switch (f->type) {
        case CFG_INT: maye_buf_printf(&b, "%lld", (long long)*(const int64_t *)p); break;
        case CFG_FLOAT: maye_buf_printf(&b, "%.17g", *(const double *)p); break;
        case CFG_BOOL: maye_buf_puts(&b, *(const bool *)p ? "true" : "false"); break;
        case CFG_STRING: yaml_quote(&b, *(char *const *)p ? *(char *const *)p : ""); break;
        case CFG_STRLIST: {
            const maye_strlist *l = p;
            maye_buf_putc(&b, '[');
            for (int k = 0; k < l->n; k++) {
                if (k) maye_buf_puts(&b, ", ");
                yaml_quote(&b, l->items[k]);
            }
            maye_buf_putc(&b, ']');
            break;
        }
        case CFG_FLOATLIST: {
            const maye_floatlist *l = p;
            maye_buf_putc(&b, '[');
            for (int k = 0; k < l->n; k++) maye_buf_printf(&b, "%s%.17g", k ? ", " : "", l->v[k]);
            maye_buf_putc(&b, ']');
            break;
        }
        }
        maye_buf_printf(&b, "  # %s\n", f->help);
    }
    return b.data;
}

uint64_t maye_config_digest(const maye_config *c) {
    char *y = maye_config_to_yaml(c);
    uint64_t h = maye_fnv1a(MAYE_FNV_INIT, y, strlen(y));
    free(y);
    return h;
}

void maye_config_free(maye_config *c) {
    for (int i = 0; i < maye_cfg_nfields; i++) {
        const maye_cfg_field *f = &maye_cfg_fields[i];
        void *p = slot(c, f);
        if (f->type == CFG_STRING) {
            free(*(char **)p);
            *(char **)p = NULL;
        } else if (f->type == CFG_STRLIST) {
            strlist_free(p);
        } else if (f->type == CFG_FLOATLIST) {
            free(((maye_floatlist *)p)->v);
            ((maye_floatlist *)p)->v = NULL;
            ((maye_floatlist *)p)->n = 0;
        }
    }
}
