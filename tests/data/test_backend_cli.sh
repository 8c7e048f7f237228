#!/bin/sh
# The backend settings every model stage checks before it loads anything (maye_run_check_backend), each
# refused with a message naming what to set: model.profile=true on the CPU backend, model.dtype=bf16 on the
# CPU backend, an unknown model.device. No model is needed: the check comes first. (The GPU test
# tests/cuda/test_stages_cuda.cu runs a profiled rollout on the GPU and reads its table.)
set -u
T="$MAYE_TEST_TMP"
. tests/support/cli.sh

for stage in rollout traj update; do
    expect_error "model.profile = true times the GPU model's regions, but model.device = cpu: set model.device=cuda" \
        "$MAYE_BIN/maye-$stage" model.profile=true model.path="$T/none" run_dir="$T/run" </dev/null
    expect_error "model.dtype = bf16: the CPU backend computes in fp32; set model.dtype=fp32" \
        "$MAYE_BIN/maye-$stage" model.dtype=bf16 model.path="$T/none" run_dir="$T/run" </dev/null
    expect_error "cpu|cuda" "$MAYE_BIN/maye-$stage" model.device=tpu model.path="$T/none" run_dir="$T/run" </dev/null
done

# the default (model.profile=false) passes the check: the stage gets as far as the missing model
expect_error "config.json" "$MAYE_BIN/maye-update" model.path="$T/none" run_dir="$T/run" </dev/null
if grep -qF "model.profile" "$T/err.txt"; then echo "FAIL: model.profile=false refused:"; cat "$T/err.txt"; fail=1; fi

# every stage's --help says what the key does, --print-config shows it with its default
for stage in rollout traj update; do
    "$MAYE_BIN/maye-$stage" --help >"$T/help.txt" 2>&1
    grep -qF "model.profile=true prints where" "$T/help.txt" || { echo "FAIL: maye-$stage --help lacks model.profile"; fail=1; }
done
"$MAYE_BIN/maye-rollout" --print-config >"$T/config.txt" 2>&1
grep -qF "profile: false" "$T/config.txt" || { echo "FAIL: --print-config lacks model.profile"; cat "$T/config.txt"; fail=1; }
exit $fail
