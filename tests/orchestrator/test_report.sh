#!/bin/sh
# maye report end to end on synthetic run directories with known numbers (tests/data/report/gen_runs.sh):
# the accuracy table value by value (expected_table.md), the aggregated figure data, every figure file
# (skipped with a message when gnuplot is absent), the pages' references, byte-identical output for the
# same runs, a running run, and the errors (missing run, malformed line, missing field, no evaluations,
# wrong kind, gnuplot missing, usage).
set -e
M="$MAYE_BIN/maye"
D="$(pwd)/tests/data/report"
T=$MAYE_TEST_TMP
cd "$T"
fail() { echo "FAIL: $*"; exit 1; }

# expect_error RC NEEDLE COMMAND...: the command exits with RC and its stderr contains NEEDLE
expect_error() {
  want=$1 needle=$2; shift 2
  set +e; "$@" >out.txt 2>err.txt; rc=$?; set -e
  [ "$rc" -eq "$want" ] || { cat err.txt; fail "'$*' exited $rc, expected $want"; }
  grep -qF -- "$needle" err.txt || { cat err.txt; fail "'$*': stderr lacks '$needle'"; }
}

sh "$D/gen_runs.sh" runs
plots=""
if ! command -v gnuplot >/dev/null 2>&1; then
  echo "gnuplot is not installed: skipping the figure checks (the data and scripts are still checked)"
  plots="--no-plots"
fi

# ----------------------------------------------------------------------------
# the report

"$M" report runs/rl --sft runs/sft -o out1 $plots >stdout1.md 2>err1.txt || { cat err1.txt; fail "maye report failed"; }
cmp -s stdout1.md out1/report.md || fail "stdout differs from out1/report.md"

# the accuracy table, exactly
awk '/^## Accuracy/ { on = 1; next } on && /^\|/ { print; seen = 1; next } on && seen { exit }' out1/report.md >table.md
if ! diff "$D/expected_table.md" table.md >table.diff; then
  echo "expected (<) vs report.md (>):"; cat table.diff; fail "accuracy table"
fi
for cell in "43.50" "53.67 (+10.17)" "62.33 (+23.83)" "43.00 (-0.50)" "80.00 (+21.50)"; do
  grep -qF "<td class=\"n\">$cell</td>" out1/index.html || fail "index.html lacks the cell '$cell'"
done
grep -qF "3 RL runs (seeds 0, 1, 2), 1 SFT run (seed 0)." out1/report.md || fail "run summary"
row="| runs/rl/seed-1 | rl | 1 | done | 0x5eed0000c0ffee01 | 2026-11-26T07:00:01Z | 2 | 8 | 0..2 (3) |"
grep -qF "$row" out1/report.md || fail "runs table row of seed 1"

# aggregated series: training accuracy of epoch e (x = e + 1) is 0.25 + 0.05 * (4e + 1.5) + 0.01 * mean(s),
# std over seeds 0.01 * sqrt(2/3); seed 1's repeated step 3 (0.99 first) must not count
check_point() { # file block x mean std n
  awk -v blk="$2" -v x="$3" -v m="$4" -v sd="$5" -v n="$6" '
    /^# index / { b = $3 + 0 } /^#/ || NF == 0 { next }
    b == blk && $1 == x { found = 1; d1 = $2 - m; d2 = $3 - sd
      if (d1 < -1e-9 || d1 > 1e-9 || d2 < -1e-9 || d2 > 1e-9 || $4 != n) { print "got " $0; bad = 1 } }
    END { exit !(found && !bad) }' "$1" || fail "$1 block $2 at x=$3: want mean $4 std $5 runs $6"
}
check_point out1/data/train_accuracy.dat 0 1 0.335 0.008164965809 3
check_point out1/data/train_accuracy.dat 0 2 0.535 0.008164965809 3
check_point out1/data/response_length.dat 0 3 235 4.082482905 3
check_point out1/data/sft_loss.dat 0 7 1.3 0 1
# validation pass@1_t0.6, epoch 1: RL 0.60/0.62/0.64 (seed 0's first line, 0.99, is replaced), SFT 0.55,
# vanilla 0.535 over 4 runs
check_point out1/data/eval_validation_pass1_t0.6.dat 0 1 0.62 0.01632993162 3
check_point out1/data/eval_validation_pass1_t0.6.dat 1 1 0.55 0 1
check_point out1/data/eval_validation_pass1_t0.6.dat 2 2 0.535 0 4

# every figure: data, script, PNG and SVG, referenced by both pages
figures="train_accuracy response_length reflection_ratios reflection_words sft_loss"
for split in validation test; do
  for setting in pass8_t1.0 pass1_t0.6 pass1_t0.01; do figures="$figures eval_${split}_$setting"; done
