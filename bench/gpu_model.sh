#!/bin/sh
# The GPU model check in one command: every CUDA test (the model's first: tests/cuda/test_cuda_model*, then the
# kernel layer's), the end-to-end benchmarks of a Qwen2-VL-2B-shaped model (bench/gpu_model.cu: rollout and
# update), the PyTorch / transformers baseline of the same jobs (bench/gpu_model_baseline.py, when torch sees
# the GPU) with the ratios, a checkpoint trained on the GPU (bf16, then fp32) loaded in transformers
# (bench/gpu_checkpoint_parity.sh), and compute-sanitizer's memcheck on the model kernels' test. About 3-4
# minutes on an H100/H200 (the baseline's generate() is most of it).
#
#   sh bench/gpu_model.sh                  build in $BUILD (default build) with make CUDA=1, then run
#   sh bench/gpu_model.sh --no-build       run the binaries already in $BUILD
#   sh bench/gpu_model.sh --bundle B       run a bundle made by `make CUDA=1 gpu-bundle` (the directory or its
#                                          .tar.gz); its fixtures/ serve as $MAYE_FIXTURES unless that is set
#
# Logs go to $OUT when set (4 files, plus device.txt unless bench/gpu.sh wrote it there: model_tests.log,
# model_bench.jsonl, model_torch.jsonl, checkpoint_parity.jsonl), else to $BUILD/gpu-logs. Exit status: 0
# when every test and check passed (or skipped without a GPU), 1 otherwise. GPU_SANITIZE=0 skips the memcheck,
# GPU_BASELINE=0 the PyTorch baseline, GPU_MODEL_TESTS_ONLY=1 runs only the tests/cuda/test_cuda_model*
# tests, GPU_MODEL_NO_TESTS=1 none of the tests (the benchmarks, the baseline and the checkpoint check only:
# bench/gpu.sh runs it so, after its own tests).
set -u
BUILD=${BUILD:-build}
PROG=gpu_model.sh
. "$(dirname "$0")/gpu_common.sh"
gpu_options "$@"
LOGS=${OUT:-$BUILD/gpu-logs}
mkdir -p "$LOGS"
LOG="$LOGS/model_tests.log"
: >"$LOG"
start=$(date +%s)
here=$(cd "$(dirname "$0")" && pwd)

# ----------------------------------------------------------------------------
# binaries and libraries

if [ "$mode" = build ]; then
  jobs=$(nproc 2>/dev/null || echo 4)
  if ! make BUILD="$BUILD" CUDA=1 -j"$jobs" gpu-bins >>"$LOG" 2>&1; then
    tail -n 30 "$LOG"; echo "gpu_model.sh: build failed"; exit 1
  fi
fi
gpu_bundle_env
if [ "$mode" = bundle ]; then
  BIN="$bundle/bin"
  TESTS="$(ls "$BIN"/test_cuda_model* 2>/dev/null) $(ls "$BIN"/test_* 2>/dev/null | grep -v /test_cuda_model)"
  BENCH="$BIN/gpu_model"
else
  TESTS="$(ls "$BUILD"/tests/cuda/test_cuda_model* 2>/dev/null) $(ls "$BUILD"/tests/cuda/test_* 2>/dev/null | grep -v /test_cuda_model)"
  BENCH="$BUILD/bench/gpu_model"
fi
[ "${GPU_MODEL_TESTS_ONLY:-0}" = 1 ] && TESTS=$(echo "$TESTS" | tr ' ' '\n' | grep /test_cuda_model)
gpu_cuda_libs
[ -n "$(echo $TESTS)" ] || { echo "gpu_model.sh: no CUDA test binaries found"; exit 1; }

if [ ! -f "$LOGS/device.txt" ]; then
  { nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv 2>&1 || echo "no nvidia-smi"
    echo "mode: $mode ${bundle}"; echo "fixtures: ${MAYE_FIXTURES:-../shared/fixtures (default)}"; } >"$LOGS/device.txt"
fi
echo "gpu_model.sh: $(sed -n 2p "$LOGS/device.txt")"

# ----------------------------------------------------------------------------
# tests

# the model's tests first, the kernel layer's after the benchmarks
NO_TESTS=${GPU_MODEL_NO_TESTS:-0}
if [ "$NO_TESTS" = 1 ] && ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_model.sh: no GPU (nvidia-smi -L failed): nothing to run"; exit 0
fi
if [ "$NO_TESTS" != 1 ]; then
  gpu_run_tests "$LOG" grep $(echo "$TESTS" | tr ' ' '\n' | grep /test_cuda_model)
  echo "model tests: $pass passed, $fail failed, $skip skipped"
