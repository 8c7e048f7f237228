"""Where does bf16 mode lose log-prob accuracy? An emulation on the CPU of the GPU model's bf16 storage.

Optional reference script, not on any user path (needs torch and transformers). Issue 8 asks that bf16 mode
give log-probs within a mean |dlogp| of 0.02 of fp32 mode; on the tiny-qwen2-vl fixture (random fp32
weights) the GPU measured 0.0201-0.0207. This script runs the fixture's samples through transformers in
fp32 and rounds to bf16 exactly where the GPU model stores bf16 (weights; the pixels; the outputs of the patch
embedding, every linear layer, norm, rotary, attention (its probabilities too) and activation; the residual
adds; the final hidden state), fp32 in between as the GPU's fp32 accumulation, then switches rounding points
off to see what each one costs. The CUDA emulator (tests/cuda_emu, the GPU model's own kernels) is the closer
measure; this script is quicker for trying what a change would gain. A linear layer's
output is rounded once, bias included (cuBLASLt's bias epilogue); the variant marked "bias after rounding"
adds an fp32 bias to the rounded product and rounds again (a GEMM without epilogue, then a bias kernel).

Usage: python3 bench/bf16_emulation.py FIXTURE_DIR...   (e.g. ../shared/fixtures/golden/tiny-qwen2-vl)
Prints one JSON line per fixture and variant: the mean |log-prob - fp32| of each sample's next tokens.
"""
import json
import sys

import torch
import torch.nn.functional as F
import transformers.models.qwen2_5_vl.modeling_qwen2_5_vl as q25
import transformers.models.qwen2_vl.modeling_qwen2_vl as q2
from safetensors.numpy import load_file
from transformers import AutoModelForImageTextToText

ROUND = set()  # the storage points rounded to bf16 in the current run
BIAS_AFTER = [False]  # linear layers: an fp32 bias added to the rounded product, then rounded again


def bf16(x):
    return x.to(torch.bfloat16).to(torch.float32)


def at(x, point):
    return bf16(x) if point in ROUND else x


# The decoder layer, vision block and MLPs of transformers with the residual adds and activations exposed.
def decoder_layer(self, hidden_states, attention_mask=None, position_ids=None, cache=None, use_cache=False,
                  position_embeddings=None, **kw):
    h = at(self.input_layernorm(hidden_states), "norm")
    h, _ = self.self_attn(hidden_states=h, attention_mask=attention_mask, position_ids=position_ids, cache=cache,
                          use_cache=use_cache, position_embeddings=position_embeddings, **kw)
    x = at(hidden_states + h, "residual")
    h = self.mlp(at(self.post_attention_layernorm(x), "norm"))
    return at(x + h, "residual")


def vision_block(self, hidden_states, cu_seqlens, position_embeddings=None, **kw):
    a = self.attn(at(self.norm1(hidden_states), "norm"), cu_seqlens=cu_seqlens,
                  position_embeddings=position_embeddings, **kw)
    x = at(hidden_states + a, "vision residual")
    return at(x + self.mlp(at(self.norm2(x), "norm")), "vision residual")


def gated_mlp(self, x):
    return self.down_proj(at(self.act_fn(self.gate_proj(x)) * self.up_proj(x), "activation"))


def vision_mlp(self, x):  # Qwen2-VL's vision MLP (fc1, quick_gelu, fc2)
    return self.fc2(at(self.act(self.fc1(x)), "vision activation"))


_softmax = F.softmax


def softmax(x, *a, **kw):  # the attention's probabilities (eager attention), rounded before P @ V
    return at(_softmax(x, *a, **kw), "probabilities")


def rounded_rotary(f):
    def rotary(q, k, cos, sin, *a, **kw):
        q, k = f(q, k, cos, sin, *a, **kw)
        return at(q, "rotary"), at(k, "rotary")
    return rotary


def linear_output(mod, inp, out):
    if "linear" not in ROUND:
        return out
    if getattr(mod, "residual_branch", False) and "residual branch" not in ROUND:
        return out  # the add to the residual stream in the GEMM's epilogue: the sum is rounded, not the product
    if mod.bias is None or not BIAS_AFTER[0]:
        return bf16(out)
    b = mod.bias.detach()
    return bf16(bf16(out - b) + b)


for mod in (q2, q25):
    mod.apply_rotary_pos_emb = rounded_rotary(mod.apply_rotary_pos_emb)
    mod.apply_rotary_pos_emb_vision = rounded_rotary(mod.apply_rotary_pos_emb_vision)
q2.Qwen2VLDecoderLayer.forward = decoder_layer
q2.Qwen2VLVisionBlock.forward = vision_block
q2.Qwen2MLP.forward = gated_mlp
q2.VisionMlp.forward = vision_mlp
torch.nn.functional.softmax = softmax
q25.Qwen2_5_VLDecoderLayer.forward = decoder_layer
q25.Qwen2_5_VLVisionBlock.forward = vision_block
q25.Qwen2MLP.forward = gated_mlp
q25.Qwen2_5_VLMLP.forward = gated_mlp

