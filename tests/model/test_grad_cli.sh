#!/bin/sh
# maye grad end to end: the gradients of a random checkpoint on a text-only and an image input (made here
# with printf), every trained part or a subset (--train), bit-identical with --recompute, the mean log-prob
# as the loss; clear errors for bad options and a one-token sequence. The values themselves are checked by the
# backward's tests (finite differences, the golden gradients) and against torch by bench/hf_grad_diff.py.
set -u
MAYE="$MAYE_BIN/maye"
T="${MAYE_TEST_TMP:-/tmp}/grad_cli.$$"
mkdir -p "$T"
. tests/support/cli.sh

cat >"$T/model.json" <<'JSON'
{"architectures": ["Qwen2VLForConditionalGeneration"], "model_type": "qwen2_vl",
 "vocab_size": 97, "hidden_size": 32, "intermediate_size": 40, "num_hidden_layers": 2,
 "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
 "hidden_act": "silu", "tie_word_embeddings": false, "initializer_range": 0.05,
 "rope_scaling": {"type": "mrope", "mrope_section": [2, 1, 1]},
 "image_token_id": 90, "video_token_id": 91, "vision_start_token_id": 88, "vision_end_token_id": 89,
 "vision_config": {"depth": 2, "embed_dim": 16, "mlp_ratio": 2, "num_heads": 2, "in_chans": 3,
   "hidden_size": 32, "patch_size": 2, "spatial_merge_size": 2, "temporal_patch_size": 1,
   "hidden_act": "quick_gelu"}}
JSON
check "maye grad --help" "$MAYE" grad --help >/dev/null
check "maye init" "$MAYE" init --config "$T/model.json" -o "$T/m" --seed 5

# text only: input_ids [5]
: >"$T/ids.bin"
for id in 1 2 3 4 5; do le64 $id >>"$T/ids.bin"; done
mkst "$T/text.st" '{"input_ids":{"dtype":"I64","shape":[5],"data_offsets":[0,40]}}' "$T/ids.bin"
check "grad, text" "$MAYE" grad --model "$T/m" --in "$T/text.st" --out "$T/text_g.st" --threads 1
check "the loss is written" grep -q '"loss"' "$T/text_g.st"
check "language-model gradients" grep -q 'model.layers.1.mlp.down_proj.weight' "$T/text_g.st"
check "untied lm_head gradient" grep -q '"lm_head.weight"' "$T/text_g.st"

# one image of grid [1, 4, 4] (16 patches of 3*1*2*2 = 12 values -> 4 merged tokens) between text
: >"$T/img.bin"
for id in 1 88 90 90 90 90 89 7 9 11; do le64 $id >>"$T/img.bin"; done
i=0
while [ $i -lt 192 ]; do printf '\000\000\200\077' >>"$T/img.bin"; i=$((i + 1)); done # 1.0f each
for v in 1 4 4; do le64 $v >>"$T/img.bin"; done
mkst "$T/img.st" '{"input_ids":{"dtype":"I64","shape":[10],"data_offsets":[0,80]},"pixel_values":{"dtype":"F32","shape":[16,12],"data_offsets":[80,848]},"image_grid_thw":{"dtype":"I64","shape":[1,3],"data_offsets":[848,872]}}' "$T/img.bin"
check "grad, image" "$MAYE" grad --model "$T/m" --in "$T/img.st" --out "$T/img_g.st" --threads 2
check "vision tower gradients" grep -q 'visual.blocks.1.mlp.fc2.weight' "$T/img_g.st"
check "merger gradients" grep -q 'visual.merger.mlp.2.weight' "$T/img_g.st"
check "grad --recompute" "$MAYE" grad --model "$T/m" --in "$T/img.st" --out "$T/img_r.st" --recompute --threads 2
check "--recompute gives the same bits" cmp -s "$T/img_g.st" "$T/img_r.st"
check "grad --train connector" "$MAYE" grad --model "$T/m" --in "$T/img.st" --out "$T/conn.st" --train connector
check "--train connector: the merger" grep -q 'visual.merger.mlp.0.weight' "$T/conn.st"
if grep -q 'model.layers.0' "$T/conn.st" || grep -q 'visual.blocks' "$T/conn.st"; then
    echo "FAIL: --train connector wrote gradients of frozen parts"; fail=1
fi
check "grad --train llm" "$MAYE" grad --model "$T/m" --in "$T/img.st" --out "$T/llm.st" --train llm --temperature 0.7
if grep -q 'visual\.' "$T/llm.st"; then echo "FAIL: --train llm wrote vision gradients"; fail=1; fi

# errors
expect_error "unknown part 'lm'" "$MAYE" grad --model "$T/m" --in "$T/text.st" --out "$T/x.st" --train lm
expect_error "--temperature must be positive" "$MAYE" grad --model "$T/m" --in "$T/text.st" --out "$T/x.st" --temperature 0
le64 3 >"$T/one.bin"
mkst "$T/one.st" '{"input_ids":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}' "$T/one.bin"
expect_error "at least one next token" "$MAYE" grad --model "$T/m" --in "$T/one.st" --out "$T/x.st"
expect_error "see maye grad --help" "$MAYE" grad --model "$T/m" --bogus

rm -rf "$T"
exit $fail
