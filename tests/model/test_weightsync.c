// Weight sync: publishing a version writes the trainable tensors; a source switches to it from the run
// directory or from a handle stream, honours max_staleness, waits for a version published later, refuses
// to go backwards, and reports a handle stream that ends early or names a missing file; CUDA_IPC handles
// (written by maye_weight_publish_ipc) are refused by a source without a device model, and malformed ones by
// any source.
#include "core/util.h"
#include "model/weightsync.h"
#include "test.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *CFG =
    "{\"architectures\": [\"Qwen2VLForConditionalGeneration\"], \"model_type\": \"qwen2_vl\",\n"
    " \"vocab_size\": 97, \"hidden_size\": 16, \"intermediate_size\": 20, \"num_hidden_layers\": 2,\n"
    " \"num_attention_heads\": 2, \"num_key_value_heads\": 1, \"rms_norm_eps\": 1e-6, \"rope_theta\": 10000.0,\n"
    " \"hidden_act\": \"silu\", \"tie_word_embeddings\": true, \"initializer_range\": 0.05,\n"
    " \"rope_scaling\": {\"type\": \"mrope\", \"mrope_section\": [1, 2, 1]},\n"
    " \"image_token_id\": 90, \"video_token_id\": 91, \"vision_start_token_id\": 88, \"vision_end_token_id\": 89,\n"
    " \"vision_config\": {\"depth\": 1, \"embed_dim\": 8, \"mlp_ratio\": 2, \"num_heads\": 1, \"in_chans\": 3,\n"
    "   \"hidden_size\": 16, \"patch_size\": 2, \"spatial_merge_size\": 2, \"temporal_patch_size\": 1,\n"
    "   \"hidden_act\": \"quick_gelu\"}}";

static const unsigned LLM = 1u << MAYE_PARAM_LLM;

// Adds `delta` to every language-model weight (a fake update).
static void bump(maye_model *m, float delta) {
    size_t off, n = maye_model_group_range(m, MAYE_PARAM_LLM, &off);
    for (size_t i = 0; i < n; i++) m->params[off + i] += delta;
}

static int same_llm(const maye_model *a, const maye_model *b) {
    size_t off, n = maye_model_group_range(a, MAYE_PARAM_LLM, &off);
    return a->n_params == b->n_params && !memcmp(a->params + off, b->params + off, n * sizeof(float));
}

