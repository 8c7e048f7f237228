// Safetensors: write/read round trip for every dtype, bf16/f16 conversion, sharded index, and clear errors
// for truncated and inconsistent files. Also opens the fixture checkpoints if present.
#include "core/util.h"
#include "io/safetensors.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *tmp(const char *name) { return maye_path_join(test_tmpdir(), name); }

static void write_raw(const char *path, const char *header, size_t data_bytes) {
    FILE *f = fopen(path, "wb");
    uint64_t n = strlen(header);
    fwrite(&n, 8, 1, f);
    fwrite(header, 1, n, f);
    for (size_t i = 0; i < data_bytes; i++) fputc(0, f);
    fclose(f);
}

int main(void) {
    float f32[6] = {1.5f, -2.25f, 3.0f, 0.1f, 65504.0f, -1e-3f};
    int64_t i64[3] = {-1, 0, 1234567890123LL};
    uint8_t u8[4] = {0, 1, 254, 255};
    int64_t s23[2] = {2, 3}, s3[1] = {3}, s4[1] = {4}, s6[1] = {6};
    maye_st_writer w;
    maye_st_writer_init(&w);
    maye_st_writer_add(&w, "b.f32", MAYE_F32, 2, s23, f32);
    maye_st_writer_add(&w, "a.i64", MAYE_I64, 1, s3, i64);
    maye_st_writer_add(&w, "c.u8", MAYE_U8, 1, s4, u8);
    maye_st_writer_add_f32_as(&w, "d.bf16", MAYE_BF16, 1, s6, f32);
    maye_st_writer_add_f32_as(&w, "e.f16", MAYE_F16, 1, s6, f32);
    maye_st_writer_meta(&w, "format", "pt");
    char *p = tmp("rt.safetensors");
    EXPECT_OK(maye_st_writer_save(&w, p));
    maye_st_writer_free(&w);

    maye_safetensors st;
    EXPECT_OK(maye_st_open(&st, p));
    EXPECT(st.ntensors == 5, "ntensors %d", st.ntensors);
    const maye_st_tensor *t;
    EXPECT_OK(maye_st_expect(&st, "b.f32", 2, s23, &t));
    float back[6];
    maye_st_to_f32(t, back);
    test_close_f32("b.f32", back, f32, 6, 0, 0);
    int64_t ib[3];
    EXPECT_OK(maye_st_to_i64(maye_st_find(&st, "a.i64"), ib));
    test_equal_i64("a.i64", ib, i64, 3);
    maye_st_to_f32(maye_st_find(&st, "d.bf16"), back);
    test_close_f32("d.bf16", back, f32, 6, 1e-6, 1.0 / 256);
    maye_st_to_f32(maye_st_find(&st, "e.f16"), back);
    test_close_f32("e.f16", back, f32, 6, 1e-6, 1.0 / 1024);
    EXPECT(st.metadata_json && strstr(st.metadata_json, "\"format\":\"pt\""), "metadata");
    int64_t wrong[2] = {3, 2};
    EXPECT_FAIL(maye_st_expect(&st, "b.f32", 2, wrong, NULL), "has shape [2, 3], expected [3, 2]");
    EXPECT_FAIL(maye_st_expect(&st, "zzz", 1, s3, NULL), "missing tensor 'zzz'");
    EXPECT_FAIL(maye_st_to_i64(maye_st_find(&st, "b.f32"), ib), "expected an integer dtype");
    maye_st_close(&st);

    // bf16 conversion rounds to nearest even and keeps NaN a NaN
    EXPECT(maye_f32_to_bf16(1.0f) == 0x3f80, "bf16(1)");
    EXPECT(maye_bf16_to_f32(maye_f32_to_bf16(3.0f)) == 3.0f, "bf16(3)");
    EXPECT(maye_f16_to_f32(maye_f32_to_f16(0.5f)) == 0.5f, "f16(.5)");
    EXPECT(maye_f16_to_f32(maye_f32_to_f16(6e-8f)) > 0, "f16 subnormal");

    // sharded checkpoint through an index
    char *dir = tmp("sharded");
    maye_mkdir_p(dir);
    char *s1 = maye_path_join(dir, "model-00001-of-00002.safetensors");
    char *s2 = maye_path_join(dir, "model-00002-of-00002.safetensors");
    maye_st_writer_init(&w);
    maye_st_writer_add(&w, "x", MAYE_F32, 1, s6, f32);
    EXPECT_OK(maye_st_writer_save(&w, s1));
    maye_st_writer_free(&w);
    maye_st_writer_init(&w);
    maye_st_writer_add(&w, "y", MAYE_I64, 1, s3, i64);
    EXPECT_OK(maye_st_writer_save(&w, s2));
    maye_st_writer_free(&w);
    char *idx = maye_path_join(dir, "model.safetensors.index.json");
    const char *index_json = "{\"metadata\": {}, \"weight_map\": {\"x\": \"model-00001-of-00002.safetensors\", "
                             "\"y\": \"model-00002-of-00002.safetensors\"}}";
    maye_write_file_atomic(idx, index_json, strlen(index_json));
    EXPECT_OK(maye_st_open(&st, dir));
    EXPECT(st.ntensors == 2 && st.nfiles == 2, "sharded: %d tensors %d files", st.ntensors, st.nfiles);
    EXPECT(maye_st_find(&st, "y") && maye_st_find(&st, "y")->shard == 1, "y in shard 1");
    maye_st_close(&st);
    const char *bad_index = "{\"weight_map\": {\"x\": \"model-00002-of-00002.safetensors\"}}";
    maye_write_file_atomic(idx, bad_index, strlen(bad_index));
    EXPECT_FAIL(maye_st_open(&st, dir), "lists tensor 'x' in 'model-00002-of-00002.safetensors'");

    // truncated and inconsistent files
    maye_buf whole = {0};
    maye_read_file(p, &whole);
    char *trunc = tmp("trunc.safetensors");
    maye_write_file_atomic(trunc, whole.data, whole.len - 5);
    EXPECT_FAIL(maye_st_open(&st, trunc), "truncated or inconsistent");
    maye_write_file_atomic(trunc, whole.data, 12);
    EXPECT_FAIL(maye_st_open(&st, trunc), "header length");
    maye_write_file_atomic(trunc, whole.data, 3);
    EXPECT_FAIL(maye_st_open(&st, trunc), "too short");
    maye_buf_free(&whole);
    char *bad = tmp("bad.safetensors");
    write_raw(bad, "{\"t\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 12]}}", 16);
    EXPECT_FAIL(maye_st_open(&st, bad), "tensor 't': F32 shape needs 16 bytes but data_offsets give 12");
    write_raw(bad, "{\"t\": {\"dtype\": \"Q4\", \"shape\": [4], \"data_offsets\": [0, 16]}}", 16);
    EXPECT_FAIL(maye_st_open(&st, bad), "unsupported dtype");
    write_raw(bad, "{\"t\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, "
                   "\"u\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}", 16);
    EXPECT_FAIL(maye_st_open(&st, bad), "overlap");
    write_raw(bad, "{not json", 0);
    EXPECT_FAIL(maye_st_open(&st, bad), "not a valid JSON object");
    EXPECT_FAIL(maye_st_open(&st, "/nonexistent.safetensors"), "cannot open");

    // the fixture checkpoints open and have the expected tensor
    const char *root = test_fixtures_root();
    if (root) {
        char *m = maye_path_join(root, "golden/tiny-qwen2-vl-bf16");
        EXPECT_OK(maye_st_open(&st, m));
        const maye_st_tensor *e = maye_st_find(&st, "model.embed_tokens.weight");
        EXPECT(e && e->dtype == MAYE_BF16, "bf16 fixture embeds");
        maye_st_close(&st);
        free(m);
    }
    free(p), free(dir), free(s1), free(s2), free(idx), free(trunc), free(bad);
    return TEST_RESULT();
}
