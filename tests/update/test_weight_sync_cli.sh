#!/bin/sh
# update.weight_sync=cuda_ipc is refused with a message saying what to set where it cannot work: with
# model.device=cpu in maye-update, maye-rollout and maye-traj, and (in a build without CUDA) with
# model.device=cuda; a value other than file|cuda_ipc is refused by the config. The stages check this before
# they load anything, so no model is needed. (The GPU test tests/cuda/test_stages_cuda.cu runs the real sync.)
set -u
T="$MAYE_TEST_TMP"
. tests/support/cli.sh

for stage in update rollout traj; do
    expect_error "update.weight_sync = cuda_ipc shares maye-update's device weights with the other stages, but model.device = cpu" \
        "$MAYE_BIN/maye-$stage" update.weight_sync=cuda_ipc model.path="$T/none" run_dir="$T/run" </dev/null
    grep -qF "update.weight_sync=file" "$T/err.txt" || { echo "FAIL: maye-$stage: no way out named"; cat "$T/err.txt"; fail=1; }
done

# file (the default) is not refused by that check: the stage gets as far as the missing model
expect_error "config.json" "$MAYE_BIN/maye-update" update.weight_sync=file model.path="$T/none" run_dir="$T/run" </dev/null
if grep -qF "update.weight_sync" "$T/err.txt"; then echo "FAIL: update.weight_sync=file refused:"; cat "$T/err.txt"; fail=1; fi

expect_error "file|cuda_ipc" "$MAYE_BIN/maye-update" update.weight_sync=nccl model.path="$T/none" </dev/null

# a build without the CUDA backend names the rebuild (a CUDA build passes this check and fails later)
"$MAYE_BIN/maye-update" model.device=cuda model.path="$T/none" </dev/null >"$T/out.txt" 2>"$T/err.txt"
if grep -qF "this build has no CUDA backend" "$T/err.txt"; then
    for stage in update rollout traj; do
        expect_error "update.weight_sync = cuda_ipc: this build has no CUDA backend: rebuild with make CUDA=1" \
            "$MAYE_BIN/maye-$stage" model.device=cuda update.weight_sync=cuda_ipc model.path="$T/none" </dev/null
    done
fi
exit $fail
