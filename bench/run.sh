#!/bin/sh
# Runs every CPU benchmark built under $BUILD/bench and prints their JSON lines; a benchmark's own
# progress goes to stderr. BENCH=<name> runs only the benchmarks whose name contains it.
BUILD=${BUILD:-build}
status=0
for b in $(find "$BUILD/bench" -maxdepth 1 -type f -perm -u+x 2>/dev/null | sort); do
  case "$(basename "$b")" in *"${BENCH:-}"*) ;; *) continue ;; esac
  echo "bench: $(basename "$b")" >&2
  "$b" || { echo "bench: $(basename "$b") failed" >&2; status=1; }
done
exit $status
