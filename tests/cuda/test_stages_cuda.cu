// The stages on the GPU (model.device=cuda) against the CPU backend, end to end through the stage binaries of
// this build: a random Qwen2-VL made from configs/demo/model.json (the demo tokenizer's ids; head dims 32)
// and the bundled example data (configs/example) -> maye-batch (2 steps) -> maye-rollout -> maye-traj ->
// maye-update, each run once with model.device=cpu and once with cuda, and compared:
//   rollout   greedy, fp32: the same ids, texts and finish reasons, sampling log-probs within 1e-3; again with
//             a stop string and min_tokens (the GPU's responses cut on the host where the CPU engine stops);
//             with model.profile=true the same rollouts and a region table on stderr; bf16: runs and gives
//             every response
//   traj      on the CPU's rollouts (reference model = another random model, so the KL terms are not zero):
//             fp32 policy and reference log-probs within 1e-3; bf16 within 5e-2 on average (the GPU model's
//             own bf16 forward test measured 0.020 on the tiny fixture; a wrong input gives O(1) here)
//   update    2 RL steps with AdamW made nearly linear (eps 1: the step is about lr x the clipped gradient):
//             fp32 loss and gradient norm per step within 1e-3 relative, the weights of versions 1 and 2 within
//             1e-3 of each tensor's largest value and the step itself within 1e-2 (relative L2); a GPU run
//             resumed from the GPU's step-1 checkpoint (weights + AdamW moments) ends where the straight GPU run
//             does; bf16: the gradient norm within 10 % and the step pointing the CPU's way (cosine > 0.9)
//   sync      rollout and traj again with the CPU's version 1 in the run directory: step 1 switches to it (the
//             device models reload the weights) and the GPU still matches the CPU
//   cuda_ipc  `maye train` (2 steps, fp32, max_staleness 0) with update.weight_sync=file and again with cuda_ipc
//             (the stages copy maye-update's exported device weights): every metric but the timings and the
//             final weights are the same (fp32 weights travel bit for bit either way), and maye-update's log
//             shows the exported ring; the same in bf16, where the exported buffer also carries the fp32 norm
//             weights and biases (a file gives the stages the fp32 masters, which they round the same way)
// The stage binaries come from $MAYE_BIN, else ../../bin beside this test (the build tree), else this test's
// own directory (a gpu-bundle); configs/demo and configs/example from the working directory, else beside
// bin/ (a gpu-bundle). Exits 77 without a GPU.
#include "cuda_test.h"

extern "C" {
#include "io/records.h"
#include "io/safetensors.h"
#include "model/model.h"
}

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

static std::string BIN, CONFIGS, TMP;

// ----------------------------------------------------------------------------
// setup

static std::string dir_of(const std::string &path) {
    size_t k = path.rfind('/');
    return k == std::string::npos ? "." : path.substr(0, k);
}

static bool has_stages(const std::string &dir) { return maye_file_exists((dir + "/maye-rollout").c_str()) != 0; }

// The bin directory and the configs directory (see the header).
static void find_paths(void) {
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    std::string here = n > 0 ? dir_of(std::string(exe, (size_t)n)) : ".";
    const char *env = getenv("MAYE_BIN");
    if (env && env[0]) BIN = env;
    else if (has_stages(here + "/../../bin")) BIN = here + "/../../bin";
    else BIN = here;
    if (!has_stages(BIN)) maye_die("no stage binaries (maye-rollout) in %s: set MAYE_BIN", BIN.c_str());
    CONFIGS = maye_is_dir("configs/demo") ? "configs" : BIN + "/../configs";
    if (!maye_file_exists((CONFIGS + "/demo/model.json").c_str()) ||
        !maye_file_exists((CONFIGS + "/example/train.jsonl").c_str()))
        maye_die("configs/demo/model.json or configs/example/train.jsonl not found (run from the repository root)");
    char *abs = realpath(CONFIGS.c_str(), NULL);
    if (abs) CONFIGS = abs;
    free(abs);
}

