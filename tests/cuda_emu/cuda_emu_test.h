// Host-side helpers of the emulated kernel tests (tests/cuda_emu/test_*.cc): random inputs, bf16 rounding
// and conversion with the device's own rounding, NaN poisoning of outputs, and the checks that compare a
// kernel's output with a double-precision reference, print the index and both values on a mismatch (through
// tests/test.h) and keep the worst error of each kernel for a summary line.
#pragma once
#include "cuda_emu.h"

#ifndef _Noreturn
#define _Noreturn [[noreturn]]
#endif
extern "C" {
#include "core/rng.h"
#include "test.h"
}

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <memory>
#include <string>
#include <vector>

// ----------------------------------------------------------------------------
// host data

inline maye_rng emu_rng;

inline std::vector<float> emu_randn(size_t n, float scale) {
    std::vector<float> x(n);
    for (float &v : x) v = scale * maye_rng_normal(&emu_rng);
    return x;
}

inline float emu_round_bf16(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }
inline void emu_round_bf16(std::vector<float> &x) {
    for (float &v : x) v = emu_round_bf16(v);
}
inline std::vector<__nv_bfloat16> emu_to_bf16(const std::vector<float> &x) {
    std::vector<__nv_bfloat16> y(x.size());
    for (size_t i = 0; i < x.size(); i++) y[i] = __float2bfloat16_rn(x[i]);
    return y;
}
inline std::vector<float> emu_to_f32(const std::vector<__nv_bfloat16> &x) {
    std::vector<float> y(x.size());
    for (size_t i = 0; i < x.size(); i++) y[i] = __bfloat162float(x[i]);
    return y;
}
inline std::vector<float> emu_to_f32(const std::vector<float> &x) { return x; }

// 0xFF bytes: NaN in fp32 and bf16, so an element the kernel does not write fails the comparison.
template <typename T> inline void emu_poison(std::vector<T> &x) { memset((void *)x.data(), 0xFF, sizeof(T) * x.size()); }
template <typename T> inline bool emu_is_poison(const T &x) {
    const unsigned char *b = reinterpret_cast<const unsigned char *>(&x);
    for (size_t i = 0; i < sizeof(T); i++)
        if (b[i] != 0xFF) return false;
    return true;
}

// A kernel's array in host memory: n elements `off` elements past a 64-byte aligned start (off > 0 makes the
// pointer misaligned for 16-byte vectors when off * sizeof(T) is not a multiple of 16), between poisoned
// guards of EMU_GUARD elements on both sides that the kernel must leave alone.
#define EMU_GUARD 8
template <typename T> struct emu_array {
    std::unique_ptr<T[], decltype(&free)> mem{nullptr, free};
    int64_t n = 0;
    int off = 0;

    emu_array(int64_t n_, int off_ = 0) : n(n_), off(off_) {
        size_t bytes = ((size_t)(n + off + 2 * EMU_GUARD) * sizeof(T) + 63) / 64 * 64;
        mem.reset(static_cast<T *>(aligned_alloc(64, bytes)));
        if (!mem) cuda_emu_die("aligned_alloc of %zu bytes failed", bytes);
        memset((void *)mem.get(), 0xFF, bytes);
    }
    T *data() { return mem.get() + EMU_GUARD + off; }
    void poison() { memset((void *)data(), 0xFF, sizeof(T) * (size_t)n); }
    // stores x (n) converted to T (bf16: rounded to nearest even)
    void set(const std::vector<float> &x) {
        for (int64_t i = 0; i < n; i++) data()[i] = T(x[(size_t)i]);
    }
    std::vector<float> get() {
        std::vector<float> y((size_t)n);
        for (int64_t i = 0; i < n; i++) y[(size_t)i] = (float)data()[i];
        return y;
    }
    // whether the guards on both sides still hold their poison
    bool guards_intact() {
        for (int64_t i = 0; i < EMU_GUARD + off; i++)
            if (!emu_is_poison(mem.get()[i])) return false;
        for (int64_t i = 0; i < EMU_GUARD; i++)
            if (!emu_is_poison(data()[n + i])) return false;
        return true;
    }
};

