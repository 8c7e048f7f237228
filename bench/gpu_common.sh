# What bench/gpu.sh and bench/gpu_model.sh share, sourced by them with PROG set to the script's name: their
# options, a bundle's unpacking and environment, CUDA's libraries on LD_LIBRARY_PATH, and the test runner
# with its counts (pass, fail, skip and the names in failed).
pass=0; fail=0; skip=0; failed=""

# gpu_options "$@": --no-build or --bundle DIR; sets mode (build, prebuilt or bundle) and bundle.
gpu_options() {
  mode=build
  bundle=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --no-build) mode=prebuilt ;;
      --bundle) mode=bundle; bundle=${2:?--bundle needs a directory}; shift ;;
      *) echo "usage: sh bench/$PROG [--no-build | --bundle DIR]" >&2; exit 2 ;;
    esac
    shift
  done
}

# gpu_bundle_env: a bundle given as its .tar.gz is unpacked into a scratch directory (removed on exit) and
# bundle names that; then the bundle's libraries go first on LD_LIBRARY_PATH and its fixtures serve as
# $MAYE_FIXTURES unless that is set. Nothing outside bundle mode.
gpu_bundle_env() {
  [ "$mode" = bundle ] || return 0
  if [ -f "$bundle" ]; then
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/gpu-bundle.XXXXXX")
    trap 'rm -rf "$scratch"' EXIT
    tar xzf "$bundle" -C "$scratch" || { echo "$PROG: cannot unpack $bundle"; exit 1; }
    bundle="$scratch/gpu-bundle"
  fi
  LD_LIBRARY_PATH="$(cd "$bundle/lib" && pwd)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  if [ -z "${MAYE_FIXTURES:-}" ] && [ -d "$bundle/fixtures" ]; then MAYE_FIXTURES=$(cd "$bundle/fixtures" && pwd); export MAYE_FIXTURES; fi
}

# gpu_cuda_libs: CUDA's own libraries on LD_LIBRARY_PATH (exported): the toolkit next to nvcc, else the pip
# wheels PyTorch brought.
gpu_cuda_libs() {
  nvcc_path=$(command -v nvcc 2>/dev/null || true)
  for cuda_lib_dir in ${nvcc_path:+$(dirname "$(dirname "$nvcc_path")")/lib64} /usr/local/cuda/lib64; do
    [ -d "$cuda_lib_dir" ] && LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$cuda_lib_dir"
  done
  if ! ldconfig -p 2>/dev/null | grep -q libcublasLt.so.13 && command -v python3 >/dev/null; then
    wheel_libs=$(python3 -c "import nvidia.cublas, os; print(os.path.join(list(nvidia.cublas.__path__)[0], 'lib'))" 2>/dev/null || true)
    [ -n "$wheel_libs" ] && LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$wheel_libs"
  fi
  export LD_LIBRARY_PATH
}

# gpu_run_tests LOG SHOW TEST...: runs each test binary (150 s at most) with its output appended to LOG and
# prints PASS, SKIP (exit 77) or FAIL with the failure's lines: SHOW tail = the last 40, grep = the first 40
# that name FAIL, fault or error.
gpu_run_tests() {
  log=$1; show=$2; shift 2
  for t in "$@"; do
    name=$(basename "$t")
    t0=$(date +%s)
    echo "==== $name" >>"$log"
    timeout 150 "$t" >"$LOGS/.$name.log" 2>&1
    rc=$?
    [ $rc -eq 127 ] && ldd "$t" 2>&1 | grep "not found" >>"$LOGS/.$name.log" # a library the machine lacks
    cat "$LOGS/.$name.log" >>"$log"
    secs=$(( $(date +%s) - t0 ))
    if [ $rc -eq 0 ]; then pass=$((pass+1)); echo "PASS  $name (${secs}s)"
    elif [ $rc -eq 77 ]; then skip=$((skip+1)); echo "SKIP  $name: $(tail -n 1 "$LOGS/.$name.log")"
    else
      fail=$((fail+1)); failed="$failed $name"; echo "FAIL  $name (exit $rc, ${secs}s)"
      if [ "$show" = tail ]; then tail -n 40 "$LOGS/.$name.log"
      else grep -m 40 "FAIL\|fault\|error" "$LOGS/.$name.log"
      fi | sed 's/^/      /'
    fi
    rm -f "$LOGS/.$name.log"
  done
}
