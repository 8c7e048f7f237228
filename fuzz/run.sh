#!/bin/sh
# Runs one fuzz target for a while on its corpus: fuzz/run.sh <name> [seconds] [extra libFuzzer flags].
# New inputs and crash reproducers go to fuzz/out/<name>/ (ignored by git); the seed corpus lives in
# fuzz/corpus/<name>.
set -e
BUILD=${BUILD:-build}
name=$1; secs=${2:-60}; shift 2 || shift $#
mkdir -p "fuzz/out/$name" "fuzz/corpus/$name"
exec "$BUILD/fuzz/$name" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -artifact_prefix="fuzz/out/$name/" \
  "$@" "fuzz/out/$name" "fuzz/corpus/$name"
