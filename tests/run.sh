#!/bin/sh
# Runs every test: compiled tests under $BUILD/tests and shell tests tests/**/test_*.sh.
# `tests/run.sh golden` runs only the reference-parity tests (names containing "golden").
# Exit codes of a test: 0 pass, 77 skip, anything else fail. Each test gets its own scratch directory.
BUILD=${BUILD:-build}
FILTER=${1:-}
export BUILD
export MAYE_BIN="$(cd "$BUILD/bin" 2>/dev/null && pwd)"
pass=0; fail=0; skip=0; failed=""
tmproot=$(mktemp -d "${TMPDIR:-/tmp}/maye-tests.XXXXXX")
list=$( (find "$BUILD/tests" -type f -name 'test_*' -perm -u+x 2>/dev/null; find tests -name 'test_*.sh') | sort)
for t in $list; do
  name=$(echo "$t" | sed -e "s|^$BUILD/tests/||" -e 's|^tests/||')
  case "$name" in *"$FILTER"*) ;; *) continue ;; esac
  dir="$tmproot/$(echo "$name" | tr '/' '_')"; mkdir -p "$dir"
  start=$(date +%s)
  case "$t" in
    *.sh) MAYE_TEST_TMP="$dir" sh "$t" >"$dir.log" 2>&1 ;;
    *) MAYE_TEST_TMP="$dir" "$t" >"$dir.log" 2>&1 ;;
  esac
  rc=$?
  secs=$(( $(date +%s) - start ))
  if [ $rc -eq 0 ]; then pass=$((pass+1)); echo "PASS  $name (${secs}s)"
  elif [ $rc -eq 77 ]; then skip=$((skip+1)); echo "SKIP  $name: $(tail -n 1 "$dir.log")"
  else fail=$((fail+1)); failed="$failed $name"; echo "FAIL  $name (exit $rc)"; sed 's/^/      /' "$dir.log" | tail -n 40
  fi
done
rm -rf "$tmproot"
echo "tests: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ] || { echo "failed:$failed"; exit 1; }
