// Reading a record stream one generation step at a time. Every Query, Rollout and Trajectory carries its
// step, its index within the step and the step's record count, so a step is complete as soon as its last
// record arrives: the reader never reads past it (the stages run in lock-step with weight sync, and
// waiting for the next step's first record would deadlock the pipeline).
#pragma once
#include "io/records.h"

typedef struct {
    maye_reader *r;
    int64_t last_step; // -1 before the first step
} maye_step_reader;

// Where a record sits: its step, index within the step and the step's record count.
int maye_record_position(Maye__RecordKind kind, const ProtobufCMessage *msg, int64_t *step, int *offset, int *count);

void maye_step_reader_init(maye_step_reader *sr, maye_reader *r);
// Reads the next step: returns 1 with *msgs (n records in step order; free each with maye_record_free and
// the array with free), 0 at the clean end of the stream, -1 on error: the stream ends inside a step,
// records of a step are missing, repeated or out of order, or steps go backwards.
int maye_step_reader_next(maye_step_reader *sr, ProtobufCMessage ***msgs, int *n, int64_t *step);
void maye_step_records_free(ProtobufCMessage **msgs, int n);

// ----------------------------------------------------------------------------
// per-step time accounting of a stage

// The wall time of each step (from the end of the previous one) split into idle (waiting for input records,
// for a full output pipe to drain, or for a policy version), records (decoding, encoding, compressing) and
// the rest: the stage's own work (the model). maye_step_clock_report logs it as one line,
//   <program>: timing {"step": S, "wall_s": W, "model_s": M, "records_s": R, "idle_s": I}
// which bench/overhead.sh reads from the stage logs.
typedef struct {
    double t0;                 // end of the previous step
    double r_busy, r_wait;     // reader counters at t0
    double w_busy, w_wait;     // writer counters at t0
    double idle_extra;         // other waiting inside the step (weight sync), added by the stage
} maye_step_clock;

void maye_step_clock_start(maye_step_clock *c, const maye_reader *r, const maye_writer *w);
void maye_step_clock_report(maye_step_clock *c, int64_t step, const maye_reader *r, const maye_writer *w);
