#!/bin/sh
# maye judge: verdicts and normalised forms as JSON lines, ids copied, --tolerance, malformed lines named.
set -e
T=$MAYE_TEST_TMP
cat > "$T/in.jsonl" <<'JSON'
{"id": 7, "response": "so the area is $\\boxed{12 \\text{ cm}^2}$.", "answer": "12"}

{"response": "\\boxed{\\dfrac{1}{2}}", "answer": "0.505"}
{"response": "no box, 5", "answer": 5}
JSON
"$MAYE_BIN/maye" judge "$T/in.jsonl" > "$T/out.jsonl"
[ "$(wc -l < "$T/out.jsonl")" -eq 3 ] || { cat "$T/out.jsonl"; echo "expected 3 lines"; exit 1; }
sed -n 1p "$T/out.jsonl" | grep -q '"id":7,"correct":true,"found":true,"extracted":"12 \\\\text{ cm}^2","normalized_response":"12","normalized_answer":"12"' \
  || { sed -n 1p "$T/out.jsonl"; echo "line 1"; exit 1; }
sed -n 2p "$T/out.jsonl" | grep -q '"correct":true' || { echo "line 2 (0.5 vs 0.505 at 1e-2)"; exit 1; }
sed -n 3p "$T/out.jsonl" | grep -q '"correct":false,"found":false' || { echo "line 3"; exit 1; }
# a tighter tolerance turns line 2 around; stdin works
"$MAYE_BIN/maye" judge --tolerance 1e-3 < "$T/in.jsonl" | sed -n 2p | grep -q '"correct":false' \
  || { echo "--tolerance 1e-3"; exit 1; }
# malformed lines name the line and the field
printf '{"response": "\\\\boxed{1}", "answer": "1"}\n{"response": 3, "answer": "1"}\n' > "$T/bad.jsonl"
if "$MAYE_BIN/maye" judge "$T/bad.jsonl" > "$T/bad.out" 2> "$T/err"; then echo "bad line accepted"; exit 1; fi
grep -q "bad.jsonl:2: field 'response' is missing or not a string" "$T/err" || { cat "$T/err"; exit 1; }
[ "$(wc -l < "$T/bad.out")" -eq 1 ] || { echo "the good line before the bad one should be printed"; exit 1; }
printf 'not json\n' | { if "$MAYE_BIN/maye" judge 2> "$T/err"; then echo "junk accepted"; exit 1; fi; }
grep -q "stdin:1: not a JSON object" "$T/err" || { cat "$T/err"; exit 1; }
if "$MAYE_BIN/maye" judge --tolerance -1 < /dev/null 2> "$T/err"; then echo "negative tolerance accepted"; exit 1; fi
echo ok
