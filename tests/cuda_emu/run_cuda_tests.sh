#!/bin/sh
# Runs the CUDA tests (tests/cuda/test_*.cu) built for the CPU emulator by `make CUDA_EMU=1 BUILD=... tests`:
# the GPU model, its generator and backward, and the stages with model.device=cuda, on the CPU. Each test
# gets CUDA_EMU_TEST_TIMEOUT seconds (default 900); its output goes to $BUILD/cuda-emu-logs/NAME.log and, on
# failure, its last 30 lines to the terminal. Exit status 0 when every test passed.
set -u
BUILD=${BUILD:-build-emu}
LOGS=$BUILD/cuda-emu-logs
mkdir -p "$LOGS"
limit=${CUDA_EMU_TEST_TIMEOUT:-900}
pass=0 fail=0 failed=
for t in "$@"; do
  name=$(basename "$t")
  t0=$(date +%s)
  timeout "$limit" "$t" >"$LOGS/$name.log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - t0 ))
  if [ $rc -eq 0 ]; then
    pass=$((pass+1)); echo "PASS  $name on the CUDA emulator (${secs}s)"
  else
    fail=$((fail+1)); failed="$failed $name"
    [ $rc -eq 124 ] && echo "FAIL  $name on the CUDA emulator: no result in ${limit}s" ||
      echo "FAIL  $name on the CUDA emulator (exit $rc, ${secs}s)"
    tail -n 30 "$LOGS/$name.log" | sed 's/^/      /'
  fi
done
echo "CUDA emulator: $pass passed, $fail failed${failed:+ ($failed )}; logs in $LOGS"
[ $fail -eq 0 ]
