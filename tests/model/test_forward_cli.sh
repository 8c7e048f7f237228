#!/bin/sh
# maye init / maye forward end to end: a random checkpoint from a config, forwards of text-only and image
# inputs (made here with printf), --no-logits, a reference fixture read with --prefix, and clear errors for
# a missing tensor, a wrong shape, mismatched image tokens, bad options.
set -u
MAYE="$MAYE_BIN/maye"
T="${MAYE_TEST_TMP:-/tmp}/forward_cli.$$"
mkdir -p "$T"
. tests/support/cli.sh
size() { wc -c <"$1" | tr -d ' '; }

cat >"$T/model.json" <<'JSON'
{"architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
 "vocab_size": 97, "hidden_size": 24, "intermediate_size": 40, "num_hidden_layers": 2,
 "num_attention_heads": 3, "num_key_value_heads": 1, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
 "hidden_act": "silu", "tie_word_embeddings": true, "initializer_range": 0.05,
 "rope_scaling": {"type": "mrope", "mrope_section": [2, 1, 1]},
 "image_token_id": 90, "video_token_id": 91, "vision_start_token_id": 88, "vision_end_token_id": 89,
 "vision_config": {"depth": 2, "hidden_size": 16, "intermediate_size": 20, "num_heads": 2, "in_chans": 3,
   "out_hidden_size": 24, "patch_size": 2, "spatial_merge_size": 2, "temporal_patch_size": 1,
   "window_size": 8, "fullatt_block_indexes": [1], "hidden_act": "silu"}}
JSON

check "maye init --help" "$MAYE" init --help >/dev/null
check "maye forward --help" "$MAYE" forward --help >/dev/null
check "maye init" "$MAYE" init --config "$T/model.json" -o "$T/m" --seed 3
check "checkpoint files" test -s "$T/m/config.json" -a -s "$T/m/model.safetensors"
check "maye init bf16" "$MAYE" init --config "$T/model.json" -o "$T/m16" --seed 3 --dtype bf16
check "bf16 file is smaller" test "$(size "$T/m16/model.safetensors")" -lt "$(size "$T/m/model.safetensors")"

# text only: input_ids [5]
: >"$T/ids.bin"
for id in 1 2 3 4 5; do le64 $id >>"$T/ids.bin"; done
mkst "$T/text.st" '{"input_ids":{"dtype":"I64","shape":[5],"data_offsets":[0,40]}}' "$T/ids.bin"
check "forward text" "$MAYE" forward --model "$T/m" --in "$T/text.st" --out "$T/text_out.st" --temperature 0.7
check "forward text --no-logits" "$MAYE" forward --model "$T/m" --in "$T/text.st" --out "$T/text_nol.st" --no-logits
check "forward bf16 checkpoint" "$MAYE" forward --model "$T/m16" --in "$T/text.st" --out "$T/text16.st"
full=$(size "$T/text_out.st"); nol=$(size "$T/text_nol.st")
check "--no-logits drops the [5, 97] logits ($full vs $nol bytes)" test $((full - nol)) -ge $((5 * 97 * 4))
check "outputs name their tensors" grep -q token_logprobs "$T/text_out.st"

# one image of grid [1, 4, 4] (16 patches of 3*1*2*2 = 12 values -> 4 merged tokens) between text
: >"$T/img.bin"
for id in 1 88 90 90 90 90 89 7; do le64 $id >>"$T/img.bin"; done
head -c $((16 * 12 * 4)) /dev/zero >>"$T/img.bin"
for v in 1 4 4; do le64 $v >>"$T/img.bin"; done
H='{"input_ids":{"dtype":"I64","shape":[8],"data_offsets":[0,64]},"pixel_values":{"dtype":"F32","shape":[16,12],"data_offsets":[64,832]},"image_grid_thw":{"dtype":"I64","shape":[1,3],"data_offsets":[832,856]}}'
mkst "$T/img.st" "$H" "$T/img.bin"
check "forward with an image" "$MAYE" forward --model "$T/m" --in "$T/img.st" --out "$T/img_out.st"
check "image_embeds written" grep -q image_embeds "$T/img_out.st"

# three image-pad tokens for a grid that needs four
: >"$T/bad.bin"
for id in 1 88 90 90 90 89 7 7; do le64 $id >>"$T/bad.bin"; done
head -c $((16 * 12 * 4)) /dev/zero >>"$T/bad.bin"
for v in 1 4 4; do le64 $v >>"$T/bad.bin"; done
mkst "$T/bad.st" "$H" "$T/bad.bin"
expect_error "needs 4 image-pad tokens but the sequence has 3" "$MAYE" forward --model "$T/m" --in "$T/bad.st" --out "$T/x.st"
# a grid that does not match the patch rows
mkst "$T/bad2.st" "$(echo "$H" | sed 's/"shape":\[16,12\],"data_offsets":\[64,832\]/"shape":[8,12],"data_offsets":[64,448]/')" "$T/img.bin"
expect_error "pixel_values has 8 patch rows but image_grid_thw describes 16" "$MAYE" forward --model "$T/m" --in "$T/bad2.st" --out "$T/x.st"

# checkpoint/config mismatches: a missing tensor, a wrong shape
mkdir -p "$T/deeper" "$T/wider"
ln -s "$T/m/model.safetensors" "$T/deeper/model.safetensors"
ln -s "$T/m/model.safetensors" "$T/wider/model.safetensors"
sed 's/"num_hidden_layers": 2/"num_hidden_layers": 3/' "$T/model.json" >"$T/deeper/config.json"
sed 's/"intermediate_size": 40/"intermediate_size": 44/' "$T/model.json" >"$T/wider/config.json"
expect_error "missing tensor 'model.layers.2.input_layernorm.weight'" "$MAYE" forward --model "$T/deeper" --in "$T/text.st" --out "$T/x.st"
expect_error "tensor 'model.layers.0.mlp.gate_proj.weight' has shape [40, 24], expected [44, 24]" "$MAYE" forward --model "$T/wider" --in "$T/text.st" --out "$T/x.st"
expect_error "model.safetensors" "$MAYE" forward --model "$T/wider" --in "$T/text.st" --out "$T/x.st"
expect_error "missing tensor 'input_ids'" "$MAYE" forward --model "$T/m" --in "$T/m/model.safetensors" --out "$T/x.st"
expect_error "unknown argument '--bogus'" "$MAYE" forward --bogus
expect_error "--dtype 'f8'" "$MAYE" init --config "$T/model.json" -o "$T/z" --dtype f8
echo '{"model_type": "llama", "hidden_size": 8}' >"$T/llama.json"
expect_error "unsupported architecture" "$MAYE" init --config "$T/llama.json" -o "$T/z"

# a reference fixture, read in place with --prefix
FIX="${MAYE_FIXTURES:-../shared/fixtures}/golden/tiny-qwen2-vl"
if [ -f "$FIX/expected.safetensors" ]; then
    check "forward on a fixture sample" "$MAYE" forward --model "$FIX" --in "$FIX/expected.safetensors" --prefix s0. --out "$T/fx.st" --no-logits
fi

rm -rf "$T"
[ $fail -eq 0 ] && echo "forward/init CLI: ok"
exit $fail
