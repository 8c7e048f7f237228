#!/bin/sh
# The GPU check in one command: builds the CUDA layer and the stages with their CUDA backend (make CUDA=1
# gpu-bins), runs every CUDA test (tests/cuda, against the CPU reference; test_stages_cuda runs the four
# stages with model.device=cuda against model.device=cpu), the kernel benchmarks (bench/gpu_kernels.cu), the
# PyTorch baseline (bench/gpu_torch_baseline.py) when torch sees the GPU, then bench/gpu_model.sh without
# its tests (the 2B-shaped rollout and update against transformers / PyTorch, and a GPU-trained checkpoint
# in transformers; GPU_MODEL=0 skips it), and last compute-sanitizer's memcheck on the attention, model-kernel
# and kernel tests (the forward and backward attention kernels, the GEMMs and elementwise kernels) when the tool
# exists, and a digest of the results (bench/gpu_digest.py: targets, attention kernels, where the GPU time goes).
# About 3.5 minutes on an H100 without the memcheck (measured 193 s); 2.5 minutes on an H200 with it (148 s,
# the memcheck up to 3 minutes elsewhere; GPU_SANITIZE=0 skips it). GPU_NCU=1 adds Nsight Compute reports of
# the attention and log-prob kernels (bench/gpu_ncu.sh, about a minute).
#
#   sh bench/gpu.sh                    build in $BUILD (default build) with make CUDA=1, then run
#   sh bench/gpu.sh --no-build         run the binaries already in $BUILD
#   sh bench/gpu.sh --bundle B         run a bundle made elsewhere by `make CUDA=1 gpu-bundle`: the directory
#                                      (B/bin, B/lib) or its .tar.gz
#
# Logs go to $OUT when set (device.txt, tests.log, sanitizer.log, bench.jsonl, torch.jsonl, ncu.txt, and
# gpu_model.sh's model_tests.log, model_bench.jsonl, model_torch.jsonl, checkpoint_parity.jsonl), else to
# $BUILD/gpu-logs. Exit status: 0 when every test passed (or skipped without a GPU),
# 1 otherwise. GPU_SANITIZE=0 skips the sanitizer.
set -u
BUILD=${BUILD:-build}
PROG=gpu.sh
. "$(dirname "$0")/gpu_common.sh"
gpu_options "$@"
LOGS=${OUT:-$BUILD/gpu-logs}
mkdir -p "$LOGS"
start=$(date +%s)

# ----------------------------------------------------------------------------
# binaries

if [ "$mode" = build ]; then
  jobs=$(nproc 2>/dev/null || echo 4)
  if ! make BUILD="$BUILD" CUDA=1 -j"$jobs" gpu-bins >"$LOGS/tests.log" 2>&1; then
    if [ -d "$BUILD/gpu-bundle/bin" ]; then
      echo "gpu.sh: make CUDA=1 gpu-bins failed here (see tests.log); using the bundle $BUILD/gpu-bundle"
      mode=bundle; bundle="$BUILD/gpu-bundle"
    else
      tail -n 30 "$LOGS/tests.log"; echo "gpu.sh: build failed"; exit 1
    fi
  fi
fi
gpu_bundle_env
if [ "$mode" = bundle ]; then
  TESTS=$(ls "$bundle"/bin/test_* 2>/dev/null)
  BENCH="$bundle/bin/gpu_kernels"
else
  TESTS=$(ls "$BUILD"/tests/cuda/test_* 2>/dev/null)
  BENCH="$BUILD/bench/gpu_kernels"
fi
gpu_cuda_libs
[ -n "$TESTS" ] || { echo "gpu.sh: no CUDA test binaries found"; exit 1; }

{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv 2>&1 || echo "no nvidia-smi"
  echo "mode: $mode ${bundle}"; } >"$LOGS/device.txt"
echo "gpu.sh: $(sed -n 2p "$LOGS/device.txt")"

# ----------------------------------------------------------------------------
# tests

