// Region timing of the GPU model (cuda_model_profile_begin / _end in model.h; bench/gpu_model prints it): with
// profiling on, the model's code marks where each region of its work starts (gm_mark(gm, "qkv_proj")) under
// the phase its caller set (gm_phase(gm, "decode")). Each mark records a CUDA event on the model's stream; the
// GPU time from one mark's event to the next is charged to "phase.region". With profiling off (gm->prof NULL)
// a mark is one branch; during a CUDA graph capture marks record nothing.
//
// Host gaps: kernels launched one by one by a host slower than the GPU leave the GPU idle between them, and
// events would charge those gaps to the regions. So a mark that finds the GPU caught up (the last mark's event
// complete: the GPU has reached the open region, and may be running or have finished its kernels) closes that
// region there, holds the stream with a spin kernel (PROF_HOLD_MS, not charged) while the host queues the next
// launches, and only then opens its region: the GPU runs the queued work back to back, as from a CUDA graph.
// A region closed that way may include the host time between its mark and this one if the GPU drained
// meanwhile; `stalls` counts those points. The model's entry points end with an idle mark (GmIdleOnReturn,
// on error returns too), and so do cuda_model_sync before it waits and the periodic fold of the marks before
// its host work, so host time between calls is not charged to a region.
#include "model/cuda/internal.cuh"

#include <stdlib.h>
#include <string.h>

#define PROF_MARKS 4096   // marks held before they are folded into the totals (one wait for the stream)
#define PROF_HOLD_MS 20.0 // how long a hold keeps the GPU waiting for the host's launches

// ----------------------------------------------------------------------------
// state

struct ProfMark {
    cudaEvent_t ev;
    const char *phase, *region; // region NULL: an idle point, the time up to the next mark is not charged
};

struct cuda_prof {
    ProfMark marks[PROF_MARKS]; // [0, n) recorded, not yet folded; events created for [0, n_events)
    int n, n_events;
    const char *phase;
    cuda_prof_total totals[CUDA_PROF_MAX];
    int n_totals;
    long stalls, holds;
    int dropped;                // marks whose name did not fit in the totals
    cudaError_t err;            // the first failure of a CUDA call inside a mark (reported by _end)
    const char *err_what;
};

// The GPU's nanosecond clock (%globaltimer); under the CPU emulator its stand-in, which runs ahead.
__device__ __forceinline__ long long global_timer_ns() {
#ifdef MAYE_CUDA_EMU
    return cuda_emu_globaltimer();
#else
    long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
#endif
}

// Spins one thread until ns nanoseconds of the GPU's global timer have passed.
__global__ void prof_hold_kernel(long long ns) {
    long long t0 = global_timer_ns();
    do __nanosleep(1000);
    while (global_timer_ns() - t0 < ns);
}

static void prof_error(cuda_prof *p, cudaError_t err, const char *what) {
    if (err != cudaSuccess && p->err == cudaSuccess) p->err = err, p->err_what = what;
}

// ----------------------------------------------------------------------------
// folding marks into totals

static void add_total(cuda_prof *p, const char *phase, const char *region, double ms) {
    char name[sizeof p->totals[0].name];
    snprintf(name, sizeof name, "%s.%s", phase ? phase : "-", region);
    for (int i = 0; i < p->n_totals; i++)
        if (!strcmp(p->totals[i].name, name)) {
            p->totals[i].ms += ms, p->totals[i].calls++;
            return;
        }
    if (p->n_totals == CUDA_PROF_MAX) {
        p->dropped++;
        return;
    }
    cuda_prof_total *t = &p->totals[p->n_totals++];
    memcpy(t->name, name, sizeof name);
    t->ms = ms, t->calls = 1;
}

// Waits for the last mark and charges every closed region; the last mark stays open as marks[0].
static void fold(cuda_prof *p) {
    if (p->n == 0) return;
    cudaError_t err = cudaEventSynchronize(p->marks[p->n - 1].ev);
    prof_error(p, err, "waiting for the profile's last event");
    for (int i = 0; err == cudaSuccess && i + 1 < p->n; i++) {
        if (!p->marks[i].region) continue;
        float ms = 0;
        cudaError_t e = cudaEventElapsedTime(&ms, p->marks[i].ev, p->marks[i + 1].ev);
        prof_error(p, e, "reading the time between two profile events");
        if (e == cudaSuccess) add_total(p, p->marks[i].phase, p->marks[i].region, ms);
    }
    ProfMark last = p->marks[p->n - 1];
    p->marks[p->n - 1] = p->marks[0];
    p->marks[0] = last;
    p->n = 1;
}

