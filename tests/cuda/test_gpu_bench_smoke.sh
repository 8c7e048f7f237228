#!/bin/sh
# Every code path of the GPU benchmarks on tiny shapes (bench/gpu_kernels.cu --smoke, bench/gpu_model.cu --smoke: a
# tiny model) and the digest of their output (bench/gpu_digest.py, when python3 exists), so that a GPU window
# is not spent on a benchmark that fails before its first number. Runs where $BUILD/bench/gpu_model exists: the CUDA emulator's
# build (make CUDA_EMU=1, part of `make test`) or a CUDA build on a GPU; skipped elsewhere. Its numbers mean
# nothing.
set -u
T="$MAYE_TEST_TMP"
bin="$BUILD/bench/gpu_model"
[ -x "$bin" ] || { echo "no $bin (a CUDA or CUDA-emulator build makes it): skipped"; exit 77; }
"$bin" --smoke --prompts 2 --new 6 --steps 1 >"$T/model_bench.jsonl" 2>"$T/err.txt"
rc=$?
[ $rc -eq 77 ] && { tail -n 1 "$T/model_bench.jsonl"; exit 77; }
fail=0
if [ $rc -ne 0 ]; then echo "FAIL: gpu_model --smoke exited with $rc"; cat "$T/err.txt"; fail=1; fi
cat "$T/model_bench.jsonl"
"$BUILD/bench/gpu_kernels" --smoke >"$T/bench.jsonl" 2>"$T/err.txt"
rc=$?
if [ $rc -ne 0 ]; then echo "FAIL: gpu_kernels --smoke exited with $rc"; cat "$T/err.txt"; fail=1; fi
cat "$T/bench.jsonl"
for kind in copy gemm_peak gemm attention_prefill attention_backward attention_decode attention_decode_split \
    gemm_decode logprobs sampling rmsnorm silu_gated adamw; do
    grep -q "\"bench\": \"$kind\"" "$T/bench.jsonl" || { echo "FAIL: gpu_kernels --smoke printed no $kind line"; fail=1; }
done
grep -q '"error"' "$T/bench.jsonl" && { echo "FAIL: a gemm_decode rank failed"; fail=1; }

# one line of each kind the digest and the baseline read: count them
expect() { # expect N PATTERN WHAT
    n=$(grep -c -- "$2" "$T/model_bench.jsonl")
    [ "$n" -eq "$1" ] || { echo "FAIL: $3: $n lines match '$2', want $1"; fail=1; }
}
expect 1 '"bench": "copy"' "the copy ceiling"
expect 1 '"bench": "gemm_peak"' "the GEMM ceiling"
expect 1 '"bench": "model_init"' "the model"
expect 4 '"bench": "rollout"' "rollout results (full, short without and with the graph, 16-row warps)"
expect 1 '"graph": false' "the rollout without the CUDA graph"
expect 0 '"graph_failed"' "rollouts whose graph capture failed"
expect 4 '"bench": "update"' "update results (flash, GEMM attention backward, recomputation, 16-row warps)"
expect 2 '"prefill_warp_rows": 16' "the rollout and the update with the prefill attention in 16-row warps"
expect 1 '"attention_backward": "gemm"' "the update with the GEMM attention backward"
expect 1 '"recompute": true' "the update with recomputation"
expect 1 '"job": "rollout"' "the rollout's profile"
expect 1 '"job": "update"' "the update's profile"
expect 1 '"decode.attention"' "the rollout profile's decode attention"
expect 1 '"backward.attention_grad"' "the update profile's attention backward"

# the digest bench/gpu.sh prints last reads these lines without failing
if command -v python3 >/dev/null 2>&1; then
    if python3 bench/gpu_digest.py "$T" >"$T/digest.txt" 2>&1; then
        cat "$T/digest.txt"
        grep -q "decode" "$T/digest.txt" || { echo "FAIL: the digest shows no decode profile"; fail=1; }
    else
        echo "FAIL: bench/gpu_digest.py failed on the smoke output:"; cat "$T/digest.txt"; fail=1
    fi
fi
exit $fail