// Runs a shell command with its stderr in TMP/<name, spaces as dashes>.log; dies with the log's tail when it fails.
static void run(const std::string &name, const std::string &cmd) {
    std::string file = name;
    for (char &ch : file) ch = ch == ' ' ? '-' : ch;
    std::string log = TMP + "/" + file + ".log";
    double t0 = maye_now();
    int st = system((cmd + " 2>'" + log + "'").c_str());
    int rc = st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    printf("%-24s exit %d (%.1f s)\n", name.c_str(), rc, maye_now() - t0);
    if (rc == 0) return;
    maye_buf b = {};
    if (maye_read_file(log.c_str(), &b) == 0 && b.len) {
        size_t from = b.len > 4000 ? b.len - 4000 : 0;
        fprintf(stderr, "---- %s\n%.*s\n----\n", log.c_str(), (int)(b.len - from), b.data + from);
    }
    maye_buf_free(&b);
    maye_die("%s failed (exit %d): %s", name.c_str(), rc, cmd.c_str());
}

static void copy_file(const std::string &from, const std::string &to) {
    maye_buf b = {};
    if (maye_read_file(from.c_str(), &b) < 0 || maye_write_file_atomic(to.c_str(), b.data, b.len) < 0)
        maye_die("%s", maye_errmsg());
    maye_buf_free(&b);
}

// A random model from configs/demo/model.json with the demo tokenizer beside it, its weights drawn with
// initializer_range 0.1 (the demo's 0.02 gives nearly uniform logits: greedy decoding repeats one token).
static void make_model(const std::string &dir, uint64_t seed) {
    maye_buf json = {};
    std::string cfg = CONFIGS + "/demo/model.json";
    if (maye_read_file(cfg.c_str(), &json) < 0) maye_die("%s", maye_errmsg());
    maye_buf_putc(&json, 0);
    cJSON *root = cJSON_Parse(json.data);
    if (!root || !cJSON_GetObjectItem(root, "initializer_range")) maye_die("%s: not a model config", cfg.c_str());
    cJSON_ReplaceItemInObject(root, "initializer_range", cJSON_CreateNumber(0.1));
    char *text = cJSON_Print(root);
    maye_model m;
    if (maye_model_init(&m, text, cfg.c_str(), seed) < 0 || maye_model_save(&m, dir.c_str(), MAYE_F32) < 0)
        maye_die("%s", maye_errmsg());
    maye_model_free(&m);
    free(text);
    cJSON_Delete(root);
    maye_buf_free(&json);
    copy_file(CONFIGS + "/demo/tokenizer.json", dir + "/tokenizer.json");
}

static void write_text(const std::string &path, const std::string &text) {
    if (maye_write_file_atomic(path.c_str(), text.data(), text.size()) < 0) maye_die("%s", maye_errmsg());
}

// ----------------------------------------------------------------------------
// records

struct Records {
    std::vector<ProtobufCMessage *> r;
    ~Records() {
        for (ProtobufCMessage *m : r) maye_record_free(m);
    }
    size_t size() const { return r.size(); }
};

static void read_records(const std::string &path, Maye__RecordKind kind, Records &out) {
    maye_reader *rd;
    if (maye_reader_open(&rd, path.c_str(), kind) < 0) maye_die("%s", maye_errmsg());
    for (;;) {
        ProtobufCMessage *m;
        int64_t idx;
        int rc = maye_reader_next(rd, &m, &idx);
        if (rc < 0) maye_die("%s", maye_errmsg());
        if (rc == 0) break;
        out.r.push_back(m);
    }
    maye_reader_close(rd);
}

static std::vector<int64_t> ids64(const int32_t *ids, size_t n) { return std::vector<int64_t>(ids, ids + n); }

