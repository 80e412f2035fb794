"""Alpaca data handling and LoRA fine-tuning (python -m grootl.train) on a tiny model, offline."""

import json
import os

import pytest
import torch

from transformers import TrainerState

from grootl import train
from grootl.checkpointing import STAGING_DIR, JsonLinesMetrics
from grootl.configuration import read_tree_settings
from grootl.data import PROMPT_NO_INPUT, PROMPT_WITH_INPUT, SupervisedCollator, SupervisedDataset, format_prompt
from grootl.lora import load_lora
from grootl.modeling import GrootLMambaForCausalLM
from grootl.testing import save_tiny_checkpoint, write_alpaca_json

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    tokenizer = save_tiny_checkpoint(root / "base", seed=0)
    write_alpaca_json(root / "data.json", count=24, seed=0)
    return root, tokenizer


def test_prompt_template_is_the_releases():
    assert format_prompt({"instruction": "do it", "input": "", "output": "x"}) == PROMPT_NO_INPUT.format(
        instruction="do it"
    )
    assert format_prompt({"instruction": "do it", "input": "this"}) == (
        "### Instruction:\ndo it\n\n### Input:\nthis\n\n### Response:"
    )
    assert "{input}" in PROMPT_WITH_INPUT
    with pytest.raises(ValueError, match="instruction"):
        format_prompt({"input": "x"})


def test_labels_mask_the_prompt_and_keep_the_eos(workspace):
    root, tokenizer = workspace
    dataset = SupervisedDataset(root / "data.json", tokenizer, max_length=512)
    records = json.loads((root / "data.json").read_text())
    for example, record in zip(dataset, records):
        prompt = tokenizer(format_prompt(record), add_special_tokens=False)["input_ids"]
        labels = example["labels"]
        assert (labels[: len(prompt)] == -100).all()
        assert (labels[len(prompt) :] != -100).all()
        assert int(example["input_ids"][-1]) == tokenizer.eos_token_id
    batch = SupervisedCollator(pad_token_id=tokenizer.eos_token_id)([dataset[0], dataset[1], dataset[2]])
    lengths = [len(dataset[i]["input_ids"]) for i in range(3)]
    assert batch["attention_mask"].sum(1).tolist() == lengths  # the EOS pad does not hide the real EOS
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()
    # Cut at the end; every kept example has target tokens left (see test_grootl_data.py).
    truncated = SupervisedDataset(root / "data.json", tokenizer, max_length=60)
    assert max(len(e["input_ids"]) for e in truncated) == 60
    assert all((e["labels"] != -100).any() for e in truncated)


def test_bad_data_is_reported(tmp_path, workspace):
    _, tokenizer = workspace
    with pytest.raises(ValueError, match="data_path"):
        SupervisedDataset(tmp_path / "missing.json", tokenizer)
    (tmp_path / "bad.json").write_text(json.dumps([{"instruction": "a"}]))
    with pytest.raises(ValueError, match="no 'output'"):
        SupervisedDataset(tmp_path / "bad.json", tokenizer)


