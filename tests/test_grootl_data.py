"""Bad training data gets a clear message naming the file and the record; JSON lines are
accepted; null means empty for the input and is refused for instruction/output; examples whose
prompt fills the maximum length are skipped with a count instead of training on nothing."""

import json
import logging
import os

import pytest
import torch

from grootl.data import PROMPT_NO_INPUT, SupervisedDataset, format_prompt, read_records
from grootl.errors import DataError
from grootl.testing import alpaca_records, save_tiny_checkpoint, train_tokenizer
from grootl_helpers import one_line_error, run_training

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer()


def write(path, content):
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "content, message",
    [
        ("", r"is empty; expected a JSON list"),
        ("  \n\n", r"is empty"),
        ('[{"instruction": "a", "output": "b"},', r"is not valid JSON \(Expecting value at line 1, column 38\)"),
        ("instruction,output\na,b\n", r"is not valid JSON"),
        (bytes(range(256)), r"is not UTF-8 text \(byte 128\); is it a binary file\?"),
        ('[{"instruction": "a\x00", "output": "b"}]', r"holds NUL bytes; is it a binary file\?"),
        ("null", r"holds a JSON null; expected a JSON list"),
        ('"alpaca"', r"holds a JSON string"),
        ("[]", r"holds no records"),
        ('[{"instruction": "a", "output": "b"}, "c"]', r"record 1 of .* is a JSON string; expected an object"),
        ('[{"instruction": "a", "output": "b"}, {"instruction": "c"}]', r"record 1 of .* has no 'output' \(its keys"),
        ('[{"instruction": null, "output": "b"}]', r"record 0 of .* has 'instruction': null"),
        ('[{"instruction": "a", "output": null}]', r"record 0 of .* has 'output': null"),
        ('[{"instruction": 3, "output": "b"}]', r"record 0 of .*'instruction' must be a string; got a JSON number 3"),
        ('[{"instruction": "a", "input": ["x"], "output": "b"}]', r"'input' must be a string; got a JSON array"),
        ('[{"instruction": "a", "output": {"text": "b"}}]', r"'output' must be a string; got a JSON object"),
        ('{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": 5}\n', r"record 1 \(line 2\) of "),
        ('{"instruction": "a", "output": "b"}\n\n{"instruction": "c", "output": "d"\n', r"line 3 is not a JSON record"),
    ],
)
def test_bad_files_are_named_with_the_record(tmp_path, tokenizer, content, message):
    path = write(tmp_path / "data.json", content)
    with pytest.raises(DataError, match=message) as error:
        SupervisedDataset(path, tokenizer)
    assert str(path) in str(error.value)


def test_json_lines_give_the_same_examples_as_json(tmp_path, tokenizer):
    records = alpaca_records(6)
    as_json = write(tmp_path / "data.json", json.dumps(records))
    as_lines = write(tmp_path / "data.jsonl", "".join(json.dumps(r) + "\n" for r in records) + "\n")
    one_line = write(tmp_path / "one.jsonl", json.dumps(records[0]) + "\n")
    assert read_records(as_lines) == read_records(as_json) == records
    assert read_records(one_line) == records[:1]
    for a, b in zip(SupervisedDataset(as_json, tokenizer), SupervisedDataset(as_lines, tokenizer)):
        assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])


def test_a_null_or_missing_input_is_an_empty_one(tmp_path):
    path = write(tmp_path / "data.json", json.dumps([
        {"instruction": "a", "input": None, "output": "b"},
        {"instruction": "a", "output": "b", "id": 7},
        {"instruction": "a", "input": "", "output": "b"},
    ]))  # fmt: skip
    records = read_records(path)
    assert records == [{"instruction": "a", "input": "", "output": "b"}] * 3
    assert format_prompt({"instruction": "a", "input": None}) == PROMPT_NO_INPUT.format(instruction="a")
    assert "None" not in format_prompt({"instruction": "a", "input": None})


def test_examples_without_a_target_token_are_skipped_with_a_count(tmp_path, tokenizer, caplog):
    short = {"instruction": "a", "input": "", "output": "the cat sits"}
    long = {"instruction": "the red dog runs " * 20, "input": "", "output": "yes"}
    path = write(tmp_path / "data.json", json.dumps([short, long, short, long, long]))
    prompt = len(tokenizer(format_prompt(long), add_special_tokens=False)["input_ids"])
    with caplog.at_level(logging.WARNING, logger="grootl.data"):
        dataset = SupervisedDataset(path, tokenizer, max_length=prompt)
    assert len(dataset) == 2
    assert all((example["labels"] != -100).any() for example in dataset)
    assert f"3 of 5 records of {path} are skipped" in caplog.text and "records [1, 3, 4]" in caplog.text

    caplog.clear()
    cut = SupervisedDataset(path, tokenizer, max_length=prompt + 1)  # one target token left of the long ones
    assert len(cut) == 5 and all((example["labels"] != -100).sum() >= 1 for example in cut)
    assert f"3 of 5 records of {path} are cut to max_length={prompt + 1}" in caplog.text

    write(path, json.dumps([long, long]))
    with pytest.raises(DataError, match=r"no record of .* has a target token within max_length"):
        SupervisedDataset(path, tokenizer, max_length=prompt)


def test_the_training_command_reports_bad_data_in_one_line(tmp_path, capsys):
    save_tiny_checkpoint(tmp_path / "base")
    path = write(tmp_path / "data.json", '[{"instruction": "a", "output": 1.5}]')
    one_line_error(
        capsys,
        lambda: run_training(tmp_path / "base", path, tmp_path / "run", 1),
        f"record 0 of {path}: 'output' must be a string",
    )
    assert not (tmp_path / "run").exists()  # stopped before anything was written