// GPU rollouts against the CPU's: ids, text, finish and (with lp_tol > 0) the sampling log-probs.
static void compare_rollouts(const char *what, const std::string &gpu_path, const std::string &cpu_path,
                             double lp_tol) {
    Records g, c;
    read_records(gpu_path, MAYE__RECORD_KIND__ROLLOUT, g);
    read_records(cpu_path, MAYE__RECORD_KIND__ROLLOUT, c);
    EXPECT(g.size() == c.size() && c.size() > 0, "%s: %zu rollout records on the GPU, %zu on the CPU", what, g.size(),
           c.size());
    int64_t tokens = 0, stopped = 0;
    for (size_t i = 0; i < g.size() && i < c.size(); i++) {
        const Maye__Rollout *a = (const Maye__Rollout *)g.r[i], *b = (const Maye__Rollout *)c.r[i];
        EXPECT(!strcmp(a->query->pos->sample_id, b->query->pos->sample_id), "%s: record %zu: sample %s vs %s", what,
               i, a->query->pos->sample_id, b->query->pos->sample_id);
        EXPECT(a->n_responses == b->n_responses, "%s: record %zu: %zu vs %zu responses", what, i, a->n_responses,
               b->n_responses);
        for (size_t s = 0; s < a->n_responses && s < b->n_responses; s++) {
            const Maye__Response *x = a->responses[s], *y = b->responses[s];
            char name[160];
            snprintf(name, sizeof name, "%s: sample '%s' response %zu ids", what, b->query->pos->sample_id, s);
            EXPECT(x->n_ids == y->n_ids, "%s: %zu ids on the GPU, %zu on the CPU", name, x->n_ids, y->n_ids);
            size_t n = x->n_ids < y->n_ids ? x->n_ids : y->n_ids;
            std::vector<int64_t> xi = ids64(x->ids, n), yi = ids64(y->ids, n);
            test_equal_i64(name, xi.data(), yi.data(), (int64_t)n);
            EXPECT(!strcmp(x->text, y->text), "%s: text '%s' on the GPU, '%s' on the CPU", name, x->text, y->text);
            EXPECT(x->finish == y->finish, "%s: finish %d on the GPU, %d on the CPU", name, x->finish, y->finish);
            if (lp_tol > 0 && x->n_logprobs == y->n_logprobs) {
                snprintf(name, sizeof name, "%s: sample '%s' response %zu logprobs", what, b->query->pos->sample_id, s);
                test_close_f32(name, x->logprobs, y->logprobs, (int64_t)x->n_logprobs, lp_tol, 0);
            }
            tokens += (int64_t)y->n_ids;
            stopped += y->finish == MAYE__FINISH_REASON__STOP;
        }
    }
    printf("%s: %zu records, %lld tokens, %lld responses stopped\n", what, c.size(), (long long)tokens,
           (long long)stopped);
}

// Rollouts that need not match the CPU's (bf16): as many records, n responses each, 1..max_tokens ids each.
static void check_rollouts(const char *what, const std::string &path, const std::string &cpu_path, size_t n,
                           size_t max_tokens) {
    Records a, b;
    read_records(path, MAYE__RECORD_KIND__ROLLOUT, a);
    read_records(cpu_path, MAYE__RECORD_KIND__ROLLOUT, b);
    EXPECT(a.size() == b.size(), "%s: %zu records, the CPU %zu", what, a.size(), b.size());
    for (size_t i = 0; i < a.size(); i++) {
        const Maye__Rollout *x = (const Maye__Rollout *)a.r[i];
        EXPECT(x->n_responses == n, "%s: record %zu has %zu responses", what, i, x->n_responses);
        for (size_t s = 0; s < x->n_responses; s++)
            EXPECT(x->responses[s]->n_ids >= 1 && x->responses[s]->n_ids <= max_tokens,
                   "%s: record %zu response %zu has %zu ids", what, i, s, x->responses[s]->n_ids);
    }
}

// GPU trajectories against the CPU's: every log-prob within max_tol (fp32), or the mean difference within mean_tol.
static void compare_trajectories(const char *what, const std::string &gpu_path, const std::string &cpu_path,
                                 double max_tol, double mean_tol) {
    Records g, c;
    read_records(gpu_path, MAYE__RECORD_KIND__TRAJECTORY, g);
    read_records(cpu_path, MAYE__RECORD_KIND__TRAJECTORY, c);
    EXPECT(g.size() == c.size() && c.size() > 0, "%s: %zu trajectories on the GPU, %zu on the CPU", what, g.size(),
           c.size());
    double sum[2] = {0, 0}, worst[2] = {0, 0};
    int64_t n_all = 0;
    for (size_t i = 0; i < g.size() && i < c.size(); i++) {
        const Maye__Trajectory *a = (const Maye__Trajectory *)g.r[i], *b = (const Maye__Trajectory *)c.r[i];
        size_t n = b->n_response_ids;
        EXPECT(a->n_policy_logprobs == n && a->n_ref_logprobs == n && b->n_policy_logprobs == n,
               "%s: trajectory %zu: log-prob counts differ", what, i);
        if (a->n_policy_logprobs != n || a->n_ref_logprobs != n || b->n_policy_logprobs != n) continue;
        const float *got[2] = {a->policy_logprobs, a->ref_logprobs}, *want[2] = {b->policy_logprobs, b->ref_logprobs};
        for (int k = 0; k < 2; k++) {
            char name[160];
            snprintf(name, sizeof name, "%s: sample '%s' response %d %s", what, b->query->pos->sample_id,
                     b->sample_index, k ? "ref_logprobs" : "policy_logprobs");
            if (max_tol > 0) test_close_f32(name, got[k], want[k], (int64_t)n, max_tol, 0);
            for (size_t t = 0; t < n; t++) {
                double d = fabs((double)got[k][t] - want[k][t]);
                sum[k] += d, worst[k] = d > worst[k] ? d : worst[k];
            }
        }
        n_all += (int64_t)n;
        EXPECT(a->score == b->score, "%s: trajectory %zu: score %g vs %g", what, i, a->score, b->score);
    }
    for (int k = 0; k < 2; k++) {
        double mean = n_all ? sum[k] / n_all : 0;
        printf("%s: %s log-probs of %lld tokens: mean |GPU - CPU| %.3g, max %.3g\n", what, k ? "reference" : "policy",
               (long long)n_all, mean, worst[k]);
        if (mean_tol > 0)
            EXPECT(mean <= mean_tol, "%s: mean |GPU - CPU| of the %s log-probs is %g > %g", what,
                   k ? "reference" : "policy", mean, mean_tol);
    }
}

