// Weight-sync files and handles (see weightsync.h).
#include "model/weightsync.h"

#include "backend/backend.h"
#include "model/backward.h"

#include "core/error.h"
#include "core/log.h"
#include "core/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define POLL_SECONDS 0.02
#define REPORT_EVERY_SECONDS 30.0

// ----------------------------------------------------------------------------
// configuration

int maye_weight_sync_check(const maye_config *cfg) {
    const char *ws = cfg->update.weight_sync ? cfg->update.weight_sync : "file";
    if (!strcmp(ws, "file")) return 0;
    CHECK_OR_FAIL(!strcmp(ws, "cuda_ipc"), "update.weight_sync = %s: expected file or cuda_ipc", ws);
    CHECK_OR_FAIL(!strcmp(cfg->model.device, "cuda"), "update.weight_sync = cuda_ipc shares maye-update's device "
                  "weights with the other stages, but model.device = %s: set model.device=cuda (a GPU and a make "
                  "CUDA=1 build) or update.weight_sync=file", cfg->model.device);
    CHECK_OR_FAIL(maye_backend_cuda(), "update.weight_sync = cuda_ipc: this build has no CUDA backend: rebuild with "
                  "make CUDA=1 (needs nvcc), or set update.weight_sync=file");
    return 0;
}

bool maye_weight_sync_ipc(const maye_config *cfg) {
    return cfg->update.weight_sync && !strcmp(cfg->update.weight_sync, "cuda_ipc");
}

// ----------------------------------------------------------------------------
// files and sources

char *maye_weight_file(const char *run_dir, int64_t version) {
    char rel[64];
    snprintf(rel, sizeof rel, "weights/policy-v%06lld.safetensors", (long long)version);
    return maye_path_join(run_dir, rel);
}

int maye_weight_source_open(maye_weight_source *ws, const char *run_dir, const char *sync_path, int64_t version) {
    memset(ws, 0, sizeof *ws);
    ws->run_dir = xstrdup(run_dir && run_dir[0] ? run_dir : ".");
    ws->version = version;
    ws->seen = version;
    if (sync_path && sync_path[0]) TRY(maye_reader_open(&ws->handles, sync_path, MAYE__RECORD_KIND__WEIGHT_SYNC));
    return 0;
}

void maye_weight_source_close(maye_weight_source *ws) {
    if (ws->handles) maye_reader_close(ws->handles);
    free(ws->run_dir);
    free(ws->seen_path);
    memset(ws, 0, sizeof *ws);
}

void maye_weight_source_use_device(maye_weight_source *ws, maye_device_model *dev, const maye_config *cfg) {
    const typeof(cfg->update) *u = &cfg->update;
    ws->dev = dev;
    ws->dev_groups = dev ? maye_train_groups(u->train_llm, u->train_connector, u->train_vit) : 0;
}

// A version from its file: laid over the CPU model (which it makes current again), then into the device.
static int load_version(maye_weight_source *ws, maye_model *m, int64_t v, const char *path) {
    double t0 = maye_now();
    if (maye_model_load_overlay(m, path) < 0) return maye_fail_ctx("loading policy version %lld", (long long)v);
    ws->cpu_stale = false;
    if (ws->dev && maye_device_reload(ws->dev, m, ws->dev_groups) < 0)
        return maye_fail_ctx("loading policy version %lld onto the device", (long long)v);
    ws->version = v;
    log_debug("switched to policy version %lld (%s, %.2f s)", (long long)v, path, maye_now() - t0);
    return 0;
}

// A version from a CUDA_IPC handle: copied into the device model; the CPU model's trained groups become NaN.
static int import_version(maye_weight_source *ws, maye_model *m, int64_t v, const maye_ipc_weights *w) {
    CHECK_OR_FAIL(ws->dev, "policy version %lld came as a CUDA_IPC handle (update.weight_sync=cuda_ipc) but this "
                  "stage runs on the CPU: set model.device=cuda for every stage, or update.weight_sync=file",
                  (long long)v);
    double t0 = maye_now();
    if (maye_device_import(ws->dev, ws->dev_groups, w) < 0)
        return maye_fail_ctx("policy version %lld over CUDA IPC", (long long)v);
    if (!ws->cpu_stale) {
        for (int g = MAYE_PARAM_VISION; g <= MAYE_PARAM_LLM; g++) {
            if (!(ws->dev_groups & (1u << g))) continue;
            size_t off, n = maye_model_group_range(m, (maye_param_group)g, &off);
            for (size_t i = 0; i < n; i++) m->params[off + i] = NAN;
        }
        ws->cpu_stale = true;
    }
    ws->version = v;
    log_debug("switched to policy version %lld (CUDA IPC, %.3f GB, %.2f s)", (long long)v, w->bytes / 1e9,
              maye_now() - t0);
    return 0;
}

