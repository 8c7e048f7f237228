# maye preprocess end to end: --help, a 30 x 20 PNG scaled up by smart_resize to 56 x 84 (grid 4 x 6, 24
# patches of 1176 values), --min-pixels/--max-pixels, --model and --alpha, and clear errors for a missing
# image, a bad preprocessor_config.json, a bad option value, an unknown option and a missing -o.
set -u
maye="$MAYE_BIN/maye"
tmp="$MAYE_TEST_TMP"
fail=0
check() { # check DESCRIPTION COMMAND...: the command must succeed
  desc=$1; shift
  if ! "$@"; then echo "FAIL: $desc"; fail=1; fi
}
header() { # the JSON header of a safetensors file
  n=$(od -An -tu8 -N8 "$1" | tr -d ' ')
  tail -c +9 "$1" | head -c "$n"
}

# 30 x 20 RGB gradient (every row the same)
echo 'iVBORw0KGgoAAAANSUhEUgAAAB4AAAAUCAIAAAAVyRqTAAAAeklEQVR42mNg+N/A8b1B4H2DxPMGhfsNGtcbDM43WBxvcNjf4LG9IWB9Q8TyhoT5DRnTGwr6GyraGxrqGzrKGybkN8xIb1gQ37AivGGDf8MO94YD9g0nzBsu6DfcUG94IN/wQryBiYFmYNToUaNHjR41etToUaNpZzQAu44tCTkVzgkAAAAASUVORK5CYII=' \
  | base64 -d > "$tmp/img.png"

"$maye" preprocess --help > "$tmp/help.txt"; rc=$?
check "--help exits 0 (got $rc)" test $rc -eq 0
check "--help prints the usage" grep -q "usage: maye preprocess IMAGE" "$tmp/help.txt"
check "maye --help lists preprocess" sh -c "'$maye' --help | grep -q preprocess"

check "preprocess img.png" "$maye" preprocess "$tmp/img.png" -o "$tmp/out.safetensors"
h=$(header "$tmp/out.safetensors")
echo "header: $h"
check "pixel_values [24, 1176] F32" sh -c "echo '$h' | grep -q '\"pixel_values\":{\"dtype\":\"F32\",\"shape\":\[24,1176\]'"
check "image_grid_thw [1, 3] I64" sh -c "echo '$h' | grep -q '\"image_grid_thw\":{\"dtype\":\"I64\",\"shape\":\[1,3\]'"
size=$(wc -c < "$tmp/out.safetensors")
check "file holds the data (24*1176*4 + 24 bytes + header)" test "$size" -ge $((24 * 1176 * 4 + 24))

# --max-pixels lowered (and --min-pixels with it): 20 x 30 rounds to 28 x 28, grid 2 x 2
check "--min/--max-pixels" "$maye" preprocess "$tmp/img.png" --min-pixels 100 --max-pixels 1000 -o "$tmp/small.safetensors"
check "pixel_values [4, 1176] with lowered bounds" sh -c "echo '$(header "$tmp/small.safetensors")' | grep -q '\[4,1176\]'"

# --model DIR with a preprocessor_config.json in the newer "size" form: min 50176 -> 196 x 280 (grid 14 x 20)
mkdir -p "$tmp/model"
echo '{"size": {"shortest_edge": 50176, "longest_edge": 1003520}, "patch_size": 14, "merge_size": 2}' \
  > "$tmp/model/preprocessor_config.json"
check "--model DIR" "$maye" preprocess "$tmp/img.png" --model "$tmp/model" -o "$tmp/model.safetensors"
check "pixel_values [280, 1176] with the model's min_pixels" \
  sh -c "echo '$(header "$tmp/model.safetensors")' | grep -q '\[280,1176\]'"

# --alpha white is accepted (the test image is opaque, so the values are the same)
check "--alpha white" "$maye" preprocess "$tmp/img.png" --alpha white -o "$tmp/white.safetensors"
tail -c $((24 * 1176 * 4)) "$tmp/out.safetensors" > "$tmp/drop.bin"
tail -c $((24 * 1176 * 4)) "$tmp/white.safetensors" > "$tmp/white.bin"
check "--alpha white: same pixel_values as drop on an opaque image" cmp -s "$tmp/drop.bin" "$tmp/white.bin"

# errors
"$maye" preprocess "$tmp/no-such.png" -o "$tmp/x.safetensors" 2> "$tmp/err.txt"; rc=$?
cat "$tmp/err.txt"
check "missing image exits 1 (got $rc)" test $rc -eq 1
check "missing image: message names the file" grep -q "no-such.png" "$tmp/err.txt"
check "missing image: no output written" test ! -e "$tmp/x.safetensors"

echo '{"min_pixels": "lots"}' > "$tmp/model/preprocessor_config.json"
"$maye" preprocess "$tmp/img.png" --model "$tmp/model" -o "$tmp/x.safetensors" 2> "$tmp/err.txt"; rc=$?
cat "$tmp/err.txt"
check "bad config exits 1 (got $rc)" test $rc -eq 1
check "bad config: message names file and key" grep -q "preprocessor_config.json: key 'min_pixels'" "$tmp/err.txt"

"$maye" preprocess "$tmp/img.png" --min-pixels 12x -o "$tmp/x.safetensors" 2> "$tmp/err.txt"; rc=$?
check "bad --min-pixels exits 1 (got $rc)" test $rc -eq 1
check "bad --min-pixels: message names the option" grep -q -- "--min-pixels" "$tmp/err.txt"

"$maye" preprocess "$tmp/img.png" --frobnicate -o "$tmp/x.safetensors" 2> /dev/null; rc=$?
check "unknown option exits 2 (got $rc)" test $rc -eq 2
"$maye" preprocess "$tmp/img.png" --alpha black -o "$tmp/x.safetensors" 2> /dev/null; rc=$?
check "--alpha black exits 2 (got $rc)" test $rc -eq 2
"$maye" preprocess "$tmp/img.png" 2> /dev/null; rc=$?
check "missing -o exits 2 (got $rc)" test $rc -eq 2

exit $fail
