"""Makes configs/demo/tokenizer.json, the small byte-level BPE tokenizer of the CPU demo.

Optional reference script (not on any user path): it trains a byte-level BPE with the Qwen2 pre-tokenizer
layout on text of the shape the demo uses (the chat template, MAYE's prompt suffix and `maye synth`
questions and solutions), with the Qwen special tokens first. The JSON it writes is committed; maye-c
only reads it. Usage: python3 configs/demo/make_tokenizer.py SYNTH_DIR [VOCAB_SIZE]
"""
import json
import os
import sys

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
            "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
            "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
              r"\s*[\r\n]+|\s+(?!\S)|\s+")
SUFFIX = ("\nSolve the above mathematics problem, write out the solution process according to the question, "
          "and use the same LaTeX format as the question in the solution process. Please display the final "
          "answer in the format \\boxed{}.")


def corpus(synth_dir):
    for split in ("train", "validation", "test"):
        with open(os.path.join(synth_dir, split + ".jsonl")) as f:
            for line in f:
                r = json.loads(line)
                yield "system\nYou are a helpful assistant.\nuser\n" + r["question"] + SUFFIX + "\nassistant\n"
                yield r["solution"]


def main():
    synth_dir = sys.argv[1]
    vocab_size = int(sys.argv[2]) if len(sys.argv) > 2 else 1024
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus(synth_dir), trainer)
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tokenizer.json")
    tok.save(out)
    print(out, tok.get_vocab_size())


if __name__ == "__main__":
    main()
