// Step-at-a-time reading of record streams (see steps.h).
#include "io/steps.h"

#include "core/error.h"
#include "core/log.h"
#include "core/util.h"

#include <stdlib.h>

int maye_record_position(Maye__RecordKind kind, const ProtobufCMessage *msg, int64_t *step, int *offset, int *count) {
    const Maye__Position *pos = NULL;
    switch (kind) {
    case MAYE__RECORD_KIND__QUERY: pos = ((const Maye__Query *)msg)->pos; break;
    case MAYE__RECORD_KIND__ROLLOUT: {
        const Maye__Rollout *r = (const Maye__Rollout *)msg;
        pos = r->query ? r->query->pos : NULL;
        break;
    }
    case MAYE__RECORD_KIND__TRAJECTORY: {
        const Maye__Trajectory *t = (const Maye__Trajectory *)msg;
        if (!t->query || !t->query->pos) return maye_fail("trajectory without query position");
        *step = t->query->pos->step;
        *offset = t->step_offset;
        *count = t->step_records;
        return 0;
    }
    default: return maye_fail("%s records are not grouped in steps", maye_record_kind_name(kind));
    }
    if (!pos) return maye_fail("record without a position (query.pos)");
    *step = pos->step;
    *offset = pos->step_offset;
    *count = pos->step_records;
    return 0;
}

void maye_step_reader_init(maye_step_reader *sr, maye_reader *r) {
    sr->r = r;
    sr->last_step = -1;
}

void maye_step_records_free(ProtobufCMessage **msgs, int n) {
    for (int i = 0; i < n; i++) maye_record_free(msgs[i]);
    free(msgs);
}

int maye_step_reader_next(maye_step_reader *sr, ProtobufCMessage ***msgs, int *n, int64_t *step) {
    Maye__RecordKind kind = maye_reader_kind(sr->r);
    const char *name = maye_reader_name(sr->r);
    ProtobufCMessage **out = NULL;
    int have = 0, count = 0;
    int64_t s0 = -1;
    for (;;) {
        ProtobufCMessage *msg;
        int64_t idx;
        int rc = maye_reader_next(sr->r, &msg, &idx);
        if (rc < 0) goto fail;
        if (rc == 0) {
            if (have == 0) return 0;
            maye_fail("stream '%s' ended inside step %lld: %d of its %d records arrived", name, (long long)s0, have,
                      count);
            goto fail;
        }
        int64_t st = -1;
        int off = -1, cnt = 0;
        if (maye_record_position(kind, msg, &st, &off, &cnt) < 0) {
            maye_fail_ctx("stream '%s': record %lld", name, (long long)idx);
            maye_record_free(msg);
            goto fail;
        }
        if (have == 0) {
            if (cnt < 1 || st < 0) {
                maye_fail("stream '%s': record %lld: step %lld with %d records", name, (long long)idx, (long long)st,
                          cnt);
                maye_record_free(msg);
                goto fail;
            }
            if (st <= sr->last_step) {
                maye_fail("stream '%s': record %lld: step %lld after step %lld (steps must increase)", name,
                          (long long)idx, (long long)st, (long long)sr->last_step);
                maye_record_free(msg);
                goto fail;
            }
            s0 = st, count = cnt;
            out = xcalloc((size_t)cnt, sizeof(ProtobufCMessage *));
        }
        if (st != s0 || cnt != count || off != have) {
            maye_fail("stream '%s': record %lld: expected record %d of step %lld's %d, got record %d of step %lld's "
                      "%d (records missing or out of order)", name, (long long)idx, have, (long long)s0, count, off,
                      (long long)st, cnt);
            maye_record_free(msg);
            goto fail;
        }
        out[have++] = msg;
        if (have == count) break;
    }
    sr->last_step = s0;
    *msgs = out;
    *n = count;
    *step = s0;
    return 1;
fail:
    maye_step_records_free(out, have);
    return -1;
}

// ----------------------------------------------------------------------------
// per-step time accounting

void maye_step_clock_start(maye_step_clock *c, const maye_reader *r, const maye_writer *w) {
    c->t0 = maye_now();
    c->r_busy = r ? maye_reader_busy_seconds(r) : 0;
    c->r_wait = r ? maye_reader_wait_seconds(r) : 0;
    c->w_busy = w ? maye_writer_busy_seconds(w) : 0;
    c->w_wait = w ? maye_writer_wait_seconds(w) : 0;
    c->idle_extra = 0;
}

void maye_step_clock_report(maye_step_clock *c, int64_t step, const maye_reader *r, const maye_writer *w) {
    double now = maye_now(), wall = now - c->t0;
    double records = (r ? maye_reader_busy_seconds(r) - c->r_busy : 0) + (w ? maye_writer_busy_seconds(w) - c->w_busy : 0);
    double idle = (r ? maye_reader_wait_seconds(r) - c->r_wait : 0) + (w ? maye_writer_wait_seconds(w) - c->w_wait : 0) +
                  c->idle_extra;
    double model = wall - records - idle;
    log_info("timing {\"step\": %lld, \"wall_s\": %.4f, \"model_s\": %.4f, \"records_s\": %.4f, \"idle_s\": %.4f}",
             (long long)step, wall, model > 0 ? model : 0, records, idle);
    maye_step_clock_start(c, r, w);
}