// Stream mode: reads handles until one announces a version >= need; keeps the newest one <= want.
static int sync_from_handles(maye_weight_source *ws, maye_model *m, int64_t want, int64_t need) {
    while (ws->seen < need) {
        ProtobufCMessage *msg;
        int64_t idx;
        int rc = maye_reader_next(ws->handles, &msg, &idx);
        if (rc < 0) return -1;
        if (rc == 0)
            return maye_fail("weight-sync stream '%s' ended before policy version %lld arrived (did maye-update "
                             "stop?)", maye_reader_name(ws->handles), (long long)need);
        Maye__WeightSync *h = (Maye__WeightSync *)msg;
        const char *bad = NULL;
        if (h->kind == MAYE__SYNC_KIND__FILE && !(h->path && h->path[0])) bad = "a FILE handle without a path";
        else if (h->kind == MAYE__SYNC_KIND__CUDA_IPC && h->ipc_handle.len != MAYE_IPC_HANDLE_BYTES)
            bad = "a CUDA_IPC handle whose ipc_handle is not a cudaIpcMemHandle_t";
        else if (h->kind != MAYE__SYNC_KIND__FILE && h->kind != MAYE__SYNC_KIND__CUDA_IPC)
            bad = "a handle kind this build cannot load (FILE and CUDA_IPC only)";
        if (bad) {
            int kind = h->kind;
            maye_record_free(msg);
            return maye_fail("weight-sync stream '%s': record %lld: %s (kind %d)", maye_reader_name(ws->handles),
                             (long long)idx, bad, kind);
        }
        if (h->version <= want) {
            ws->seen = h->version;
            free(ws->seen_path);
            ws->seen_path = NULL;
            ws->seen_ipc = h->kind == MAYE__SYNC_KIND__CUDA_IPC;
            if (ws->seen_ipc) {
                memcpy(ws->seen_buf.handle, h->ipc_handle.data, MAYE_IPC_HANDLE_BYTES);
                ws->seen_buf.bytes = h->ipc_bytes;
                ws->seen_buf.digest = h->digest;
            } else {
                ws->seen_path = xstrdup(h->path);
            }
        }
        int64_t v = h->version;
        maye_record_free(msg);
        if (v > want) break; // newer than anything these records may use: keep what we have
    }
    if (ws->seen <= ws->version) return 0;
    return ws->seen_ipc ? import_version(ws, m, ws->seen, &ws->seen_buf) : load_version(ws, m, ws->seen, ws->seen_path);
}

// Directory mode: the newest file <= want; waits while it is older than need.
static int sync_from_dir(maye_weight_source *ws, maye_model *m, int64_t want, int64_t need) {
    double t0 = maye_now(), last_report = t0;
    for (;;) {
        for (int64_t v = want; v > ws->version; v--) {
            char *path = maye_weight_file(ws->run_dir, v);
            int exists = maye_file_exists(path);
            int rc = exists ? load_version(ws, m, v, path) : 0;
            free(path);
            if (rc < 0) return -1;
            if (exists) return 0;
        }
        if (ws->version >= need) return 0;
        double now = maye_now();
        if (now - last_report >= REPORT_EVERY_SECONDS) {
            char *path = maye_weight_file(ws->run_dir, need);
            log_info("waiting %.0f s for policy version %lld (%s)", now - t0, (long long)need, path);
            free(path);
            last_report = now;
        }
        usleep((useconds_t)(POLL_SECONDS * 1e6));
    }
}

int maye_weight_source_sync(maye_weight_source *ws, maye_model *m, int64_t want, int64_t max_staleness) {
    if (ws->version > want)
        return maye_fail("a record asks for policy version %lld but version %lld is already loaded (records out "
                         "of order?)", (long long)want, (long long)ws->version);
    int64_t need = want - (max_staleness > 0 ? max_staleness : 0);
    if (ws->version >= need && ws->version == want) return 0;
    return ws->handles ? sync_from_handles(ws, m, want, need) : sync_from_dir(ws, m, want, need);
}

// ----------------------------------------------------------------------------
// publishing

int maye_weight_publish(const maye_model *m, const char *run_dir, int64_t version, int64_t step, unsigned groups,
                        maye_writer *out, int keep, int64_t keep_every) {
    char *dir = maye_path_join(run_dir, "weights");
    int rc = maye_mkdir_p(dir);
    free(dir);
    TRY(rc);
    char *path = maye_weight_file(run_dir, version);
    char vbuf[32], sbuf[32];
    snprintf(vbuf, sizeof vbuf, "%lld", (long long)version);
    snprintf(sbuf, sizeof sbuf, "%lld", (long long)step);
    const char *meta[] = {"maye_version", vbuf, "maye_step", sbuf};
    rc = maye_model_save_groups(m, path, groups, MAYE_F32, meta, 2);
    if (rc == 0 && out) {
        Maye__WeightSync h = MAYE__WEIGHT_SYNC__INIT;
        h.version = version;
        h.kind = MAYE__SYNC_KIND__FILE;
        h.path = path;
        h.step = step;
        rc = maye_writer_write(out, &h.base);
        if (rc == 0) rc = maye_writer_flush(out);
    }
    for (int64_t v = version - keep - 1; rc == 0 && keep > 0 && v > 0; v--) {
        if (keep_every > 0 && v % keep_every == 0) continue;
        char *old = maye_weight_file(run_dir, v);
        int gone = !maye_file_exists(old);
        if (!gone) unlink(old);
        free(old);
        if (gone) break; // older ones were removed by earlier publishes
    }
    free(path);
    return rc;
}

int maye_weight_publish_ipc(maye_writer *out, int64_t version, int64_t step, const maye_ipc_weights *w) {
    Maye__WeightSync h = MAYE__WEIGHT_SYNC__INIT;
    h.version = version;
    h.kind = MAYE__SYNC_KIND__CUDA_IPC;
    h.ipc_handle.data = (uint8_t *)w->handle;
    h.ipc_handle.len = MAYE_IPC_HANDLE_BYTES;
    h.ipc_bytes = w->bytes;
    h.digest = w->digest;
    h.step = step;
    TRY(maye_writer_write(out, &h.base));
    return maye_writer_flush(out);
}