// The values `key` of the Metrics records of a stream, by step.
static std::vector<double> metric(const std::string &path, const char *key) {
    Records r;
    read_records(path, MAYE__RECORD_KIND__METRICS, r);
    std::vector<double> out;
    for (ProtobufCMessage *m : r.r) {
        const Maye__Metrics *x = (const Maye__Metrics *)m;
        double v = NAN;
        for (size_t i = 0; i < x->n_values; i++)
            if (!strcmp(x->values[i]->key, key)) v = x->values[i]->value;
        out.push_back(v);
    }
    return out;
}

// Every value of every Metrics record of two streams, except the timings (seconds/...), within rel.
static void compare_all_metrics(const char *what, const std::string &a_path, const std::string &b_path, double rel) {
    Records a, b;
    read_records(a_path, MAYE__RECORD_KIND__METRICS, a);
    read_records(b_path, MAYE__RECORD_KIND__METRICS, b);
    EXPECT(a.size() == b.size() && !b.r.empty(), "%s: %zu vs %zu metrics records", what, a.size(), b.size());
    int compared = 0;
    for (size_t i = 0; i < a.size() && i < b.size(); i++) {
        const Maye__Metrics *x = (const Maye__Metrics *)a.r[i], *y = (const Maye__Metrics *)b.r[i];
        EXPECT(x->n_values == y->n_values, "%s: record %zu: %zu vs %zu values", what, i, x->n_values, y->n_values);
        for (size_t k = 0; k < x->n_values && k < y->n_values; k++) {
            const char *key = y->values[k]->key;
            EXPECT(!strcmp(x->values[k]->key, key), "%s: record %zu value %zu: %s vs %s", what, i, k,
                   x->values[k]->key, key);
            if (!strncmp(key, "seconds/", 8)) continue;
            double u = x->values[k]->value, v = y->values[k]->value;
            bool same = (isnan(u) && isnan(v)) || fabs(u - v) <= rel * fabs(v) + 1e-12;
            EXPECT(same, "%s: step %lld %s: %.9g vs %.9g", what, (long long)y->step, key, u, v);
            compared++;
        }
    }
    printf("%s: %d metric values compared\n", what, compared);
}

static void compare_metric(const char *what, const std::string &gpu, const std::string &cpu, const char *key,
                           double rel) {
    std::vector<double> a = metric(gpu, key), b = metric(cpu, key);
    EXPECT(a.size() == b.size() && !b.empty(), "%s: %zu vs %zu metrics records", what, a.size(), b.size());
    for (size_t i = 0; i < a.size() && i < b.size(); i++) {
        printf("%s: step %zu %s: GPU %.7g, CPU %.7g\n", what, i, key, a[i], b[i]);
        EXPECT(isfinite(a[i]) && fabs(a[i] - b[i]) <= rel * fabs(b[i]) + 1e-7, "%s: step %zu: %s is %.7g on the GPU, "
               "%.7g on the CPU (relative tolerance %g)", what, i, key, a[i], b[i], rel);
    }
}

// ----------------------------------------------------------------------------
// weights