def mean_loss(model, dataset, pad_token_id):
    batch = SupervisedCollator(pad_token_id)([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        return float(model(**batch).loss)


def run_training(root, output, max_steps, *extra):
    return train.main(
        [
            "--model_name_or_path", str(root / "base"),
            "--data_path", str(root / "data.json"),
            "--output_dir", str(output),
            "--max_steps", str(max_steps),
            "--save_steps", "4",
            "--per_device_train_batch_size", "4",
            "--gradient_accumulation_steps", "2",
            "--learning_rate", "5e-3",
            "--warmup_steps", "2",
            "--model_max_length", "128",
            "--use_cpu", "True",
            "--seed", "0",
            "--disable_tqdm", "True",
            *extra,
        ]
    )  # fmt: skip


def test_lora_training_lowers_the_loss_and_resumes(workspace, tmp_path):
    root, tokenizer = workspace
    output = tmp_path / "run"
    dataset = SupervisedDataset(root / "data.json", tokenizer, max_length=64)
    base = GrootLMambaForCausalLM.from_pretrained(root / "base").eval()
    before = mean_loss(base, dataset, tokenizer.eos_token_id)

    run_training(root, output, max_steps=8)
    assert sorted(p.name for p in output.iterdir() if p.name.startswith("checkpoint-")) == [
        "checkpoint-4",
        "checkpoint-8",
    ]
    assert not (output / STAGING_DIR).exists()
    assert (output / "adapter_config.json").is_file() and (output / "tokenizer_config.json").is_file()
    adapter = json.loads((output / "adapter_config.json").read_text())
    assert set(adapter["target_modules"]) == {"x_proj", "embeddings", "in_proj", "out_proj"}
    assert (adapter["r"], adapter["lora_alpha"], adapter["lora_dropout"]) == (8, 16, 0.0)
    # The tree settings travel with the adapter (peft's files do not hold them).
    for folder in (output, output / "checkpoint-4"):
        assert read_tree_settings(folder) == {"use_tree": True, "tree_scale": 0.3, "contex_len_mode": "per_row"}

    tuned = load_lora(GrootLMambaForCausalLM.from_pretrained(root / "base"), str(output)).eval()
    after = mean_loss(tuned, dataset, tokenizer.eos_token_id)
    assert after < before - 0.05, (before, after)
    out_proj_b = [p for n, p in tuned.named_parameters() if "out_proj.lora_B" in n]
    assert out_proj_b and all(p.abs().sum() > 0 for p in out_proj_b)  # the out_proj adapters were trained

    # A run killed after logging steps 5-8 but before renaming checkpoint-8 into place: its copy
    # is still in the staging folder (ignored), and the rerun resumes from checkpoint-4.
    (output / STAGING_DIR).mkdir()
    os.replace(output / "checkpoint-8", output / STAGING_DIR / "checkpoint-8")
    metrics = output / "metrics.jsonl"
    first_run = [dict(json.loads(line), run="first") for line in metrics.read_text().splitlines()]
    metrics.write_text("".join(json.dumps(r) + "\n" for r in first_run))
    run_training(root, output, max_steps=10)
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == list(range(1, 11))
    # Steps 1-4 are the first run's records (resumed, not restarted); its steps 5-8 are gone.
    assert [r for r in records if r.get("run") == "first"] == [r for r in first_run if r["step"] <= 4]
    state = json.loads((output / "trainer_state.json").read_text())
    assert state["global_step"] == 10
    assert not (output / STAGING_DIR).exists()


def test_full_fine_tuning_in_bf16_keeps_float32_weights(workspace, tmp_path):
    """Without LoRA the weights stay float32 under bf16 autocast: AdamW steps of a small lr on
    bf16 weights would mostly round away."""
    root, _ = workspace
    output = tmp_path / "full"
    run_training(root, output, 2, "--low_rank_training", "False", "--bf16", "True", "--tree_scale", "0.5")
    tuned = GrootLMambaForCausalLM.from_pretrained(output)
    base = GrootLMambaForCausalLM.from_pretrained(root / "base")
    assert tuned.config.tree_scale == 0.5 and read_tree_settings(output)["tree_scale"] == 0.5
    tuned_weights, base_weights = tuned.state_dict(), base.state_dict()
    assert all(value.dtype == torch.float32 for value in tuned_weights.values())
    changed = [key for key in base_weights if not torch.equal(tuned_weights[key], base_weights[key])]
    assert len(changed) >= len(base_weights) - 1, sorted(set(base_weights) - set(changed))


def test_metrics_after_the_resumed_step_are_dropped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in (1, 2, 3, 4)) + '{"step": 5, "lo')
    callback = JsonLinesMetrics(str(path))
    state = TrainerState(global_step=2, is_world_process_zero=False)
    callback.on_train_begin(None, state, None)
    assert len(path.read_text().splitlines()) == 5  # only rank 0 touches the file

    state.is_world_process_zero = True
    callback.on_train_begin(None, state, None)  # the torn last line (a kill while appending) goes too
    callback.on_log(None, TrainerState(global_step=3, epoch=0.5), None, logs={"loss": 0.25})
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2, 3]
    assert os.listdir(tmp_path) == ["metrics.jsonl"]

    callback.on_train_begin(None, TrainerState(global_step=0), None)  # starting over
    assert path.read_text() == ""

    path.write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(ValueError, match="metrics.jsonl line 2 is not JSON"):
        callback.on_train_begin(None, state, None)