// logits (nr, nv) = hidden rows h (nr, C) @ vocabulary rows w (nv, C)^T / temperature, summed in double and
// stored in fp32 (what the log-prob kernels get from their cuBLASLt GEMM).
inline void emu_host_logits(float *logits, const float *h, const float *w, int nr, int nv, int C, float temperature) {
    float alpha = 1.0f / temperature;
    for (int r = 0; r < nr; r++)
        for (int j = 0; j < nv; j++) {
            double acc = 0;
            for (int c = 0; c < C; c++) acc += (double)h[(size_t)r * C + c] * w[(size_t)j * C + c];
            logits[(size_t)r * nv + j] = alpha * (float)acc;
        }
}

// The keys query i of an attention segment (nq queries, nk keys) sees: j < the returned count (causal: query i
// sees keys j <= nk - nq + i; none when that is negative).
inline int emu_visible_keys(bool causal, int nq, int nk, int i) { return causal ? min(nk, nk - nq + i + 1) : nk; }

// printf into a string, for the names of checks.
__attribute__((format(printf, 1, 2))) inline std::string emu_what(const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return buf;
}

// ----------------------------------------------------------------------------
// checks

// The worst error one kind of kernel output reached over a test, relative to max |want| of each check.
struct emu_stats {
    const char *name;
    double tol;           // the tolerance the checks used, relative to max |want|
    long checks = 0;
    long long values = 0;
    double worst = 0.0;
};

// got (n) against want (n): |got - want| <= tol * max |want| (finite values; at least 1e-30), -inf only where
// want is -inf. Counts into st; returns whether everything matched.
inline bool emu_check(emu_stats &st, const std::string &what, const std::vector<float> &got,
                      const std::vector<double> &want) {
    size_t n = want.size();
    double scale = 0.0, worst = 0.0;
    for (double w : want)
        if (isfinite(w)) scale = fmax(scale, fabs(w));
    scale = fmax(scale, 1e-30);
    std::vector<float> w32(n);
    for (size_t i = 0; i < n; i++) {
        w32[i] = (float)want[i];
        if (isfinite(want[i]) && isfinite(got[i])) worst = fmax(worst, fabs((double)got[i] - want[i]) / scale);
    }
    st.checks++;
    st.values += (long long)n;
    st.worst = fmax(st.worst, worst);
    return test_close_f32(what.c_str(), got.data(), w32.data(), (int64_t)n, st.tol * scale, 0.0);
}

// The same with an fp32 reference (the CPU kernels of kernels/cpu).
inline bool emu_check(emu_stats &st, const std::string &what, const std::vector<float> &got,
                      const std::vector<float> &want) {
    return emu_check(st, what, got, std::vector<double>(want.begin(), want.end()));
}

inline void emu_stats_print(const emu_stats &st) {
    printf("%-34s %4ld checks %9lld values  worst error %.2e of max |want| (tolerance %.0e)\n", st.name, st.checks,
           st.values, st.worst, st.tol);
}

// Runs fn in a child process; expects it to die from a signal with stderr containing `needle`.
template <typename F> static void expect_abort(const char *what, const char *needle, F fn) {
    fflush(stdout), fflush(stderr);
    int fds[2];
    if (pipe(fds) != 0) maye_die("pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) maye_die("fork: %s", strerror(errno));
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 2);
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        fn();
        _exit(0);
    }
    close(fds[1]);
    std::string msg;
    char buf[512];
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof buf)) > 0) msg.append(buf, (size_t)n);
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT(WIFSIGNALED(status), "%s: the child was not killed (exit status %d); stderr: %s", what,
           WIFEXITED(status) ? WEXITSTATUS(status) : -1, msg.c_str());
    EXPECT(msg.find(needle) != std::string::npos, "%s: stderr lacks '%s': %s", what, needle, msg.c_str());
}
