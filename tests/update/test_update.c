// maye-update as a program: replaying a saved Trajectory file trains deterministically; 4 steps straight
// equal 2 steps, a stop, a resume from the checkpoint and 2 more steps, bit for bit; every step publishes a
// weight-sync file and a Metrics record; bad input (NaN log-probs naming the sample, ids outside the model's
// vocabulary, an empty step) fails without touching the last good weights.
#include "core/util.h"
#include "data/dataset.h"
#include "data/inputs.h"
#include "io/records.h"
#include "model/weightsync.h"
#include "rl/trajectory.h"
#include "test.h"
#include "support/tiny_vlm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *TOKENIZER = "configs/demo/tokenizer.json";
static const char *DATASET = "configs/example/train.jsonl";
enum { STEPS = 4, QUERIES = 2, RESPONSES = 2 };


// Writes STEPS steps of trajectories (scored by model m) to path; `poison` damages one record of step 2:
// 1 = a NaN policy log-prob, 2 = a token id outside the vocabulary, 3 = every response of step 2 empty.
static void write_trajectories(const char *path, const maye_model *m, const maye_tokenizer *tok, int poison) {
    maye_config cfg;
    EXPECT_OK(maye_config_load(&cfg, NULL, 0, NULL));
    maye_image_processor_config img;
    EXPECT_OK(maye_run_image_config(&cfg, &img));
    maye_dataset ds;
    EXPECT_OK(maye_dataset_load(&ds, DATASET, 0));
    maye_query_builder qb;
    EXPECT_OK(maye_query_builder_init(&qb, tok, &img, NULL, "", false, 0));
    maye_traj_builder tb;
    EXPECT_OK(maye_traj_builder_init(&tb, &cfg, m, m));
    Maye__StreamHeader h;
    maye_header_init(&h, MAYE__RECORD_KIND__TRAJECTORY, "test", NULL);
    h.vocab_size = maye_tokenizer_vocab_size(tok);
    maye_writer *w;
    EXPECT_OK(maye_writer_open(&w, path, &h, NULL));
    static const char *texts[] = {"The answer is \\boxed{3}.", "Wait, \\boxed{4}", "I count 2 shapes.",
                                  "\\boxed{10}", "Let me verify: \\boxed{5}", "no idea"};
    for (int s = 0; s < STEPS; s++) {
        Maye__Query q[QUERIES];
        Maye__Position pos[QUERIES];
        Maye__Rollout r[QUERIES], *rp[QUERIES];
        Maye__Response resp[QUERIES][RESPONSES], *rr[QUERIES][RESPONSES];
        maye_token_ids enc[QUERIES][RESPONSES];
        for (int i = 0; i < QUERIES; i++) {
            int sample = (s * QUERIES + i) % ds.n;
            EXPECT_OK(maye_query_build(&qb, &ds, sample, &q[i]));
            maye__position__init(&pos[i]);
            pos[i].sample_id = ds.samples[sample].id;
            pos[i].step = s, pos[i].step_offset = i, pos[i].step_records = QUERIES, pos[i].split = "train";
            pos[i].total_steps = STEPS, pos[i].epoch = s / 2;
            q[i].pos = &pos[i];
            maye__rollout__init(&r[i]);
            r[i].query = &q[i];
            r[i].temperature = 1.0f;
            r[i].n_responses = RESPONSES;
            r[i].responses = rr[i];
            rp[i] = &r[i];
            for (int j = 0; j < RESPONSES; j++) {
                memset(&enc[i][j], 0, sizeof enc[i][j]);
                const char *text = texts[(s + i * 2 + j) % 6];
                if (!(poison == 3 && s == 2)) {
                    EXPECT_OK(maye_tokenizer_encode(tok, text, strlen(text), &enc[i][j]));
                    maye_token_ids_push(&enc[i][j], maye_tokenizer_token_id(tok, "<|im_end|>"));
                }
                maye__response__init(&resp[i][j]);
                resp[i][j].sample_index = j;
                resp[i][j].ids = enc[i][j].data, resp[i][j].n_ids = enc[i][j].len;
                resp[i][j].text = poison == 3 && s == 2 ? "" : (char *)text;
                resp[i][j].finish = MAYE__FINISH_REASON__STOP;
                rr[i][j] = &resp[i][j];
            }
        }
        Maye__Trajectory **t;
        int nt;
        EXPECT_OK(maye_traj_build_step(&tb, rp, QUERIES, &t, &nt));
        if (s == 2 && poison == 1) t[1]->policy_logprobs[0] = NAN;
        if (s == 2 && poison == 2) t[3]->response_ids[0] = 100000;
        for (int k = 0; k < nt; k++) EXPECT_OK(maye_writer_write(w, &t[k]->base));
        EXPECT_OK(maye_writer_flush(w));
        maye_traj_free(t, nt);
        for (int i = 0; i < QUERIES; i++) {
            q[i].pos = NULL;
            maye_query_clear(&q[i]);
            for (int j = 0; j < RESPONSES; j++) maye_token_ids_free(&enc[i][j]);
        }
    }
    EXPECT_OK(maye_writer_close(w));
    maye_traj_builder_free(&tb);
    maye_dataset_free(&ds);
    maye_config_free(&cfg);
}

