#!/bin/sh
# Nsight Compute on the kernels that bound the update step and the rollout: one profiled launch each of the
# prefill attention (the 32-row-warp kernel and the 16-row one), the two flash-style backward kernels, the
# split-K decode attention and the log-prob fold, taken from `gpu_kernels --only <benchmark>` (the third
# launch, after the warm-ups): speed of light, occupancy, launch statistics, warp stall reasons, memory and
# compute workload. For finding what limits a kernel; gpu.sh runs it last when GPU_NCU=1 (about a minute).
#
#   sh bench/gpu_ncu.sh path/to/gpu_kernels [OUT]    report in OUT (default ncu.txt); exit 77 without ncu
set -u
bin=${1:?usage: sh bench/gpu_ncu.sh path/to/gpu_kernels [OUT]}
out=${2:-ncu.txt}
ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1)
[ -n "$ncu" ] || { echo "gpu_ncu.sh: no ncu on this machine"; exit 77; }
: >"$out"
status=0
# kernels by a regex on the demangled name ("void attn_mma_wide_kernel<(int)128, (int)4>(...)"; '.' for the
# parentheses and the space): the 4-warp wide prefill kernel at D 128 (the default), and the 16-row one
for job in 'prefill:attn_mma_wide_kernel<.int.128,..int.4>' prefill:attn_mma_kernel backward:attn_bwd_dkv_mma_kernel \
           backward:attn_bwd_dq_mma_kernel decode:attn_decode_kernel logprobs:logprobs_fold_kernel; do
  bench=${job%%:*} kernel=${job#*:}
  echo "==== $kernel (gpu_kernels --only $bench)" >>"$out"
  timeout 90 "$ncu" --kernel-name-base demangled -k "regex:$kernel" --launch-skip 2 --launch-count 1 \
    --section SpeedOfLight \
    --section Occupancy --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis \
    --section ComputeWorkloadAnalysis --section SchedulerStats "$bin" --only "$bench" >>"$out" 2>&1
  rc=$?
  echo "gpu_ncu.sh: $kernel: exit $rc"
  [ $rc -eq 0 ] || status=1
done
exit $status
