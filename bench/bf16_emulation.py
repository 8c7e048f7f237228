"""Where does bf16 mode lose log-prob accuracy? An emulation on the CPU of the GPU model's bf16 storage.

Optional reference script, not on any user path (needs torch and transformers). Issue 8 asks that bf16 mode
give log-probs within a mean |dlogp| of 0.02 of fp32 mode; on the tiny-qwen2-vl fixture (random fp32
weights) the GPU measured 0.0201-0.0207. This script runs the fixture's samples through transformers in
fp32 and rounds to bf16 exactly where the GPU model stores bf16 (weights; the outputs of every linear layer,
norm, rotary, attention, activation and residual add; the final hidden state), fp32 in between as the GPU's
fp32 accumulation, then switches single rounding points off to see what each one costs.

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


def rounded_rotary(f):
    def rotary(q, k, cos, sin, *a, **kw):
        q, k = f(q, k, cos, sin, *a, **kw)
        return at(q, "rotary"), at(k, "rotary")
    return rotary


for mod in (q2, q25):
    mod.apply_rotary_pos_emb = rounded_rotary(mod.apply_rotary_pos_emb)
    mod.apply_rotary_pos_emb_vision = rounded_rotary(mod.apply_rotary_pos_emb_vision)
q2.Qwen2VLDecoderLayer.forward = decoder_layer
q2.Qwen2VLVisionBlock.forward = vision_block
q2.Qwen2MLP.forward = gated_mlp
q25.Qwen2_5_VLDecoderLayer.forward = decoder_layer
q25.Qwen2_5_VLVisionBlock.forward = vision_block
q25.Qwen2MLP.forward = gated_mlp
q25.Qwen2_5_VLMLP.forward = gated_mlp

POINTS = ["matrix weights", "vector weights", "linear", "norm", "rotary", "attention", "activation", "residual",
          "vision residual", "final hidden"]
VARIANTS = [
    ("fp32", []),
    ("all bf16 (the GPU model today)", POINTS),
    ("weights only", ["matrix weights", "vector weights"]),
    ("vector weights only (norm gains, biases)", ["vector weights"]),
    ("activations only", [p for p in POINTS if "weights" not in p]),
    ("all but the LLM residual stream", [p for p in POINTS if p != "residual"]),
    ("all but both residual streams", [p for p in POINTS if "residual" not in p]),
    ("all but the final hidden state", [p for p in POINTS if p != "final hidden"]),
    ("all but the vector weights", [p for p in POINTS if p != "vector weights"]),
    ("all but the vector weights and residual streams",
     [p for p in POINTS if p != "vector weights" and "residual" not in p]),
]


def logprobs(fixture, points):
    ROUND.clear()
    ROUND.update(points)
    model = AutoModelForImageTextToText.from_pretrained(fixture, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    with torch.no_grad():
        for p in model.parameters():
            if ("matrix weights" if p.dim() >= 2 else "vector weights") in ROUND:
                p.copy_(bf16(p))
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Linear) and not name.endswith(("gate_proj", "up_proj", "lm_head")):
            m.register_forward_hook(lambda mod, inp, out: at(out, "linear"))
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
        for name, points in VARIANTS[1:]:
            got = logprobs(fixture, points)
            d = {s: round(float((got[s] - base[s]).abs().mean()), 5) for s in base}
            print(json.dumps({"fixture": fixture.rstrip("/").split("/")[-1], "variant": name,
                              "mean_abs_dlogp": d}), flush=True)


if __name__ == "__main__":
    main()