// Runs maye-update; returns its exit status.
static int run_update(const char *model, const char *run, const char *in, const char *extra, const char *err) {
    maye_buf cmd = {0};
    maye_buf_printf(&cmd, "'%s/maye-update' model.path='%s' run_dir='%s' update.lr=1e-3 update.ppo_batch_size=2 "
                          "update.ppo_backward_batch_size=1 update.save_every=2 update.save_dtype=bf16 %s -i '%s' "
                          "-o '%s/metrics.zst' 2>'%s'",
                    getenv("MAYE_BIN") ? getenv("MAYE_BIN") : "build/bin", model, run, extra, in, run, err);
    int rc = system(cmd.data);
    maye_buf_free(&cmd);
    return rc;
}

static maye_buf read_or_empty(const char *dir, const char *rel) {
    char *p = maye_path_join(dir, rel);
    maye_buf b = {0};
    if (maye_read_file(p, &b) < 0) maye_buf_puts(&b, "");
    free(p);
    return b;
}

static int same_file(const char *a, const char *b, const char *rel) {
    maye_buf x = read_or_empty(a, rel), y = read_or_empty(b, rel);
    int same = x.len > 0 && x.len == y.len && !memcmp(x.data, y.data, x.len);
    maye_buf_free(&x), maye_buf_free(&y);
    return same;
}