gpu_run_tests "$LOGS/tests.log" tail $TESTS
echo "tests: $pass passed, $fail failed, $skip skipped"

# ----------------------------------------------------------------------------
# benchmarks

if [ $skip -eq 0 ] && [ -x "$BENCH" ]; then
  timeout 180 "$BENCH" >"$LOGS/bench.jsonl" 2>>"$LOGS/tests.log" || echo "gpu.sh: gpu_kernels exited with $? (see tests.log)"
  cat "$LOGS/bench.jsonl"
fi
here=$(cd "$(dirname "$0")" && pwd)
if [ $skip -eq 0 ] && command -v python3 >/dev/null && python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
  PYTHONUNBUFFERED=1 timeout 120 python3 "$here/gpu_torch_baseline.py" >"$LOGS/torch.jsonl" 2>>"$LOGS/tests.log" ||
    echo "gpu.sh: the torch baseline exited with $? (see tests.log)"
  cat "$LOGS/torch.jsonl"
fi

# ----------------------------------------------------------------------------
# the model: end-to-end benchmarks and their baseline, the checkpoint check (its tests ran above)

if [ "${GPU_MODEL:-1}" != 0 ] && [ $skip -eq 0 ]; then
  if [ "$mode" = bundle ]; then model_args="--bundle $bundle"; else model_args="--no-build"; fi
  OUT="$LOGS" BUILD="$BUILD" GPU_MODEL_NO_TESTS=1 sh "$here/gpu_model.sh" $model_args ||
    { fail=$((fail+1)); failed="$failed gpu_model.sh"; }
fi

# ----------------------------------------------------------------------------
# memory checker, last (bad addresses and reads of unwritten device memory show up here, not in the results)

if [ "${GPU_SANITIZE:-1}" != 0 ] && [ $skip -eq 0 ] && command -v compute-sanitizer >/dev/null; then
  : >"$LOGS/sanitizer.log"
  for name in test_cuda_attention test_cuda_model_kernels test_cuda_kernels; do # attention; backward; GEMMs, norms
    t=$(echo "$TESTS" | tr ' ' '\n' | grep "/$name\$" | head -n 1)
    [ -n "$t" ] || continue
    echo "==== memcheck $name" >>"$LOGS/sanitizer.log"
    timeout 100 compute-sanitizer --tool memcheck --error-exitcode 99 "$t" >>"$LOGS/sanitizer.log" 2>&1
    rc=$?
    case $rc in
      0) echo "SANITIZER  $name: memcheck clean" ;;
      124) echo "SANITIZER  $name: timed out after 100 s (not a failure)" ;;
      *) echo "SANITIZER  $name: memcheck reported errors (exit $rc; sanitizer.log)"
         fail=$((fail+1)); failed="$failed memcheck_$name"; grep -m 10 "=========" "$LOGS/sanitizer.log" | sed 's/^/      /' ;;
    esac
  done
fi

# ----------------------------------------------------------------------------
# Nsight Compute on the attention and log-prob kernels (GPU_NCU=1; bench/gpu_ncu.sh), into ncu.txt

if [ "${GPU_NCU:-0}" = 1 ] && [ $skip -eq 0 ] && [ -x "$BENCH" ]; then
  sh "$here/gpu_ncu.sh" "$BENCH" "$LOGS/ncu.txt" || echo "gpu.sh: gpu_ncu.sh exited with $? (see ncu.txt)"
fi

# ----------------------------------------------------------------------------
# digest: the comparisons, attention kernels and profiles in a few lines

if command -v python3 >/dev/null; then
  python3 "$here/gpu_digest.py" "$LOGS" || echo "gpu.sh: the digest exited with $?"
fi

echo "gpu.sh: $pass passed, $fail failed, $skip skipped in $(( $(date +%s) - start )) s; logs in $LOGS"
[ $fail -eq 0 ] || { echo "failed:$failed"; exit 1; }
