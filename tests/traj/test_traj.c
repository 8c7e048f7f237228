// maye-traj: trajectories built from hand-made rollouts over the example dataset. The policy and reference
// log-probs equal a plain forward over each sequence; after the policy changes, the policy log-probs move
// and the reference ones stay those of version 0; rewards, the judge's verdict and reflection counts follow
// the response text; the stage CLI writes the same records as the library and refuses a rollout stream for
// another vocabulary.
#include "core/util.h"
#include "data/dataset.h"
#include "data/inputs.h"
#include "io/steps.h"
#include "model/weightsync.h"
#include "rl/trajectory.h"
#include "test.h"
#include "support/tiny_vlm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *TOKENIZER = "configs/demo/tokenizer.json";
static const char *DATASET = "configs/example/train.jsonl";


// Log-probs of ids[n_prompt..T) under m by one forward over the whole sequence.
static void direct_logprobs(const maye_model *m, const Maye__Query *q, const maye_image_processor_config *img,
                            const int32_t *ids32, int T, int n_prompt, float *out) {
    maye_query_pixels pix;
    EXPECT_OK(maye_query_pixels_build(q, img, &pix));
    int64_t ntok;
    EXPECT_OK(maye_vision_check(&m->cfg, pix.n_patches, pix.grid_thw, pix.n_images, &ntok));
    float *feats = xmalloc(sizeof(float) * (size_t)(ntok * m->cfg.hidden));
    EXPECT_OK(maye_vision_forward(m, pix.pixels, pix.n_patches, pix.grid_thw, pix.n_images, feats));
    int64_t *ids = xmalloc(sizeof(int64_t) * (size_t)T), *pos = xmalloc(sizeof(int64_t) * 3 * (size_t)T), delta;
    int64_t *tgt = xmalloc(sizeof(int64_t) * (size_t)T);
    for (int t = 0; t < T; t++) ids[t] = ids32[t];
    EXPECT_OK(maye_mrope_positions(&m->cfg, ids, T, pix.grid_thw, pix.n_images, pos, T, &delta));
    int cu[2] = {0, T};
    maye_llm_batch b = {.B = 1, .T = T, .cu_seqlens = cu, .ids = ids, .pos = pos, .image_embeds = feats,
                        .n_image_embeds = ntok};
    maye_llm_acts a;
    maye_llm_acts_init(&a, &m->cfg, T, T, 0);
    EXPECT_OK(maye_llm_forward(m, &b, &a));
    maye_next_token_targets(&b, tgt);
    float *lp = xmalloc(sizeof(float) * (size_t)T);
    EXPECT_OK(maye_llm_logprobs(m, &a, tgt, 1.0f, lp, NULL));
    memcpy(out, lp + n_prompt - 1, sizeof(float) * (size_t)(T - n_prompt));
    maye_llm_acts_free(&a);
    free(ids), free(pos), free(tgt), free(lp), free(feats);
    maye_query_pixels_free(&pix);
}