// Records one mark (the event created on first use of its slot); prof_mark leaves room for three.
static void record(cuda_prof *p, cudaStream_t s, const char *region) {
    ProfMark *m = &p->marks[p->n];
    if (p->n == p->n_events) {
        cudaError_t err = cudaEventCreate(&m->ev);
        prof_error(p, err, "creating a profile event");
        if (err != cudaSuccess) return;
        p->n_events++;
    }
    m->phase = p->phase, m->region = region;
    cudaError_t err = cudaEventRecord(m->ev, s);
    prof_error(p, err, "recording a profile event");
    if (err == cudaSuccess) p->n++;
}

// ----------------------------------------------------------------------------
// marks

void prof_mark(cuda_model *gm, const char *region) {
    cuda_prof *p = gm->prof;
    cudaStream_t s = gm->stream;
    cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
    prof_error(p, cudaStreamIsCapturing(s, &cap), "asking whether the stream is being captured");
    if (cap != cudaStreamCaptureStatusNone) return;
    if (p->n + 3 > PROF_MARKS) { // fold, the open region closed first: the fold's host time is charged to nothing
        if (p->marks[p->n - 1].region) record(p, s, NULL);
        fold(p);
    }
    if (!region) {
        if (p->n == 0 || p->marks[p->n - 1].region) record(p, s, NULL);
        return;
    }
    bool idle = p->n == 0;
    if (!idle) {
        cudaError_t q = cudaEventQuery(p->marks[p->n - 1].ev);
        if (q == cudaErrorNotReady)
            cudaGetLastError(); // not a failure: cleared, so the next launch check does not take it for one
        else
            prof_error(p, q, "asking whether the GPU has caught up");
        idle = q == cudaSuccess;
    }
    if (idle) { // the GPU has caught up with the host: hold it
        if (p->n > 0 && p->marks[p->n - 1].region) {
            record(p, s, NULL);
            p->stalls++;
        }
        cudaGetLastError(); // the model checks its own launches: what is pending here is not the hold's
        prof_hold_kernel<<<1, 1, 0, s>>>((long long)(PROF_HOLD_MS * 1e6));
        prof_error(p, cudaGetLastError(), "launching the profile's hold kernel");
        p->holds++;
    }
    record(p, s, region);
}

void prof_phase(cuda_model *gm, const char *phase) { gm->prof->phase = phase; }

// ----------------------------------------------------------------------------
// API

static int cmp_total(const void *x, const void *y) {
    const cuda_prof_total *a = (const cuda_prof_total *)x, *b = (const cuda_prof_total *)y;
    return (a->ms < b->ms) - (a->ms > b->ms);
}

int cuda_model_profile_begin(cuda_model *gm) {
    CHECK_OR_FAIL(!gm->prof, "cuda_model_profile_begin: a profile is already running");
    TRY(cuda_model_sync(gm));
    gm->prof = (cuda_prof *)xcalloc(1, sizeof(cuda_prof));
    return 0;
}

int cuda_model_profile_end(cuda_model *gm, cuda_prof_report *r) {
    memset(r, 0, sizeof *r);
    cuda_prof *p = gm->prof;
    CHECK_OR_FAIL(p, "cuda_model_profile_end: no profile is running");
    prof_mark(gm, NULL);
    fold(p);
    gm->prof = NULL;
    int rc = 0;
    if (p->err != cudaSuccess) {
        rc = cuda_fail(p->err, "profiling the GPU model: %s", p->err_what);
    } else if (p->dropped) {
        rc = maye_fail("profiling the GPU model: more than %d regions (%d marks dropped)", CUDA_PROF_MAX, p->dropped);
    } else {
        qsort(p->totals, (size_t)p->n_totals, sizeof p->totals[0], cmp_total);
        r->n = p->n_totals;
        memcpy(r->regions, p->totals, sizeof p->totals[0] * (size_t)r->n);
        for (int i = 0; i < r->n; i++) {
            const cuda_prof_total *t = &r->regions[i];
            int len = (int)strcspn(t->name, "."), k = 0;
            while (k < r->n_phases && (strncmp(r->phases[k].name, t->name, len) || r->phases[k].name[len])) k++;
            if (k == r->n_phases) snprintf(r->phases[r->n_phases++].name, sizeof t->name, "%.*s", len, t->name);
            r->phases[k].ms += t->ms, r->phases[k].calls += t->calls;
            r->total_ms += t->ms;
        }
        r->stalls = p->stalls, r->holds = p->holds;
    }
    for (int i = 0; i < p->n_events; i++) cudaEventDestroy(p->marks[i].ev);
    free(p);
    return rc;
}
