# Shell helpers of the command-line tests, sourced from the repo root (`. tests/support/cli.sh`) after
# setting T, the test's scratch directory. Failed checks print a FAIL line and set fail=1 (0 here).
fail=0
check() { # check DESCRIPTION COMMAND... : the command succeeds
    what=$1; shift
    if "$@"; then :; else echo "FAIL: $what"; fail=1; fi
}
expect_error() { # expect_error SUBSTRING COMMAND... : the command fails and stderr contains SUBSTRING
    want=$1; shift
    if "$@" >"$T/out.txt" 2>"$T/err.txt"; then
        echo "FAIL: '$*' succeeded, expected an error containing '$want'"; fail=1
    elif ! grep -qF -- "$want" "$T/err.txt"; then
        echo "FAIL: '$*': error lacks '$want':"; cat "$T/err.txt"; fail=1
    fi
}

# le64 N: a non-negative integer as 8 little-endian bytes (a u64 / i64)
le64() {
    n=$1; i=0
    while [ $i -lt 8 ]; do printf "\\$(printf %03o $((n % 256)))"; n=$((n / 256)); i=$((i + 1)); done
}
# mkst OUT HEADER_JSON DATA_FILE: a safetensors file
mkst() {
    n=$(printf %s "$2" | wc -c | tr -d ' ')
    { le64 "$n"; printf %s "$2"; cat "$3"; } >"$1"
}
