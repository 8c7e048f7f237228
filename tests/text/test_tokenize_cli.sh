#!/bin/sh
# `maye tokenize` end to end with a small tokenizer.json written here: encode, decode (with and without
# special tokens), blank lines, --help, and errors naming the line (bad JSON, wrong field types, unknown
# ids, invalid UTF-8). With the fixtures, a round trip through the real Qwen2 tokenizer too.
set -u
maye="$MAYE_BIN/maye"
tmp="$MAYE_TEST_TMP"
fail=0
check() { # check NAME GOT WANT
  if [ "$2" != "$3" ]; then echo "FAIL: $1: got [$2] want [$3]"; fail=1; fi
}

cat >"$tmp/tok.json" <<'JSON'
{"version": "1.0",
 "added_tokens": [{"id": 17, "content": "<|im_end|>", "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": true}],
 "normalizer": {"type": "NFC"},
 "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
   {"type": "Split", "pattern": {"Regex": " ?\\p{L}+|\\s+"}, "behavior": "Isolated", "invert": false},
   {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}]},
 "post_processor": null,
 "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
 "model": {"type": "BPE", "dropout": null, "unk_token": null, "fuse_unk": false, "byte_fallback": false,
   "vocab": {"h": 0, "e": 1, "l": 2, "o": 3, "Ġ": 4, "w": 5, "r": 6, "d": 7, "he": 8, "ll": 9, "hell": 10,
             "hello": 11, "Ġw": 12, "or": 13, "Ġwor": 14, "Ġworl": 15, "Ġworld": 16},
   "merges": ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "Ġwor l", ["Ġworl", "d"]]}}
JSON

"$maye" tokenize --help >"$tmp/help" 2>&1; rc=$?
check "--help exit" "$rc" 0
grep -q "usage: maye tokenize" "$tmp/help" || { echo "FAIL: --help prints no usage"; fail=1; }

got=$(printf '{"text": "hello world"}\n\n{"text": "hello<|im_end|>"}\n{"text": ""}\n' | "$maye" tokenize --tokenizer "$tmp/tok.json")
check "encode" "$got" '{"ids": [11, 16]}
{"ids": [11, 17]}
{"ids": []}'

got=$(printf '{"ids": [11, 16, 17]}\n' | "$maye" tokenize --tokenizer "$tmp/tok.json" --decode)
check "decode" "$got" '{"text": "hello world<|im_end|>"}'
got=$(printf '{"ids": [11, 16, 17]}\n' | "$maye" tokenize --tokenizer "$tmp/tok.json" --decode --skip-special)
check "decode --skip-special" "$got" '{"text": "hello world"}'

# errors name the line; earlier lines are still written
expect_error() { # expect_error NAME INPUT NEEDLE [--decode]
  out=$(printf "$2" | "$maye" tokenize --tokenizer "$tmp/tok.json" $4 2>"$tmp/err"); rc=$?
  if [ $rc -eq 0 ]; then echo "FAIL: $1: exit 0"; fail=1; fi
  grep -qF -- "$3" "$tmp/err" || { echo "FAIL: $1: stderr lacks [$3]:"; cat "$tmp/err"; fail=1; }
}
expect_error "bad JSON" '{"text": "hello"}\n{"text": "hel\n' "stdin:2:" ""
expect_error "no text field" '{"txt": "hello"}\n' "stdin:1: expected an object with a field 'text'" ""
expect_error "text not a string" '{"text": 5}\n' "stdin:1: field 'text': expected a string" ""
expect_error "invalid UTF-8" '{"text": "a\377"}\n' "stdin:1:" ""
expect_error "unknown id" '{"ids": [11]}\n{"ids": [11, 99]}\n' "stdin:2: field 'ids': cannot decode: token id 99" "--decode"
expect_error "id not an integer" '{"ids": [1.5]}\n' "stdin:1: field 'ids'[0]: expected an integer" "--decode"
expect_error "ids not an array" '{"ids": "1 2"}\n' "stdin:1: field 'ids': expected an array" "--decode"
"$maye" tokenize </dev/null 2>/dev/null && { echo "FAIL: no --tokenizer accepted"; fail=1; }
echo '{"text": "x"}' | "$maye" tokenize --tokenizer "$tmp/missing.json" 2>"$tmp/err" && { echo "FAIL: missing file accepted"; fail=1; }
grep -qF "missing.json" "$tmp/err" || { echo "FAIL: missing file not named"; cat "$tmp/err"; fail=1; }

# round trip through the real tokenizer when the fixtures are there
fixtures=${MAYE_FIXTURES:-../shared/fixtures}
if [ -f "$fixtures/qwen2-tokenizer/tokenizer.json" ]; then
  line='{"text": "The answer is \\boxed{\\sqrt{3}}.\n\u4e2d\u6587 caf\u00e9 <|im_end|>"}'
  want='{"text": "The answer is \\boxed{\\sqrt{3}}.\n中文 café <|im_end|>"}'
  got=$(printf '%s\n' "$line" | "$maye" tokenize --tokenizer "$fixtures/qwen2-tokenizer/tokenizer.json" |
        "$maye" tokenize --tokenizer "$fixtures/qwen2-tokenizer/tokenizer.json" --decode)
  check "qwen2 round trip" "$got" "$want"
else
  echo "fixtures absent: skipped the Qwen2 round trip"
fi
exit $fail
