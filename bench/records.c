// Record stream throughput for Trajectory-sized records: writing (pack + zstd + write(2)) and reading
// (read(2) + zstd + unpack) at zstd levels 1 and 3, for records without an image, with a diagram and with
// a photo-like image (a batch of 16 records is flushed at a time, as the stages do). The baseline,
// measured in the same run, is protobuf packing and unpacking alone (no compression, no I/O), so the
// ratio says what the stream layer adds. One JSON line per result on stdout.
//
// Sizes: T prompt tokens, R response tokens, H x W image pixels.
#include "core/error.h"
#include "core/util.h"
#include "io/records.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { T = 700, R = 1024, H = 448, W = 448, BATCH = 16 };

// ----------------------------------------------------------------------------
// a realistic trajectory: smooth image with noise, random-looking log-probs

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint32_t next_u32(void) {
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

typedef enum { NO_IMAGE, DIAGRAM, PHOTO } image_kind;
static const char *image_names[] = {"none", "diagram", "photo"};

// DIAGRAM: a line drawing on white, like geometry3k / MM-Math figures (compresses well); PHOTO: a smooth
// gradient with 3 bits of noise per channel, like a natural photo (hardly compresses: zstd's worst case).
static void draw_image(uint8_t *px, image_kind kind) {
    uint32_t shift = next_u32() % 256;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 3; c++) {
                uint8_t *p = px + ((size_t)y * W + x) * 3 + c;
                if (kind == PHOTO) {
                    *p = (uint8_t)((x + y + shift) / 4 + (next_u32() & 7));
                } else {
                    int dx = x - W / 2, dy = y - H / 2, r2 = dx * dx + dy * dy, r = (int)(shift % 64) + 120;
                    int on_circle = r2 > (r - 1) * (r - 1) && r2 < (r + 1) * (r + 1);
                    int on_line = abs(2 * x - 3 * y + (int)shift) < 3 || abs(y - H / 3) < 1;
                    *p = on_circle || on_line ? 30 : 255;
                }
            }
}

static Maye__Trajectory *make_trajectory(image_kind with_image) {
    Maye__Trajectory *t = xcalloc(1, sizeof *t);
    maye__trajectory__init(t);
    Maye__Query *q = xcalloc(1, sizeof *q);
    maye__query__init(q);
    q->pos = xcalloc(1, sizeof *q->pos);
    maye__position__init(q->pos);
    q->pos->sample_id = xstrdup("geometry3k-1234");
    q->pos->step = 17;
    q->pos->split = xstrdup("train");
    q->n_prompt_ids = T;
    q->prompt_ids = xmalloc(T * sizeof(int32_t));
    for (int i = 0; i < T; i++) q->prompt_ids[i] = i < 600 ? 151655 : (int32_t)(next_u32() % 151643);
    q->question = xstrdup("<image>As shown in the figure, AB is the diameter of circle O. Find the angle ACD.");
    q->answer = xstrdup("40");
    if (with_image) {
        q->n_images = 1;
        q->images = xmalloc(sizeof *q->images);
        Maye__Image *im = q->images[0] = xcalloc(1, sizeof *im);
        maye__image__init(im);
        im->height = H;
        im->width = W;
        uint8_t *px = xmalloc((size_t)H * W * 3);
        draw_image(px, with_image);
        int64_t shape[3] = {H, W, 3};
        im->rgb = xmalloc(sizeof *im->rgb);
        maye_tensor_set_u8(im->rgb, 3, shape, px);
        free(px);
        im->n_grid_thw = 3;
        im->grid_thw = xmalloc(3 * sizeof(int64_t));
        im->grid_thw[0] = 1, im->grid_thw[1] = H / 14, im->grid_thw[2] = W / 14;
    }
    t->query = q;
    t->n_response_ids = t->n_policy_logprobs = t->n_ref_logprobs = t->n_rollout_logprobs = t->n_response_mask = R;
    t->response_ids = xmalloc(R * sizeof(int32_t));
    t->policy_logprobs = xmalloc(R * sizeof(float));
    t->ref_logprobs = xmalloc(R * sizeof(float));
    t->rollout_logprobs = xmalloc(R * sizeof(float));
    t->response_mask = xmalloc(R * sizeof(float));
    for (int i = 0; i < R; i++) {
        t->response_ids[i] = (int32_t)(next_u32() % 151643);
        t->policy_logprobs[i] = -(float)(next_u32() % 100000) / 10000.0f;
        t->ref_logprobs[i] = t->policy_logprobs[i] - 0.01f;
        t->rollout_logprobs[i] = t->policy_logprobs[i] + 0.001f;
        t->response_mask[i] = 1;
    }
    t->response_text = xstrdup("Since AB is a diameter, angle ACB = 90 degrees ... \\boxed{40}");
    t->score = 1;
    t->correct = 1;
    t->response_length = R;
    return t;
}