int main(void) {
    const char *run = test_tmpdir();
    maye_model trainer, reader, v1;
    EXPECT_OK(maye_model_init(&trainer, CFG, "test", 1));
    EXPECT_OK(maye_model_init(&reader, CFG, "test", 1));

    // version 1 and 2 published to the directory; a staleness-0 reader asking for 1 gets exactly 1
    bump(&trainer, 0.5f);
    EXPECT_OK(maye_weight_publish(&trainer, run, 1, 0, LLM, NULL, 0, 0));
    EXPECT_OK(maye_model_init(&v1, CFG, "test", 1));
    bump(&v1, 0.5f);
    bump(&trainer, 0.25f);
    EXPECT_OK(maye_weight_publish(&trainer, run, 2, 1, LLM, NULL, 0, 0));
    maye_weight_source ws;
    EXPECT_OK(maye_weight_source_open(&ws, run, NULL, 0));
    EXPECT_OK(maye_weight_source_sync(&ws, &reader, 1, 0));
    EXPECT(ws.version == 1 && same_llm(&reader, &v1), "dir mode: version %lld", (long long)ws.version);
    EXPECT_OK(maye_weight_source_sync(&ws, &reader, 2, 0));
    EXPECT(ws.version == 2 && same_llm(&reader, &trainer), "dir mode: version 2");
    EXPECT_FAIL(maye_weight_source_sync(&ws, &reader, 1, 0), "already loaded");
    maye_weight_source_close(&ws);

    // staleness 1: asking for 3 while only 2 exists does not wait
    maye_model_free(&reader);
    EXPECT_OK(maye_model_init(&reader, CFG, "test", 1));
    EXPECT_OK(maye_weight_source_open(&ws, run, NULL, 0));
    EXPECT_OK(maye_weight_source_sync(&ws, &reader, 3, 1));
    EXPECT(ws.version == 2, "staleness 1 took version %lld", (long long)ws.version);
    // a version published later by another process is waited for
    pid_t pid = fork();
    if (pid == 0) {
        usleep(300 * 1000);
        bump(&trainer, 0.125f);
        _exit(maye_weight_publish(&trainer, run, 3, 2, LLM, NULL, 0, 0) < 0);
    }
    EXPECT_OK(maye_weight_source_sync(&ws, &reader, 3, 0));
    int status;
    waitpid(pid, &status, 0);
    EXPECT(ws.version == 3, "waited for version 3");
    maye_weight_source_close(&ws);

    // handle stream: versions 1..3 announced; the reader keeps the newest <= want
    char *hpath = maye_path_join(run, "handles.zst");
    Maye__StreamHeader h;
    maye_header_init(&h, MAYE__RECORD_KIND__WEIGHT_SYNC, "test", NULL);
    maye_writer *w;
    EXPECT_OK(maye_writer_open(&w, hpath, &h, NULL));
    maye_header_free(&h);
    maye_model pub;
    EXPECT_OK(maye_model_init(&pub, CFG, "test", 7));
    for (int v = 4; v <= 6; v++) {
        bump(&pub, 0.1f);
        EXPECT_OK(maye_weight_publish(&pub, run, v, v, LLM, w, 2, 0));
    }
    EXPECT_OK(maye_writer_close(w));
    char *gone = maye_weight_file(run, 3), *kept = maye_weight_file(run, 4);
    EXPECT(!maye_file_exists(gone) && maye_file_exists(kept), "publishing version 6 with keep 2 keeps 4 and 5, deletes 3");
    maye_model_free(&reader);
    EXPECT_OK(maye_model_init(&reader, CFG, "test", 1));
    EXPECT_OK(maye_weight_source_open(&ws, run, hpath, 3));
    EXPECT_OK(maye_weight_source_sync(&ws, &reader, 6, 0));
    EXPECT(ws.version == 6 && same_llm(&reader, &pub), "stream mode reaches version 6");
    EXPECT_FAIL(maye_weight_source_sync(&ws, &reader, 7, 0), "ended before policy version 7");
    maye_weight_source_close(&ws);

    // evaluation points survive the retention: with keep 1 and keep_every 4, version 8 stays
    for (int v = 7; v <= 11; v++) EXPECT_OK(maye_weight_publish(&pub, run, v, v, LLM, NULL, 1, 4));
    char *v8 = maye_weight_file(run, 8), *v9 = maye_weight_file(run, 9), *v10 = maye_weight_file(run, 10);
    EXPECT(maye_file_exists(v8) && !maye_file_exists(v9) && maye_file_exists(v10), "keep_every 4 keeps version 8");
    free(v8), free(v9), free(v10);

    // a handle naming a missing file
    char *h2 = maye_path_join(run, "bad.zst");
    maye_header_init(&h, MAYE__RECORD_KIND__WEIGHT_SYNC, "test", NULL);
    EXPECT_OK(maye_writer_open(&w, h2, &h, NULL));
    maye_header_free(&h);
    Maye__WeightSync bad = MAYE__WEIGHT_SYNC__INIT;
    bad.version = 1;
    bad.kind = MAYE__SYNC_KIND__FILE;
    bad.path = "/nonexistent/policy.safetensors";
    EXPECT_OK(maye_writer_write(w, &bad.base));
    EXPECT_OK(maye_writer_close(w));
    EXPECT_OK(maye_weight_source_open(&ws, run, h2, 0));
    EXPECT_FAIL(maye_weight_source_sync(&ws, &reader, 1, 0), "loading policy version 1");
    maye_weight_source_close(&ws);

    // CUDA_IPC handles: a CPU source names the setting; a handle of the wrong size is refused as malformed
    char *h3 = maye_path_join(run, "ipc.zst");
    maye_header_init(&h, MAYE__RECORD_KIND__WEIGHT_SYNC, "test", NULL);
    EXPECT_OK(maye_writer_open(&w, h3, &h, NULL));
    maye_header_free(&h);
    maye_ipc_weights iw;
    memset(&iw, 0xab, sizeof iw);
    EXPECT_OK(maye_weight_publish_ipc(w, 1, 0, &iw));
    Maye__WeightSync short_ipc = MAYE__WEIGHT_SYNC__INIT;
    short_ipc.version = 2;
    short_ipc.kind = MAYE__SYNC_KIND__CUDA_IPC;
    short_ipc.ipc_handle.data = (uint8_t *)"abc", short_ipc.ipc_handle.len = 3;
    EXPECT_OK(maye_writer_write(w, &short_ipc.base));
    EXPECT_OK(maye_writer_close(w));
    EXPECT_OK(maye_weight_source_open(&ws, run, h3, 0));
    EXPECT_FAIL(maye_weight_source_sync(&ws, &reader, 1, 0), "came as a CUDA_IPC handle (update.weight_sync=cuda_ipc) "
                "but this stage runs on the CPU");
    EXPECT(ws.version == 0, "a refused handle changed the version to %lld", (long long)ws.version);
    maye_weight_source_close(&ws);
    EXPECT_OK(maye_weight_source_open(&ws, run, h3, 1));
    EXPECT_FAIL(maye_weight_source_sync(&ws, &reader, 2, 0),
                "a CUDA_IPC handle whose ipc_handle is not a cudaIpcMemHandle_t");
    maye_weight_source_close(&ws);
    free(h3);

    // a weight file from another model is refused by name
    maye_model other;
    char *ocfg = xstrdup(CFG);
    char *p = strstr(ocfg, "\"intermediate_size\": 20");
    memcpy(p, "\"intermediate_size\": 24", 23);
    EXPECT_OK(maye_model_init(&other, ocfg, "test", 1));
    char *opath = maye_path_join(run, "other.safetensors");
    EXPECT_OK(maye_model_save_groups(&other, opath, LLM, MAYE_F32, NULL, 0));
    EXPECT_FAIL(maye_model_load_overlay(&reader, opath), "has shape");
    free(ocfg), free(opath), free(h2), free(hpath), free(gone), free(kept);
    maye_model_free(&other), maye_model_free(&pub), maye_model_free(&reader), maye_model_free(&v1);
    maye_model_free(&trainer);
    return TEST_RESULT();
}
