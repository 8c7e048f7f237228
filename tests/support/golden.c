// Helpers of the golden tests (see golden.h).
#include "support/golden.h"

#include "core/util.h"
#include "test.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// ----------------------------------------------------------------------------
// fixture folders and samples

int test_golden_main(int (*check)(const char *dir, const char *name), const char *none) {
    const char *root = test_fixtures_root();
    if (!root) {
        printf("fixtures not found (set MAYE_FIXTURES)\n");
        return TEST_SKIP;
    }
    char *golden = maye_path_join(root, "golden");
    DIR *d = opendir(golden);
    if (!d) {
        printf("no golden fixtures under %s\n", root);
        free(golden);
        return TEST_SKIP;
    }
    char **names = NULL;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        names = xrealloc(names, sizeof(char *) * (size_t)(n + 1));
        names[n++] = xstrdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof(char *), cmp_str);
    int checked = 0;
    for (int i = 0; i < n; i++) {
        char *dir = maye_path_join(golden, names[i]);
        if (maye_is_dir(dir)) checked += check(dir, names[i]);
        free(dir), free(names[i]);
    }
    free(names);
    free(golden);
    if (!checked) {
        printf("%s\n", none);
        return TEST_SKIP;
    }
    return TEST_RESULT();
}

int test_golden_samples(const maye_safetensors *st, char ***names) {
    *names = NULL;
    int n = 0;
    for (int i = 0; i < st->ntensors; i++) {
        const char *tn = st->tensors[i].name, *dot = strchr(tn, '.');
        if (!dot || strcmp(dot, ".input_ids") || !strncmp(tn, "rl.", 3)) continue;
        *names = xrealloc(*names, sizeof(char *) * (size_t)(n + 1));
        (*names)[n] = xstrdup(tn);
        (*names)[n++][dot - tn] = 0;
    }
    if (n) qsort(*names, (size_t)n, sizeof(char *), cmp_str);
    return n;
}

// ----------------------------------------------------------------------------
// tensors and manifest numbers

float *test_st_f32(const maye_safetensors *st, const char *name, int64_t *n) {
    const maye_st_tensor *t = maye_st_find(st, name);
    if (!t) return NULL;
    float *out = xmalloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
    maye_st_to_f32(t, out);
    if (n) *n = t->numel;
    return out;
}

int64_t *test_st_i64(const maye_safetensors *st, const char *name, int64_t *n) {
    const maye_st_tensor *t = maye_st_find(st, name);
    if (!t) return NULL;
    int64_t *out = xmalloc(sizeof(int64_t) * (size_t)(t->numel ? t->numel : 1));
    if (maye_st_to_i64(t, out) < 0) maye_die("%s", maye_errmsg());
    if (n) *n = t->numel;
    return out;
}

int test_rl_number(const cJSON *obj, const char *key, double *out, const char *where) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v)) {
        fprintf(stderr, "FAIL: %s: manifest rl.%s is missing or not a number\n", where, key);
        test_failures++;
        return -1;
    }
    *out = v->valuedouble;
    return 0;
}