struct Weights {
    maye_safetensors st;
    explicit Weights(const std::string &path) {
        if (maye_st_open(&st, path.c_str()) < 0) maye_die("%s", maye_errmsg());
    }
    ~Weights() { maye_st_close(&st); }
    std::vector<float> get(const char *name) const {
        std::vector<float> out;
        const maye_st_tensor *t = maye_st_find(&st, name);
        if (!t) return out;
        out.resize((size_t)t->numel);
        maye_st_to_f32(t, out.data());
        return out;
    }
};

// Every tensor of the GPU's weight-sync file against the CPU's: with tol > 0 each within tol of the tensor's
// largest value; the step taken (the difference from `init`) within step_tol relative L2, or (cosine > 0)
// pointing the same way as the CPU's by at least that cosine.
static void compare_weights(const char *what, const std::string &gpu, const std::string &cpu, const std::string &init,
                            double tol, double step_tol, double cosine) {
    Weights g(gpu), c(cpu), w0(init);
    double dd = 0, dc = 0, dg = 0, dot = 0;
    EXPECT(c.st.ntensors > 0 && g.st.ntensors == c.st.ntensors, "%s: %d tensors on the GPU, %d on the CPU", what,
           g.st.ntensors, c.st.ntensors);
    for (int i = 0; i < c.st.ntensors; i++) {
        const char *name = c.st.tensors[i].name;
        std::vector<float> a = g.get(name), b = c.get(name), z = w0.get(name);
        EXPECT(a.size() == b.size() && z.size() == b.size(), "%s: tensor %s missing or of another size", what, name);
        if (a.size() != b.size() || z.size() != b.size()) continue;
        std::string label = std::string(what) + ": " + name;
        if (tol > 0) test_close_rel_max(label.c_str(), a.data(), b.data(), (int64_t)b.size(), tol);
        for (size_t k = 0; k < b.size(); k++) {
            double sa = (double)a[k] - z[k], sb = (double)b[k] - z[k];
            dd += (sa - sb) * (sa - sb), dc += sb * sb, dg += sa * sa, dot += sa * sb;
        }
    }
    double rel = dc > 0 ? sqrt(dd / dc) : INFINITY, cos_ab = dc > 0 && dg > 0 ? dot / sqrt(dc * dg) : 0;
    printf("%s: |step| GPU %.4g, CPU %.4g; |GPU - CPU| / |CPU| %.3g, cosine %.6f\n", what, sqrt(dg), sqrt(dc), rel,
           cos_ab);
    EXPECT(dc > 0, "%s: the CPU's step changed no weight (the test cannot tell anything)", what);
    if (step_tol > 0)
        EXPECT(rel <= step_tol, "%s: the GPU's step differs from the CPU's by %g (relative L2) > %g", what, rel,
               step_tol);
    if (cosine > 0)
        EXPECT(cos_ab >= cosine, "%s: cosine of the GPU's and the CPU's steps is %g < %g", what, cos_ab, cosine);
}