# "residual branch": the language model's o_proj / down_proj outputs rounded before the residual add (the GPU
# model until session 7; now the add is in the GEMM's epilogue). "gate/up", "vision activation", "pixels",
# "patch embedding" and "probabilities" are rounding points the GPU model has that the first version of this
# script left out.
POINTS = ["matrix weights", "norm weights", "bias weights", "linear", "norm", "rotary", "attention", "activation", "residual",
          "vision residual", "final hidden", "residual branch", "gate/up", "vision activation", "pixels",
          "patch embedding", "probabilities"]
NOW = [p for p in POINTS if p not in ("norm weights", "residual branch")]  # the GPU model now
WEIGHTS = ("matrix weights", "norm weights", "bias weights")
VARIANTS = [  # (name, rounded points, bias after rounding)
    ("fp32", [], False),
    ("the GPU model now: norms in fp32, LLM residual adds in the GEMM epilogue", NOW, False),
    ("the GPU model before: the residual branch rounded", NOW + ["residual branch"], False),
    ("all bf16 (the GPU model of the H200 run)", POINTS, False),
    ("weights only", list(WEIGHTS), False),
    ("activations only", [p for p in NOW if p not in WEIGHTS], False),
    ("now, fp32 LLM residual stream", [p for p in NOW if p != "residual"], False),
    ("now, fp32 residual streams", [p for p in NOW if "residual" not in p], False),
    ("now, fp32 pixels and patch embedding", [p for p in NOW if p not in ("pixels", "patch embedding")], False),
    ("now, fp32 attention probabilities", [p for p in NOW if p != "probabilities"], False),
    ("now, fp32 final hidden state", [p for p in NOW if p != "final hidden"], False),
    ("now, fp32 linear biases", [p for p in NOW if p != "bias weights"], False),
    ("now, fp32 bias added after the rounded product", [p for p in NOW if p != "bias weights"], True),
]


def logprobs(fixture, points, bias_after=False):
    ROUND.clear()
    ROUND.update(points)
    BIAS_AFTER[0] = bias_after
    model = AutoModelForImageTextToText.from_pretrained(fixture, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    with torch.no_grad():
        norms = {id(p) for m in model.modules() if isinstance(m, torch.nn.LayerNorm) or "RMSNorm" in type(m).__name__
                 for p in m.parameters(recurse=False)}  # the merger's LayerNorm is called ln_q
        for p in model.parameters():
            kind = "matrix weights" if p.dim() >= 2 else "norm weights" if id(p) in norms else "bias weights"
            if kind in ROUND:
                p.copy_(bf16(p))
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Linear) and not name.endswith(("gate_proj", "up_proj", "lm_head")):
            m.residual_branch = name.endswith(("o_proj", "down_proj")) and "visual" not in name
            m.register_forward_hook(linear_output)
        if isinstance(m, torch.nn.Linear) and name.endswith(("gate_proj", "up_proj")):
            m.register_forward_hook(lambda mod, inp, out: at(out, "gate/up"))
        if name.endswith("patch_embed"):
            m.register_forward_pre_hook(lambda mod, inp: (at(inp[0], "pixels"),) + tuple(inp[1:]))
            m.register_forward_hook(lambda mod, inp, out: at(out, "patch embedding"))
        if name.endswith(("o_proj", "attn.proj")):  # the attention's output, o_proj's input
            m.register_forward_pre_hook(lambda mod, inp: (at(inp[0], "attention"),))
    expected = load_file(fixture + "/expected.safetensors")
    samples = sorted({k.split(".")[0] for k in expected if k.endswith(".input_ids")})
    out = {}
    for s in samples:
        ids = torch.tensor(expected[s + ".input_ids"])[None]
        extra = {}
        if s + ".pixel_values" in expected:
            extra = {"pixel_values": torch.tensor(expected[s + ".pixel_values"]),
                     "image_grid_thw": torch.tensor(expected[s + ".image_grid_thw"]),
                     "mm_token_type_ids": (ids == model.config.image_token_id).long()}
        with torch.no_grad():
            h = at(model(input_ids=ids, output_hidden_states=True, **extra).hidden_states[-1][0], "final hidden")
            lp = F.log_softmax(h @ model.lm_head.weight.T, -1)
        out[s] = lp[:-1].gather(1, ids[0, 1:, None])[:, 0]
    return out


def main():
    for fixture in sys.argv[1:]:
        base = logprobs(fixture, [])
        for name, points, bias_after in VARIANTS[1:]:
            got = logprobs(fixture, points, bias_after)
            d = {s: round(float((got[s] - base[s]).abs().mean()), 5) for s in base}
            print(json.dumps({"fixture": fixture.rstrip("/").split("/")[-1], "variant": name,
                              "mean_abs_dlogp": d}), flush=True)


if __name__ == "__main__":
    main()