int main(void) {
    maye_tokenizer *tok;
    EXPECT_OK(maye_tokenizer_load(&tok, TOKENIZER));
    const char *tmp = test_tmpdir();
    char *model_dir = maye_path_join(tmp, "model");
    char *cfg_json = test_tiny_vlm_config(tok);
    maye_model policy, ref;
    EXPECT_OK(maye_model_init(&policy, cfg_json, "tiny", 3));
    EXPECT_OK(maye_model_save(&policy, model_dir, MAYE_F32));
    EXPECT_OK(maye_model_init(&ref, cfg_json, "tiny", 3));

    // two queries from the example dataset, two responses each
    maye_config cfg;
    char *ov[3];
    ov[0] = "traj.forward_batch_size=3";
    ov[1] = "run_dir=/nonexistent";
    ov[2] = NULL;
    EXPECT_OK(maye_config_load(&cfg, NULL, 2, ov));
    maye_image_processor_config img;
    EXPECT_OK(maye_run_image_config(&cfg, &img));
    maye_dataset ds;
    EXPECT_OK(maye_dataset_load(&ds, DATASET, 2));
    maye_query_builder qb;
    EXPECT_OK(maye_query_builder_init(&qb, tok, &img, NULL, "", false, 0));
    Maye__Query q[2];
    Maye__Position pos[2];
    Maye__Rollout r[2], *rp[2];
    Maye__Response resp[2][2], *rr[2][2];
    const char *texts[2][2];
    char good[128];
    for (int i = 0; i < 2; i++) {
        EXPECT_OK(maye_query_build(&qb, &ds, i, &q[i]));
        maye__position__init(&pos[i]);
        pos[i].sample_id = ds.samples[i].id;
        pos[i].step = 0, pos[i].step_offset = i, pos[i].step_records = 2, pos[i].split = "train";
        q[i].pos = &pos[i];
        maye__rollout__init(&r[i]);
        r[i].query = &q[i];
        r[i].temperature = 1.0f;
        rp[i] = &r[i];
    }
    snprintf(good, sizeof good, "Wait, let me verify. The answer is \\boxed{%s}.", ds.samples[0].answer);
    texts[0][0] = good;
    texts[0][1] = "I think it is \\boxed{12345}";
    texts[1][0] = "no box at all";
    texts[1][1] = "\\boxed{}";
    maye_token_ids enc[2][2];
    for (int i = 0; i < 2; i++) {
        r[i].n_responses = 2;
        r[i].responses = rr[i];
        for (int j = 0; j < 2; j++) {
            memset(&enc[i][j], 0, sizeof enc[i][j]);
            EXPECT_OK(maye_tokenizer_encode(tok, texts[i][j], strlen(texts[i][j]), &enc[i][j]));
            if (j == 0) maye_token_ids_push(&enc[i][j], maye_tokenizer_token_id(tok, "<|im_end|>"));
            maye__response__init(&resp[i][j]);
            resp[i][j].sample_index = j;
            resp[i][j].ids = enc[i][j].data, resp[i][j].n_ids = enc[i][j].len;
            resp[i][j].text = (char *)texts[i][j];
            resp[i][j].finish = j == 0 ? MAYE__FINISH_REASON__STOP : MAYE__FINISH_REASON__LENGTH;
            rr[i][j] = &resp[i][j];
        }
    }

    // library: log-probs equal a direct forward; rewards follow the text
    maye_traj_builder tb;
    EXPECT_OK(maye_traj_builder_init(&tb, &cfg, &policy, &ref));
    Maye__Trajectory **t;
    int nt;
    EXPECT_OK(maye_traj_build_step(&tb, rp, 2, &t, &nt));
    EXPECT(nt == 4, "4 trajectories, got %d", nt);
    for (int k = 0; k < nt; k++) {
        int i = k / 2, j = k % 2;
        int np = (int)q[i].n_prompt_ids, nr = (int)enc[i][j].len;
        int32_t *seq = xmalloc(sizeof(int32_t) * (size_t)(np + nr));
        memcpy(seq, q[i].prompt_ids, sizeof(int32_t) * (size_t)np);
        memcpy(seq + np, enc[i][j].data, sizeof(int32_t) * (size_t)nr);
        float *want = xmalloc(sizeof(float) * (size_t)nr);
        direct_logprobs(&policy, &q[i], &img, seq, np + nr, np, want);
        char what[64];
        snprintf(what, sizeof what, "trajectory %d policy_logprobs", k);
        test_close_f32(what, t[k]->policy_logprobs, want, nr, 1e-5, 0);
        snprintf(what, sizeof what, "trajectory %d ref_logprobs", k);
        test_close_f32(what, t[k]->ref_logprobs, want, nr, 1e-5, 0);
        EXPECT(t[k]->step_offset == k && t[k]->step_records == 4, "step position of trajectory %d", k);
        EXPECT(t[k]->n_response_mask == (size_t)nr && t[k]->response_mask[nr - 1] == 1.0f, "mask");
        free(seq), free(want);
    }
    EXPECT(t[0]->correct && t[0]->score == 1.0f, "correct boxed answer: correct %d score %g", t[0]->correct,
           t[0]->score);
    EXPECT(t[0]->reflection && t[0]->reflection_counts[13] == 1, "'wait' counted");
    EXPECT(!t[1]->correct && t[1]->score == (float)cfg.traj.reward_penalty, "no stop token: penalty, got %g",
           t[1]->score);
    EXPECT(!t[2]->correct && !strcmp(t[2]->extracted_answer, ""), "no box");
    int have_acc = 0;
    for (size_t e = 0; e < t[0]->n_rewards; e++)
        if (!strcmp(t[0]->rewards[e]->key, "accuracy")) have_acc = t[0]->rewards[e]->value == 1.0f;
    EXPECT(have_acc, "accuracy component of trajectory 0");
    float lp0 = t[0]->policy_logprobs[0];
    maye_traj_free(t, nt);

    // after the policy moves, policy log-probs change and the reference keeps version 0's
    size_t off, nllm = maye_model_group_range(&policy, MAYE_PARAM_LLM, &off);
    for (size_t i = 0; i < nllm; i++) policy.params[off + i] *= 1.05f;
    EXPECT_OK(maye_traj_build_step(&tb, rp, 2, &t, &nt));
    EXPECT(t[0]->policy_logprobs[0] != lp0, "policy log-probs did not move");
    EXPECT(t[0]->ref_logprobs[0] == lp0, "reference log-probs moved: %g vs %g", t[0]->ref_logprobs[0], lp0);
    maye_traj_free(t, nt);
    maye_traj_builder_free(&tb);

    // the stage: version 1 published to the run dir; the rollouts ask for it
    for (int i = 0; i < 2; i++) r[i].version = 1;
    EXPECT_OK(maye_weight_publish(&policy, tmp, 1, 0, 1u << MAYE_PARAM_LLM, NULL, 0, 0));
    char *rpath = maye_path_join(tmp, "rollouts.zst"), *tpath = maye_path_join(tmp, "traj.zst");
    Maye__StreamHeader h;
    maye_header_init(&h, MAYE__RECORD_KIND__ROLLOUT, "test", NULL);
    h.vocab_size = maye_tokenizer_vocab_size(tok);
    maye_writer *w;
    EXPECT_OK(maye_writer_open(&w, rpath, &h, NULL));
    for (int i = 0; i < 2; i++) EXPECT_OK(maye_writer_write(w, &r[i].base));
    EXPECT_OK(maye_writer_close(w));
    maye_buf cmd = {0};
    maye_buf_printf(&cmd, "'%s/maye-traj' model.path='%s' run_dir='%s' traj.forward_batch_size=3 -i '%s' -o '%s' 2>'%s/traj.err'",
                    getenv("MAYE_BIN") ? getenv("MAYE_BIN") : "build/bin", model_dir, tmp, rpath, tpath, tmp);
    EXPECT(system(cmd.data) == 0, "maye-traj failed: %s", cmd.data);
    maye_reader *rd;
    EXPECT_OK(maye_reader_open(&rd, tpath, MAYE__RECORD_KIND__TRAJECTORY));
    maye_step_reader sr;
    maye_step_reader_init(&sr, rd);
    ProtobufCMessage **msgs;
    int n;
    int64_t step;
    EXPECT(maye_step_reader_next(&sr, &msgs, &n, &step) == 1 && n == 4, "one step of 4 trajectories");
    EXPECT_OK(maye_traj_builder_init(&tb, &cfg, &policy, &ref));
    EXPECT_OK(maye_traj_build_step(&tb, rp, 2, &t, &nt));
    for (int k = 0; k < n && k < nt; k++) {
        Maye__Trajectory *x = (Maye__Trajectory *)msgs[k];
        EXPECT(x->version == 1, "version");
        test_close_f32("stage policy_logprobs", x->policy_logprobs, t[k]->policy_logprobs, (int64_t)x->n_policy_logprobs, 0, 0);
        test_close_f32("stage ref_logprobs", x->ref_logprobs, t[k]->ref_logprobs, (int64_t)x->n_ref_logprobs, 0, 0);
    }
    maye_traj_free(t, nt);
    maye_traj_builder_free(&tb);
    maye_step_records_free(msgs, n);
    maye_reader_close(rd);

    // a rollout stream for another vocabulary is refused before any record
    maye_header_init(&h, MAYE__RECORD_KIND__ROLLOUT, "test", NULL);
    h.vocab_size = 1000;
    EXPECT_OK(maye_writer_open(&w, rpath, &h, NULL));
    EXPECT_OK(maye_writer_write(w, &r[0].base));
    EXPECT_OK(maye_writer_close(w));
    remove(tpath);
    EXPECT(system(cmd.data) != 0, "maye-traj accepted a rollout stream of another vocabulary");
    EXPECT(!maye_file_exists(tpath), "no output on error");
    maye_buf err = {0};
    char *epath = maye_path_join(tmp, "traj.err");
    maye_read_file(epath, &err);
    EXPECT(strstr(err.data, "vocab"), "message names the vocabulary: %s", err.data);

    maye_buf_free(&err), maye_buf_free(&cmd);
    free(epath), free(rpath), free(tpath), free(model_dir), free(cfg_json);
    for (int i = 0; i < 2; i++) {
        q[i].pos = NULL;
        maye_query_clear(&q[i]);
        for (int j = 0; j < 2; j++) maye_token_ids_free(&enc[i][j]);
    }
    maye_dataset_free(&ds);
    maye_config_free(&cfg);
    maye_model_free(&policy), maye_model_free(&ref);
    maye_tokenizer_free(tok);
    return TEST_RESULT();
}