// ----------------------------------------------------------------------------
// main

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (cuda_device_count() == 0) {
        printf("test_stages_cuda: no CUDA device (cudaGetDeviceCount failed or found none): skipped\n");
        return TEST_SKIP;
    }
    find_paths();
    TMP = test_tmpdir();
    printf("test_stages_cuda: stages from %s, configs from %s, scratch %s\n", BIN.c_str(), CONFIGS.c_str(),
           TMP.c_str());
    run("maye version", "'" + BIN + "/maye' version > '" + TMP + "/version.txt'");
    maye_buf ver = {};
    if (maye_read_file((TMP + "/version.txt").c_str(), &ver) < 0) maye_die("%s", maye_errmsg());
    maye_buf_putc(&ver, 0);
    printf("%s", ver.data);
    if (!strstr(ver.data, "device(s) visible")) maye_die("the stage binaries in %s have no CUDA backend (build them "
                                                         "with make CUDA=1)", BIN.c_str());
    maye_buf_free(&ver);

    std::string policy = TMP + "/policy", ref = TMP + "/ref";
    make_model(policy, 1);
    make_model(ref, 2);
    write_text(TMP + "/c.yaml",
               "seed: 3\n"
               "model:\n  path: " + policy + "\n  ref_path: " + ref + "\n  threads: 2\n"
               "data:\n  train: " + CONFIGS + "/example/train.jsonl\n  batch_size: 4\n"
               "train:\n  epochs: 1\n"
               "rollout:\n  n: 2\n  max_tokens: 16\n  temperature: 0\n  max_batch_seqs: 8\n"
               "  max_batch_tokens: 8192\n  timing: false\n"
               "traj:\n  forward_batch_size: 3\n"
               "update:\n  ppo_batch_size: 4\n  ppo_backward_batch_size: 2\n  lr: 0.1\n  eps: 1.0\n"
               "  weight_decay: 0\n  lr_schedule: constant\n  kl_loss_coeff: 0.1\n  kl_reward_coeff: 0.1\n"
               "  save_every: 1\n  save_dtype: fp32\n  max_staleness: 1\n");
    // maye-<name> --config c.yaml run_dir=TMP/<run_dir> -i TMP/<in> -o TMP/<out> <extra>
    auto path = [&](const char *f) { return TMP + "/" + f; };
    auto stage = [&](const char *label, const char *name, const char *run_dir, const char *in, const char *out,
                     const std::string &extra) {
        run(label, "'" + BIN + "/maye-" + name + "' --config '" + path("c.yaml") + "' run_dir='" + path(run_dir) +
                       "' -i '" + path(in) + "' -o '" + path(out) + "' " + extra);
    };
    const std::string cuda32 = "model.device=cuda model.dtype=fp32", cuda16 = "model.device=cuda model.dtype=bf16";
    const std::string stops = "rollout.stop_strings=e rollout.min_tokens=3 ";

    run("batch", "'" + BIN + "/maye-batch' --config '" + path("c.yaml") + "' --steps 2 -o '" + path("q.zst") + "'");

    // rollout
    stage("rollout cpu", "rollout", "r-cpu", "q.zst", "r-cpu.zst", "");
    stage("rollout cuda fp32", "rollout", "r-gpu", "q.zst", "r-gpu.zst", cuda32);
    compare_rollouts("rollout fp32", path("r-gpu.zst"), path("r-cpu.zst"), 1e-3);
    stage("rollout cpu stop", "rollout", "r-cpu", "q.zst", "rs-cpu.zst", stops);
    stage("rollout cuda stop", "rollout", "r-gpu", "q.zst", "rs-gpu.zst", stops + cuda32);
    compare_rollouts("rollout fp32 + stop string", path("rs-gpu.zst"), path("rs-cpu.zst"), 1e-3);
    // model.profile: the same rollouts (every step launched eagerly: graph and eager steps agree bit for bit) and
    // a table on stderr with the decode step's regions
    stage("rollout cuda profiled", "rollout", "r-prof", "q.zst", "rp-gpu.zst", cuda32 + " model.profile=true");
    compare_rollouts("rollout fp32 profiled", path("rp-gpu.zst"), path("r-gpu.zst"), 1e-9);
    {
        maye_buf log = {};
        bool read = maye_read_file(path("rollout-cuda-profiled.log").c_str(), &log) == 0;
        std::string text = read ? std::string(log.data, log.len) : std::string();
        maye_buf_free(&log);
        for (const char *want : {"GPU profile of device model 1 (inference)", "phase decode", "decode.attention",
                                 "prefill.qkv_proj", "vision.attention"})
            EXPECT(text.find(want) != std::string::npos, "rollout with model.profile=true: no '%s' on stderr", want);
    }
    stage("rollout cuda bf16", "rollout", "r-b16", "q.zst", "r-b16.zst", cuda16);
    check_rollouts("rollout bf16", path("r-b16.zst"), path("r-cpu.zst"), 2, 16);

    // traj, all on the CPU's rollouts
    stage("traj cpu", "traj", "r-cpu", "r-cpu.zst", "t-cpu.zst", "");
    stage("traj cuda fp32", "traj", "r-cpu", "r-cpu.zst", "t-gpu.zst", cuda32);
    compare_trajectories("traj fp32", path("t-gpu.zst"), path("t-cpu.zst"), 1e-3, 0);
    stage("traj cuda bf16", "traj", "r-cpu", "r-cpu.zst", "t-b16.zst", cuda16);
    compare_trajectories("traj bf16", path("t-b16.zst"), path("t-cpu.zst"), 0, 5e-2);

    // update, all on the CPU's trajectories
    stage("update cpu", "update", "u-cpu", "t-cpu.zst", "m-cpu.zst", "");
    stage("update cuda fp32", "update", "u-gpu", "t-cpu.zst", "m-gpu.zst", cuda32);
    compare_metric("update fp32", path("m-gpu.zst"), path("m-cpu.zst"), "loss", 1e-3);
    compare_metric("update fp32", path("m-gpu.zst"), path("m-cpu.zst"), "grad_norm", 1e-3);
    std::string init = policy + "/model.safetensors";
    for (int v = 1; v <= 2; v++) {
        char file[64], what[64];
        snprintf(file, sizeof file, "/weights/policy-v%06d.safetensors", v);
        snprintf(what, sizeof what, "update fp32 version %d", v);
        compare_weights(what, path("u-gpu") + file, path("u-cpu") + file, init, 1e-3, 1e-2, 0);
    }
    stage("update cuda resume", "update", "u-res", "t-cpu.zst", "m-res.zst",
          "--resume '" + path("u-gpu/checkpoints/step-000001") + "' " + cuda32);
    compare_weights("update fp32 resumed at step 1, version 2", path("u-res/weights/policy-v000002.safetensors"),
                    path("u-gpu/weights/policy-v000002.safetensors"), init, 1e-5, 1e-4, 0);

    // weight sync: with the CPU's versions in the run directory, step 1 switches to version 1 (the device reloads)
    stage("rollout cpu v1", "rollout", "u-cpu", "q.zst", "r1-cpu.zst", "");
    stage("rollout cuda v1", "rollout", "u-cpu", "q.zst", "r1-gpu.zst", cuda32);
    compare_rollouts("rollout fp32, version 1 at step 1", path("r1-gpu.zst"), path("r1-cpu.zst"), 1e-3);
    stage("traj cpu v1", "traj", "u-cpu", "r1-cpu.zst", "t1-cpu.zst", "");
    stage("traj cuda v1", "traj", "u-cpu", "r1-cpu.zst", "t1-gpu.zst", cuda32);
    compare_trajectories("traj fp32, version 1 at step 1", path("t1-gpu.zst"), path("t1-cpu.zst"), 1e-3, 0);

    // weight sync over CUDA IPC against files, through the orchestrator
    const std::string train_ov = " --no-eval data.limit=8 update.max_staleness=0 train.save_streams=true " + cuda32;
    run("train cuda file", "'" + BIN + "/maye' train '" + path("c.yaml") + "' run_dir='" + path("tf") + "'" + train_ov +
                               " update.weight_sync=file");
    run("train cuda ipc", "'" + BIN + "/maye' train '" + path("c.yaml") + "' run_dir='" + path("ti") + "'" + train_ov +
                              " update.weight_sync=cuda_ipc");
    compare_all_metrics("train fp32 cuda_ipc vs file", path("ti/streams/metrics-from-step-000000.zst"),
                        path("tf/streams/metrics-from-step-000000.zst"), 1e-12);
    compare_weights("train fp32 cuda_ipc vs file, version 2", path("ti/weights/policy-v000002.safetensors"),
                    path("tf/weights/policy-v000002.safetensors"), init, 1e-7, 1e-6, 0);
    maye_buf ulog = {};
    if (maye_read_file(path("ti/logs/update.log").c_str(), &ulog) < 0) maye_die("%s", maye_errmsg());
    maye_buf_putc(&ulog, 0);
    EXPECT(strstr(ulog.data, "weight sync over CUDA IPC: 2 buffers"), "train cuda_ipc: maye-update's log does not "
           "show the exported ring:\n%s", ulog.data);
    maye_buf_free(&ulog);
    const std::string train16 = " --no-eval data.limit=8 update.max_staleness=0 train.save_streams=true " + cuda16;
    run("train cuda bf16 file", "'" + BIN + "/maye' train '" + path("c.yaml") + "' run_dir='" + path("tf16") + "'" +
                                    train16 + " update.weight_sync=file");
    run("train cuda bf16 ipc", "'" + BIN + "/maye' train '" + path("c.yaml") + "' run_dir='" + path("ti16") + "'" +
                                   train16 + " update.weight_sync=cuda_ipc");
    compare_all_metrics("train bf16 cuda_ipc vs file", path("ti16/streams/metrics-from-step-000000.zst"),
                        path("tf16/streams/metrics-from-step-000000.zst"), 1e-12);

    stage("update cuda bf16", "update", "u-b16", "t-cpu.zst", "m-b16.zst", cuda16);
    compare_metric("update bf16", path("m-b16.zst"), path("m-cpu.zst"), "grad_norm", 0.1);
    compare_weights("update bf16 version 1", path("u-b16/weights/policy-v000001.safetensors"),
                    path("u-cpu/weights/policy-v000001.safetensors"), init, 0, 0, 0.9);
    return TEST_RESULT();
}
