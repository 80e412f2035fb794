"""Alpaca-format supervised fine-tuning data: reading the file, prompt template, labels, batching.

The data file is a JSON list of records (the release's ``alpaca_data.json``) or JSON lines
(one record per line). Each record is ``{"instruction": ..., "input": ... (optional),
"output": ...}``; the three fields are strings, a missing or ``null`` input is an empty one,
and other keys are ignored. The prompt is the release's template (the ``*_ssm`` variant,
without the Alpaca preamble); the target is the output followed by the EOS token. Labels are
-100 on the prompt, so the model's default ``contex_len`` (the -100 labels of each row) is the
prompt length. A file that cannot be read, or a record that breaks these rules, is a
:class:`~grootl.errors.DataError` naming the file and the record.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from .errors import DataError, GrootLError
from .prompts import IGNORE_INDEX

__all__ = [
    "PROMPT_WITH_INPUT",
    "PROMPT_NO_INPUT",
    "format_prompt",
    "read_records",
    "SupervisedDataset",
    "SupervisedCollator",
]

logger = logging.getLogger(__name__)

PROMPT_WITH_INPUT = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
PROMPT_NO_INPUT = "### Instruction:\n{instruction}\n\n### Response:"

_EXPECTED = (
    "expected a JSON list of {instruction, input, output} records (Alpaca's alpaca_data.json) "
    "or JSON lines (one record per line)"
)
_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean"}


def _json_type(value) -> str:
    return "null" if value is None else _JSON_TYPES.get(type(value), type(value).__name__)


def format_prompt(record: dict) -> str:
    """The prompt of one Alpaca record (the input section only when the input is not empty)."""
    if "instruction" not in record:
        raise ValueError(f"an Alpaca record needs an 'instruction'; got keys {sorted(record)}")
    text_input = record.get("input")
    if text_input is None or text_input == "":
        return PROMPT_NO_INPUT.format(instruction=record["instruction"])
    return PROMPT_WITH_INPUT.format(instruction=record["instruction"], input=text_input)


def _json_lines(path: Path, text: str) -> list[tuple[str, object]]:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((f"record {len(records)} (line {number})", json.loads(line)))
        except json.JSONDecodeError as error:
            raise DataError(f"{path} line {number} is not a JSON record ({error.msg}, column {error.colno})") from None
    return records


def _parse(path: Path) -> list[tuple[str, object]]:
    """``(where, value)`` for every record of the file, ``where`` naming it in messages."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is not UTF-8 text (byte {error.start}); is it a binary file? {_EXPECTED}") from None
    if "\x00" in text:
        raise DataError(f"{path} holds NUL bytes; is it a binary file? {_EXPECTED}")
    if not text.strip():
        raise DataError(f"{path} is empty; {_EXPECTED}")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        # JSON lines: the first record parses and what follows it is "extra data".
        if error.msg == "Extra data" and text.lstrip().startswith("{"):
            return _json_lines(path, text)
        raise DataError(
            f"{path} is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}); {_EXPECTED}"
        ) from None
    if isinstance(document, dict):  # JSON lines with one record
        return [("record 0 (line 1)", document)]
    if not isinstance(document, list):
        raise DataError(f"{path} holds a JSON {_json_type(document)}; {_EXPECTED}")
    return [(f"record {index}", record) for index, record in enumerate(document)]


def read_records(data_path: str | Path) -> list[dict[str, str]]:
    """The records of an Alpaca data file, each with ``instruction``, ``input`` and ``output`` strings."""
    path = Path(data_path)
    if not path.is_file():
        raise DataError(f"`data_path` {str(path)!r} is not a file")
    records = []
    for where, record in _parse(path):
        if not isinstance(record, dict):
            raise DataError(f"{where} of {path} is a JSON {_json_type(record)}; expected an object with "
                            "'instruction', 'input' and 'output'")  # fmt: skip
        fields = {}
        for field in ("instruction", "input", "output"):
            value = record.get(field)
            if value is None and field != "input":
                state = f"{field!r}: null" if field in record else f"no {field!r} (its keys: {sorted(record)})"
                raise DataError(f"{where} of {path} has {state}; every record needs a string {field!r}")
            if value is not None and not isinstance(value, str):
                raise DataError(
                    f"{where} of {path}: {field!r} must be a string; got a JSON {_json_type(value)} {value!r:.60}"
                )
            fields[field] = value if value is not None else ""
        records.append(fields)
    if not records:
        raise DataError(f"{path} holds no records; {_EXPECTED}")
    return records


class SupervisedDataset(Dataset):
    """Tokenised Alpaca records: ``input_ids`` and ``labels`` (-100 on the prompt).

    As in the release, prompt and prompt+target are tokenised separately and the first
    ``len(prompt tokens)`` labels are masked; sequences longer than ``max_length`` are cut at
    the end. An example whose prompt alone fills ``max_length`` would have no target token
    left, so nothing to learn from: it is skipped, with a warning that counts them (and one
    that counts the examples whose target was cut).
    """

    def __init__(self, data_path: str | Path, tokenizer, max_length: int = 2048):
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
            raise GrootLError(f"`max_length` (--model_max_length) must be an int >= 2; got {max_length!r}")
        if tokenizer.eos_token is None:
            raise GrootLError("the tokenizer has no EOS token, which ends every target")
        records = read_records(data_path)
        self.examples = []
        no_target, cut = [], 0
        for index, record in enumerate(records):
            prompt = format_prompt(record)
            # verbose=False: the length warning of the tokenizer is replaced by the counts below.
            encode = dict(add_special_tokens=False, verbose=False)
            prompt_ids = tokenizer(prompt, **encode)["input_ids"]
            full_ids = tokenizer(prompt + record["output"] + tokenizer.eos_token, **encode)["input_ids"]
            ids = full_ids[:max_length]
            if len(ids) <= len(prompt_ids):
                no_target.append(index)
                continue
            cut += len(full_ids) > max_length
            labels = [IGNORE_INDEX] * len(prompt_ids) + ids[len(prompt_ids) :]
            self.examples.append(
                {"input_ids": torch.tensor(ids, dtype=torch.long), "labels": torch.tensor(labels, dtype=torch.long)}
            )
        if not self.examples:
            raise DataError(
                f"no record of {data_path} has a target token within max_length={max_length} tokens (each prompt "
                "fills it); raise --model_max_length"
            )
        if no_target:
            logger.warning(
                f"{len(no_target)} of {len(records)} records of {data_path} are skipped: their prompt fills "
                f"max_length={max_length} tokens, leaving no target token to train on (records {no_target[:10]}"
                f"{' ...' if len(no_target) > 10 else ''}); raise --model_max_length to keep them"
            )
        if cut:
            logger.warning(
                f"{cut} of {len(records)} records of {data_path} are cut to max_length={max_length} tokens: "
                "the end of their target (and its EOS) is not trained on"
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
