"""Alpaca-format supervised fine-tuning data: prompt template, labels, batching.

Each record is ``{"instruction": ..., "input": ... (optional), "output": ...}``. The prompt
is the release's template (the ``*_ssm`` variant, without the Alpaca preamble); the target
is the output followed by the EOS token. Labels are -100 on the prompt, so the model's
default ``contex_len`` (the -100 labels of each row) is the prompt length.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from .prompts import IGNORE_INDEX

__all__ = ["PROMPT_WITH_INPUT", "PROMPT_NO_INPUT", "format_prompt", "SupervisedDataset", "SupervisedCollator"]

PROMPT_WITH_INPUT = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
PROMPT_NO_INPUT = "### Instruction:\n{instruction}\n\n### Response:"


def format_prompt(record: dict) -> str:
    """The prompt of one Alpaca record (the input section only when the input is not empty)."""
    if "instruction" not in record:
        raise ValueError(f"an Alpaca record needs an 'instruction'; got keys {sorted(record)}")
    template = PROMPT_WITH_INPUT if record.get("input", "") != "" else PROMPT_NO_INPUT
    return template.format_map(record)


class SupervisedDataset(Dataset):
    """Tokenised Alpaca records: ``input_ids`` and ``labels`` (-100 on the prompt).

    As in the release, prompt and prompt+target are tokenised separately and the first
    ``len(prompt tokens)`` labels are masked; sequences longer than ``max_length`` are cut.
    """

    def __init__(self, data_path: str | Path, tokenizer, max_length: int = 2048):
        path = Path(data_path)
        if not path.is_file():
            raise ValueError(f"`data_path` {str(path)!r} is not a file")
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
            raise ValueError(f"`max_length` must be an int >= 2; got {max_length!r}")
        if tokenizer.eos_token is None:
            raise ValueError("the tokenizer has no EOS token, which ends every target")
        with open(path, encoding="utf-8") as f:
            records = json.load(f)
        if not isinstance(records, list) or not records:
            raise ValueError(f"`data_path` must hold a non-empty JSON list of records; got {type(records).__name__}")
        self.examples = []
        for index, record in enumerate(records):
            if "output" not in record:
                raise ValueError(f"record {index} of {str(path)!r} has no 'output'")
            prompt = format_prompt(record)
            cut = dict(add_special_tokens=False, truncation=True, max_length=max_length)
            prompt_ids = tokenizer(prompt, **cut)["input_ids"]
            ids = tokenizer(prompt + record["output"] + tokenizer.eos_token, **cut)["input_ids"]
            labels = list(ids)
            labels[: len(prompt_ids)] = [IGNORE_INDEX] * min(len(prompt_ids), len(ids))
            self.examples.append(
                {"input_ids": torch.tensor(ids, dtype=torch.long), "labels": torch.tensor(labels, dtype=torch.long)}
            )

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.examples[index]


@dataclass
class SupervisedCollator:
    """Right-pads a batch; the attention mask comes from the lengths, not from token ids,
    because the pad token may be the EOS token that ends every target."""

    pad_token_id: int

    def __call__(self, examples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        longest = max(len(e["input_ids"]) for e in examples)
        input_ids = torch.full((len(examples), longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(examples), longest), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(examples), longest), dtype=torch.long)
        for row, example in enumerate(examples):
            n = len(example["input_ids"])
            input_ids[row, :n] = example["input_ids"]
            labels[row, :n] = example["labels"]
            attention_mask[row, :n] = 1
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}