done
n=0
for f in $figures; do
  n=$((n + 1))
  [ -s "out1/data/$f.dat" ] && [ -s "out1/data/$f.gp" ] || fail "missing data or script of $f"
  grep -qF "src=\"figures/$f.svg\"" out1/index.html || fail "index.html does not show figures/$f.svg"
  grep -qF "href=\"figures/$f.png\"" out1/index.html || fail "index.html does not link figures/$f.png"
  grep -qF "(figures/$f.png)" out1/report.md || fail "report.md does not show figures/$f.png"
  if [ -z "$plots" ]; then
    [ -s "out1/figures/$f.png" ] && [ -s "out1/figures/$f.svg" ] || fail "figure $f: PNG or SVG missing or empty"
    [ "$(head -c 4 "out1/figures/$f.png" | tail -c 3)" = "PNG" ] || fail "figures/$f.png is not a PNG"
    grep -q "<svg" "out1/figures/$f.svg" || fail "figures/$f.svg is not an SVG"
  fi
done
[ "$(ls out1/data | wc -l)" -eq $((2 * n)) ] || fail "out1/data holds other files than the $n figures' data and scripts"
[ -n "$plots" ] || [ "$(ls out1/figures | wc -l)" -eq $((2 * n)) ] || fail "out1/figures holds other files"

# same runs -> same files
"$M" report runs/rl --sft runs/sft -o out2 $plots >/dev/null 2>&1 || fail "second report failed"
diff -r out1 out2 >/dev/null || fail "two reports of the same runs differ"

# the kind comes from run.json too: an sft run given without --sft lands in the SFT rows
"$M" report runs/sft runs/rl -o out3 --no-plots >/dev/null 2>&1 || fail "report with the sft run first"
awk '/^## Accuracy/ { on = 1; next } on && /^\|/ { print; seen = 1; next } on && seen { exit }' out3/report.md >table3.md
diff "$D/expected_table.md" table3.md >/dev/null || fail "table differs when the SFT run is found by its kind"

# ----------------------------------------------------------------------------
# a running run: no train.jsonl yet, an unfinished last line

cp -r runs/sft live
sed -i 's/"done"/"running"/' live/run.json
rm live/metrics/train.jsonl
printf '{"epoch": 2, "split": "valid' >>live/metrics/eval.jsonl
"$M" report live -o out4 --no-plots >stdout4.md 2>err4.txt || { cat err4.txt; fail "report of a running run"; }
grep -qF "live is still running" stdout4.md || fail "report.md does not say the run is still running"
grep -qF "an unfinished last line was left out" stdout4.md || fail "the unfinished line is not mentioned"
grep -qF "live is still running" out4/index.html || fail "index.html does not say the run is still running"
grep -qF "the figures were not drawn (--no-plots)" out4/index.html || fail "index.html lacks the --no-plots note"
[ -d out4/figures ] || fail "--no-plots: no figures/ for the re-plot recipe (cd data && gnuplot -d NAME.gp) to write to"

# ----------------------------------------------------------------------------
# errors

expect_error 1 "run directory 'runs/nope' does not exist" "$M" report runs/nope -o e1
cp -r runs bad1
sed -i '3s/.*/{"step": 2, "epoch": 0, "accuracy": 0.5/' bad1/rl/seed-1/metrics/train.jsonl
expect_error 1 "bad1/rl/seed-1/metrics/train.jsonl:3: not a JSON object" "$M" report bad1/rl -o e2
cp -r runs bad2
sed -i '2s/, "accuracy": [0-9.]*//' bad2/sft/metrics/eval.jsonl
expect_error 1 "bad2/sft/metrics/eval.jsonl:2: field 'accuracy' is missing" "$M" report bad2/sft -o e3
cp -r runs bad3
sed -i '5s/"wait": [0-9]*, //' bad3/rl/seed-2/metrics/train.jsonl
expect_error 1 "bad3/rl/seed-2/metrics/train.jsonl:5: field 'reflection_words': field 'wait' is missing" \
  "$M" report bad3/rl -o e4
sed -i '7s/"epoch": 1/"epoch": 0/' bad3/rl/seed-1/metrics/train.jsonl
expect_error 1 "step 5 has epoch 0 but the earlier step 4 has epoch 1" "$M" report bad3/rl/seed-1 -o e4b
cp -r runs bad4
: >bad4/sft/metrics/eval.jsonl
expect_error 1 "no evaluation data" "$M" report bad4/sft -o e5
rm bad4/rl/seed-0/metrics/eval.jsonl
expect_error 1 "cannot open 'bad4/rl/seed-0/metrics/eval.jsonl'" "$M" report bad4/rl -o e6
expect_error 1 "given with --sft but its kind is \"rl\"" "$M" report runs/sft --sft runs/rl -o e7
expect_error 1 "is the same run as" "$M" report runs/rl runs/rl/seed-1 -o e8
expect_error 1 "is not a run directory" "$M" report runs -o e9
expect_error 1 "gnuplot not found" "$M" report runs/rl -o e10 --gnuplot /nonexistent/gnuplot
[ -s e10/report.md ] && [ -s e10/index.html ] && [ -s e10/data/train_accuracy.gp ] ||
  fail "without gnuplot the pages, data and scripts must still be written"
grep -qF "the figures were not drawn: gnuplot not found" e10/report.md || fail "report.md lacks the gnuplot note"
expect_error 2 "missing -o OUT" "$M" report runs/rl
expect_error 2 "unknown option '--bogus'" "$M" report runs/rl -o e11 --bogus
expect_error 2 "no run directory given" "$M" report -o e12
"$M" report --help | grep -qF "usage: maye report RUN_DIR..." || fail "--help"
echo ok
