"""Tiny offline stand-ins for tests and benchmarks: a tokenizer trained on the spot, a random
Mamba checkpoint directory and Alpaca-style records. Nothing here touches the network."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import MambaConfig, MambaForCausalLM, PreTrainedTokenizerFast

__all__ = [
    "EOS_TOKEN",
    "tiny_corpus",
    "train_tokenizer",
    "tiny_mamba_config",
    "save_tiny_checkpoint",
    "alpaca_records",
    "write_alpaca_json",
]

EOS_TOKEN = "<|endoftext|>"

_WORDS = (
    "the a cat dog bird fish tree house river stone red blue green small large quick slow runs sits "
    "eats sees finds under over near with and or not is are was were one two three four five six "
    "seven eight nine ten yes no positive negative good bad answer question because"
).split()


def tiny_corpus(count: int = 400, seed: int = 0) -> list[str]:
    """Short sentences over a small vocabulary, plus the prompt template's words."""
    rng = random.Random(seed)
    lines = [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 12))) for _ in range(count)]
    return lines + ["### Instruction:\n", "### Input:\n", "### Response:", "Question: Answer:"]


def train_tokenizer(vocab_size: int = 256, texts: list[str] | None = None) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``texts`` (default :func:`tiny_corpus`); EOS id 0."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts if texts is not None else tiny_corpus(), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS_TOKEN, bos_token=EOS_TOKEN)


def tiny_mamba_config(vocab_size: int, **overrides) -> MambaConfig:
    """A small random Mamba: hidden 32, state 4, 2 layers (override any field)."""
    values = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        state_size=4,
        num_hidden_layers=2,
        expand=2,
        conv_kernel=4,
        pad_token_id=0,
        bos_token_id=0,
        eos_token_id=0,
    )
    values.update(overrides)
    return MambaConfig(**values)


def save_tiny_checkpoint(directory: str | Path, seed: int = 0, vocab_size: int = 256, **overrides):
    """Writes a stock ``MambaForCausalLM`` checkpoint and its tokenizer; returns the tokenizer."""
    tokenizer = train_tokenizer(vocab_size)
    torch.manual_seed(seed)
    model = MambaForCausalLM(tiny_mamba_config(len(tokenizer), **overrides))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return tokenizer


def alpaca_records(count: int = 16, seed: int = 0) -> list[dict]:
    """Instruction/input/output records with a learnable pattern (the output repeats the input)."""
    rng = random.Random(seed)
    records = []
    for i in range(count):
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 5)))
        record = {"instruction": "repeat the words", "input": words if i % 3 else "", "output": words}
        records.append(record)
    return records


def write_alpaca_json(path: str | Path, count: int = 16, seed: int = 0) -> Path:
    path = Path(path)
    path.write_text(json.dumps(alpaca_records(count, seed)), encoding="utf-8")
    return path
