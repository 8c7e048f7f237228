// Fuzz target: the safetensors reader on arbitrary bytes (header parsing, offsets, shapes, dtypes), then
// every tensor converted to f32 (and to i64 where allowed), which touches every byte the header claims.
#include "core/error.h"
#include "io/safetensors.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int fd = memfd_create("fuzz.safetensors", 0);
    if (fd < 0) return 0;
    if (size && write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    maye_safetensors st;
    if (maye_st_open(&st, path) == 0) {
        for (int i = 0; i < st.ntensors; i++) {
            const maye_st_tensor *t = &st.tensors[i];
            if (t->numel > (1 << 20)) continue; // the bytes were checked; converting huge ones only costs time
            float *f = malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
            maye_st_to_f32(t, f);
            int64_t *v = malloc(sizeof(int64_t) * (size_t)(t->numel ? t->numel : 1));
            maye_st_to_i64(t, v);
            free(f), free(v);
            if (maye_st_find(&st, t->name) != t) abort();
        }
        maye_st_close(&st);
    }
    close(fd);
    return 0;
}