int main(void) {
    const char *tmp = test_tmpdir();
    maye_tokenizer *tok;
    EXPECT_OK(maye_tokenizer_load(&tok, TOKENIZER));
    char *cfg = test_tiny_vlm_config(tok), *model = maye_path_join(tmp, "model");
    maye_model m;
    EXPECT_OK(maye_model_init(&m, cfg, "tiny", 5));
    EXPECT_OK(maye_model_save(&m, model, MAYE_F32));
    char *good = maye_path_join(tmp, "good.zst"), *two = maye_path_join(tmp, "two.zst");
    write_trajectories(good, &m, tok, 0);

    // straight run, and a replay of the same file: identical weights
    char *a = maye_path_join(tmp, "a"), *b = maye_path_join(tmp, "b"), *c = maye_path_join(tmp, "c");
    char *err = maye_path_join(tmp, "err.txt");
    EXPECT(run_update(model, a, good, "", err) == 0, "straight run failed (see %s)", err);
    EXPECT(run_update(model, b, good, "", err) == 0, "replay failed");
    EXPECT(same_file(a, b, "checkpoints/step-000004/master.safetensors"), "a replay gave other weights");
    EXPECT(same_file(a, b, "checkpoints/step-000004/optimizer.safetensors"), "a replay gave another optimizer state");
    maye_buf latest = read_or_empty(a, "checkpoints/latest");
    EXPECT(!strcmp(latest.data, "step-000004\n"), "latest = '%s'", latest.data);
    maye_buf_free(&latest);
    char *w4 = maye_weight_file(a, 4);
    EXPECT(maye_file_exists(w4), "version 4 published");
    free(w4);
    // the metrics stream has one record per step
    char *mpath = maye_path_join(a, "metrics.zst");
    maye_reader *r = NULL;
    EXPECT_OK(maye_reader_open(&r, mpath, MAYE__RECORD_KIND__METRICS));
    int nrec = 0;
    ProtobufCMessage *msg;
    while (r && maye_reader_next(r, &msg, NULL) == 1) {
        const Maye__Metrics *mm = (const Maye__Metrics *)msg;
        EXPECT(mm->step == nrec && mm->version == nrec + 1, "metrics step %lld version %lld", (long long)mm->step,
               (long long)mm->version);
        int has_loss = 0;
        for (size_t i = 0; i < mm->n_values; i++) has_loss |= !strcmp(mm->values[i]->key, "policy_loss") && isfinite(mm->values[i]->value);
        EXPECT(has_loss, "policy_loss in the metrics of step %d", nrec);
        maye_record_free(msg);
        nrec++;
    }
    if (r) maye_reader_close(r);
    EXPECT(nrec == STEPS, "%d metrics records", nrec);
    free(mpath);

    // 2 steps, then resume from the checkpoint for the other 2: bit-identical to the straight run
    maye_buf full = {0};
    EXPECT_OK(maye_read_file(good, &full));
    // the first two steps as their own stream: re-run the generator is not needed, the reader stops at EOF
    EXPECT(run_update(model, c, good, "", err) == 0, "third run");
    char *ckpt2 = maye_path_join(c, "checkpoints/step-000002");
    maye_buf extra = {0};
    maye_buf_printf(&extra, "--resume '%s'", ckpt2);
    char *d = maye_path_join(tmp, "d");
    EXPECT(run_update(model, d, good, extra.data, err) == 0, "resumed run failed");
    EXPECT(same_file(a, d, "checkpoints/step-000004/master.safetensors"),
           "2 steps + resume + 2 steps differ from 4 steps straight");
    EXPECT(same_file(a, d, "checkpoints/step-000004/optimizer.safetensors"), "optimizer state after resume differs");
    maye_buf log = read_or_empty(tmp, "err.txt");
    EXPECT(strstr(log.data, "skipping step 1"), "the resumed run skips the steps the checkpoint holds");
    maye_buf_free(&log);

    // bad input: the step fails, names the sample, and the last good state is kept
    const char *needles[] = {"policy_logprobs[0] is nan", "outside the model's vocabulary", "no response tokens"};
    for (int poison = 1; poison <= 3; poison++) {
        char name[32];
        snprintf(name, sizeof name, "bad%d", poison);
        char *bad = maye_path_join(tmp, "bad.zst"), *e = maye_path_join(tmp, name);
        write_trajectories(bad, &m, tok, poison);
        EXPECT(run_update(model, e, bad, "", err) != 0, "poison %d accepted", poison);
        maye_buf msgs = read_or_empty(tmp, "err.txt");
        EXPECT(strstr(msgs.data, needles[poison - 1]), "poison %d: message lacks '%s': %s", poison,
               needles[poison - 1], msgs.data);
        EXPECT(strstr(msgs.data, "step 2"), "poison %d: the message names the step", poison);
        maye_buf_free(&msgs);
        EXPECT(same_file(a, e, "checkpoints/step-000002/master.safetensors"),
               "poison %d: the last good checkpoint (step 2) is not the straight run's", poison);
        char *v3 = maye_weight_file(e, 3);
        EXPECT(!maye_file_exists(v3), "poison %d: a version was published for the failed step", poison);
        free(v3), free(bad), free(e);
    }
    maye_buf_free(&full), maye_buf_free(&extra);
    free(cfg), free(model), free(good), free(two), free(a), free(b), free(c), free(d), free(err), free(ckpt2);
    maye_model_free(&m);
    maye_tokenizer_free(tok);
    return TEST_RESULT();
}