// ----------------------------------------------------------------------------
// measurements

static void report(const char *what, image_kind with_image, int level, const char *op, int n, size_t raw, size_t stored,
                   double secs, double baseline_secs) {
    printf("{\"bench\":\"records\",\"case\":\"%s\",\"image\":\"%s\",\"zstd_level\":%d,\"op\":\"%s\",\"records\":%d,"
           "\"record_bytes\":%zu,\"stored_bytes_per_record\":%zu,\"mb_per_s\":%.1f,\"records_per_s\":%.0f,"
           "\"us_per_record\":%.1f,\"baseline\":\"protobuf %s alone\",\"baseline_us_per_record\":%.1f,"
           "\"ratio_to_baseline\":%.2f}\n",
           what, image_names[with_image], level, op, n, raw / n, stored / n, raw / secs / 1e6, n / secs,
           secs / n * 1e6, strcmp(op, "write") ? "unpack" : "pack", baseline_secs / n * 1e6, secs / baseline_secs);
    fflush(stdout);
}

// Records cycle through a pool of distinct ones larger than zstd's window, so compression cannot cheat by
// matching a record against an identical earlier one.
static int run_case(image_kind with_image, int level, const char *dir) {
    int pool = with_image ? 16 : 512, n = with_image ? 160 : 4096;
    Maye__Trajectory **t = xmalloc(pool * sizeof *t);
    size_t raw = 0, max_size = 0;
    for (int i = 0; i < pool; i++) {
        t[i] = make_trajectory(with_image);
        size_t size = protobuf_c_message_get_packed_size(&t[i]->base);
        max_size = size > max_size ? size : max_size;
    }
    for (int i = 0; i < n; i++) raw += protobuf_c_message_get_packed_size(&t[i % pool]->base);

    // baseline: pack and unpack only
    uint8_t *packed = xmalloc(max_size);
    double t0 = maye_now(), pack_secs = 0, unpack_secs = 0;
    for (int i = 0; i < n; i++) {
        t0 = maye_now();
        size_t size = protobuf_c_message_pack(&t[i % pool]->base, packed);
        pack_secs += maye_now() - t0;
        t0 = maye_now();
        maye__trajectory__free_unpacked(maye__trajectory__unpack(NULL, size, packed), NULL);
        unpack_secs += maye_now() - t0;
    }
    free(packed);

    // write a stream to a file, flushing every BATCH records as a stage does
    Maye__StreamHeader h;
    maye_header_init(&h, MAYE__RECORD_KIND__TRAJECTORY, "bench-records", NULL);
    char *path = maye_path_join(dir, "bench.zst");
    maye_writer_opts opts = {.level = level};
    maye_writer *w;
    t0 = maye_now();
    TRY(maye_writer_open(&w, path, &h, &opts));
    for (int i = 0; i < n; i++) {
        TRY(maye_writer_write(w, &t[i % pool]->base));
        if ((i + 1) % BATCH == 0) TRY(maye_writer_flush(w));
    }
    int64_t stored = maye_writer_bytes(w);
    TRY(maye_writer_close(w));
    double write_secs = maye_now() - t0;
    report("trajectory", with_image, level, "write", n, raw, (size_t)stored, write_secs, pack_secs);

    // read it back through read(2)
    maye_reader *r;
    t0 = maye_now();
    TRY(maye_reader_open(&r, path, MAYE__RECORD_KIND__TRAJECTORY));
    int got = 0;
    for (;;) {
        ProtobufCMessage *m;
        int rc = maye_reader_next(r, &m, NULL);
        TRY(rc);
        if (rc == 0) break;
        maye_record_free(m);
        got++;
    }
    maye_reader_close(r);
    double read_secs = maye_now() - t0;
    CHECK_OR_FAIL(got == n, "read %d records, wrote %d", got, n);
    report("trajectory", with_image, level, "read", n, raw, (size_t)stored, read_secs, unpack_secs);
    unlink(path);
    free(path);
    maye_header_free(&h);
    for (int i = 0; i < pool; i++) maye__trajectory__free_unpacked(t[i], NULL);
    free(t);
    return 0;
}

int main(int argc, char **argv) {
    char dir[] = "/tmp/maye-bench-records.XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    int rc = 0;
    for (int kind = NO_IMAGE; kind <= PHOTO && rc == 0; kind++)
        for (int level = 1; level <= 3 && rc == 0; level += 2) rc = run_case((image_kind)kind, level, dir);
    rmdir(dir);
    if (rc < 0) {
        fprintf(stderr, "bench records: %s\n", maye_errmsg());
        return 1;
    }
    return 0;
}