fi

# ----------------------------------------------------------------------------
# benchmarks: ours, then PyTorch's on the same config with the ratios

if [ $skip -eq 0 ] && [ -x "$BENCH" ]; then
  : >"$LOGS/model_bench.jsonl"
  for job in rollout update; do # separate processes: a fault in one leaves the other's numbers
    timeout 120 "$BENCH" --only $job >>"$LOGS/model_bench.jsonl" 2>>"$LOG" ||
      echo "gpu_model.sh: gpu_model --only $job exited with $? (see model_tests.log)"
  done
  cat "$LOGS/model_bench.jsonl"
  cfg=$(mktemp "${TMPDIR:-/tmp}/maye-2b-config.XXXXXX.json")
  if [ "${GPU_BASELINE:-1}" != 0 ] && "$BENCH" --write-config "$cfg" && command -v python3 >/dev/null &&
     python3 -c "import torch, transformers; assert torch.cuda.is_available()" 2>/dev/null; then
    PYTHONUNBUFFERED=1 timeout 200 python3 "$here/gpu_model_baseline.py" --config "$cfg" --ours "$LOGS/model_bench.jsonl" \
      >"$LOGS/model_torch.jsonl" 2>>"$LOG" || echo "gpu_model.sh: the baseline exited with $? (see model_tests.log)"
    cat "$LOGS/model_torch.jsonl"
  fi
  rm -f "$cfg"
fi

# ----------------------------------------------------------------------------
# a checkpoint maye-update wrote on the GPU, in transformers

if [ $skip -eq 0 ]; then
  MAYE_STAGES=$( [ "$mode" = bundle ] && echo "$BIN" || echo "$BUILD/bin" )
  : >"$LOGS/checkpoint_parity.jsonl"
  for dtype in bf16 fp32; do
    DEVICE=cuda DTYPE=$dtype timeout 120 sh "$here/gpu_checkpoint_parity.sh" "$MAYE_STAGES" \
      >>"$LOGS/checkpoint_parity.jsonl" 2>>"$LOG"
    rc=$?
    case $rc in
      0) echo "PASS  checkpoint parity with transformers ($dtype)"; pass=$((pass+1)) ;;
      77) echo "SKIP  checkpoint parity with transformers ($dtype): no torch/transformers" ;;
      *) echo "FAIL  checkpoint parity with transformers ($dtype, exit $rc; model_tests.log)"; fail=$((fail+1))
         failed="$failed checkpoint_parity_$dtype" ;;
    esac
  done
  cat "$LOGS/checkpoint_parity.jsonl"
fi

# ----------------------------------------------------------------------------
# the kernel layer's tests

if [ "$NO_TESTS" != 1 ]; then
  gpu_run_tests "$LOG" grep $(echo "$TESTS" | tr ' ' '\n' | grep -v /test_cuda_model)
  echo "tests: $pass passed, $fail failed, $skip skipped"
fi

# ----------------------------------------------------------------------------
# memory checker on the model kernels' test, last, when the run is still short

elapsed=$(( $(date +%s) - start ))
if [ "${GPU_SANITIZE:-1}" != 0 ] && [ "$NO_TESTS" != 1 ] && [ $skip -eq 0 ] && [ $elapsed -lt 170 ] &&
   command -v compute-sanitizer >/dev/null; then
  t=$(echo "$TESTS" | tr ' ' '\n' | grep "/test_cuda_model_kernels\$" | head -n 1)
  if [ -n "$t" ]; then
    echo "==== memcheck test_cuda_model_kernels" >>"$LOG"
    timeout 60 compute-sanitizer --tool memcheck --error-exitcode 99 "$t" >"$LOGS/.sanitizer.log" 2>&1
    rc=$?
    grep "=========" "$LOGS/.sanitizer.log" | head -n 40 >>"$LOG"
    tail -n 3 "$LOGS/.sanitizer.log" >>"$LOG"
    rm -f "$LOGS/.sanitizer.log"
    case $rc in
      0) echo "SANITIZER  test_cuda_model_kernels: memcheck clean" ;;
      124) echo "SANITIZER  test_cuda_model_kernels: timed out after 60 s (not a failure)" ;;
      *) echo "SANITIZER  test_cuda_model_kernels: memcheck reported errors (exit $rc; model_tests.log)"
         fail=$((fail+1)); failed="$failed memcheck" ;;
    esac
  fi
fi

echo "gpu_model.sh: $pass passed, $fail failed, $skip skipped in $(( $(date +%s) - start )) s; logs in $LOGS"
[ $fail -eq 0 ] || { echo "failed:$failed"; exit 1; }
