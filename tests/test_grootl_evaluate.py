"""lm-eval integration: the registered ``grootl``/``mamba`` model, per-request context lengths in
batches, and ``python -m grootl.evaluate`` end to end on local task files (offline)."""

import json
import os
from pathlib import Path

import pytest
import torch
from lm_eval.api.instance import Instance
from lm_eval.api.registry import get_model

from grootl import evaluate as evaluate_cli
from grootl.evaluate import PAPER_TABLE3, format_table, paper_row
from grootl.configuration import write_tree_settings
from grootl.lm_eval_model import GrootLEvalModel
from grootl.lora import add_lora
from grootl.modeling import GrootLMambaForCausalLM
from grootl.testing import save_tiny_checkpoint

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

REPOSITORY = Path(__file__).resolve().parents[1]
LOCAL_TASKS = "grootl_local_mc,grootl_local_cloze,grootl_local_gen"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("eval") / "model"
    save_tiny_checkpoint(directory, seed=5)
    return directory


def test_both_names_are_registered():
    assert get_model("grootl") is GrootLEvalModel
    assert get_model("mamba") is GrootLEvalModel


def test_batched_scores_equal_one_by_one_and_use_each_context_length(checkpoint, generator):
    model = GrootLMambaForCausalLM.from_pretrained(checkpoint).eval()
    lm_batched = GrootLEvalModel(model, tokenizer=str(checkpoint), batch_size=5)
    lm_single = GrootLEvalModel(model, tokenizer=str(checkpoint), batch_size=1)
    pairs = []
    for _ in range(7):
        context = torch.randint(1, 200, (int(torch.randint(3, 15, (1,), generator=generator)),), generator=generator)
        size = int(torch.randint(1, 5, (1,), generator=generator))
        continuation = torch.randint(1, 200, (size,), generator=generator)
        pairs.append((context.tolist(), continuation.tolist()))
    batched, single = lm_batched.score_tokens(pairs), lm_single.score_tokens(pairs)
    for (a, greedy_a), (b, greedy_b) in zip(batched, single):
        assert a == pytest.approx(b, abs=1e-4) and greedy_a == greedy_b

    context, continuation = pairs[0]
    ids = torch.tensor([context + continuation[:-1]])
    with torch.no_grad():
        log_probs = model(ids, contex_len=len(context)).logits.log_softmax(-1)[0]
    expected = sum(float(log_probs[len(context) - 1 + i, t]) for i, t in enumerate(continuation))
    assert batched[0][0] == pytest.approx(expected, abs=1e-4)


def test_batch_min_mode_scores_each_request_alone(checkpoint, generator):
    """The release's batch_min gives every row the batch's smallest prompt; scored in batches
    that would make a request's score depend on its neighbours, so it is scored alone."""
    model = GrootLMambaForCausalLM.from_pretrained(checkpoint, contex_len_mode="batch_min").eval()
    lm = GrootLEvalModel(model, tokenizer=str(checkpoint), batch_size=4)
    pairs = [([5, 9, 11, 3, 7, 2, 8], [4, 6]), ([12, 3], [7]), ([1, 2, 3, 4], [5, 6, 7])]
    together = lm.score_tokens(pairs)
    for pair, result in zip(pairs, together):
        assert lm.score_tokens([pair]) == [result]
    per_row = GrootLEvalModel(GrootLMambaForCausalLM.from_pretrained(checkpoint).eval(), tokenizer=str(checkpoint))
    for (a, _), (b, _) in zip(together, per_row.score_tokens(pairs)):
        assert a == pytest.approx(b, abs=1e-4)  # alone, the smallest prompt is the row's own


def test_generation_from_empty_contexts_starts_at_the_prefix_token(checkpoint):
    lm = GrootLEvalModel(str(checkpoint), batch_size=2, max_gen_toks=3)
    request = Instance("generate_until", {}, ("", {"until": ["\n\n"], "do_sample": False}), 0)
    texts = lm.generate_until([request, request], disable_tqdm=True)
    with torch.no_grad():
        expected = lm.model.generate(torch.tensor([[lm.prefix_token_id]]), max_new_tokens=3, do_sample=False,
                                     pad_token_id=lm.pad_token_id, eos_token_id=lm.eot_token_id)
    assert texts == [lm.tok_decode(expected[0, 1:].tolist()).split("\n\n")[0]] * 2


def test_long_requests_are_cut_from_the_left(checkpoint):
    model = GrootLMambaForCausalLM.from_pretrained(checkpoint).eval()
    lm = GrootLEvalModel(model, tokenizer=str(checkpoint), batch_size=2, max_length=8)
    context, continuation = list(range(1, 21)), [7, 8, 9]
    (score, _), = lm.score_tokens([(context, continuation)])
    window = (context + continuation)[-9:-1]
    with torch.no_grad():
        log_probs = model(torch.tensor([window]), contex_len=len(window) - 2).logits.log_softmax(-1)[0]
    assert score == pytest.approx(sum(float(log_probs[5 + i, t]) for i, t in enumerate(continuation)), abs=1e-4)


def test_bad_requests_name_the_argument(checkpoint):
    lm = GrootLEvalModel(str(checkpoint), batch_size=2, max_length=8)
    # An empty context leaves nothing to predict the first continuation token from.
    with pytest.raises(ValueError, match=r"`pairs\[1\]` has an empty context.*prefix_token_id"):
        lm.score_tokens([([3], [4]), ([], [5])])
    with pytest.raises(ValueError, match=r"`pairs\[0\]` has an empty continuation"):
        lm.score_tokens([([3], [])])
    with pytest.raises(ValueError, match=r"`pairs\[0\]` has a continuation of 9 tokens.*max_length=8"):
        lm.score_tokens([([3], list(range(1, 10)))])


def test_an_empty_text_context_is_conditioned_on_the_prefix_token(checkpoint):
    lm = GrootLEvalModel(str(checkpoint), batch_size=2)
    continuation = lm.tok_encode("the cat sits")
    (score, greedy), = lm.loglikelihood([Instance("loglikelihood", {}, ("", "the cat sits"), 0)], disable_tqdm=True)
    assert (score, greedy) == lm.score_tokens([([lm.prefix_token_id], continuation)])[0]


def test_bad_model_arguments_are_reported(checkpoint):
    with pytest.raises(ValueError, match="`batch_size`"):
        GrootLEvalModel(str(checkpoint), batch_size="auto")
    with pytest.raises(ValueError, match="`dtype`"):
        GrootLEvalModel(str(checkpoint), dtype="int8")
    with pytest.raises(ValueError, match="`contex_len_mode`"):
        GrootLEvalModel(str(checkpoint), contex_len_mode="max")
    with pytest.raises(TypeError, match="`pretrained`"):
        GrootLEvalModel(3)


def test_an_adapter_is_evaluated_with_the_tree_settings_it_was_trained_with(checkpoint, tmp_path):
    adapter = tmp_path / "adapter"
    add_lora(GrootLMambaForCausalLM.from_pretrained(checkpoint)).save_pretrained(adapter)
    write_tree_settings(GrootLMambaForCausalLM.from_pretrained(checkpoint, use_tree=False).config, adapter)
    assert GrootLEvalModel(str(checkpoint), peft=str(adapter)).model.config.use_tree is False
    overridden = GrootLEvalModel(str(checkpoint), peft=str(adapter), use_tree=True, tree_scale=0.5)
    assert (overridden.model.config.use_tree, overridden.model.config.tree_scale) == (True, 0.5)


def test_table_follows_the_paper():
    results = {
        "piqa": {"acc,none": 0.65},
        "arc_easy": {"acc,none": 0.5},
        "sst2": {"acc,none": 0.7},
        "winogrande": {"acc,none": 0.51},
        "lambada_openai": {"perplexity,none": 15.9, "acc,none": 0.4},
        "race": {"acc,none": 0.29},
        "openbookqa": {"acc,none": 0.19, "acc_norm,none": 0.3},
    }
    row = paper_row(results)
    assert row[:7] == pytest.approx([65.0, 50.0, 70.0, 51.0, 15.9, 29.0, 19.0])
    assert row[7] == pytest.approx((65 + 50 + 70 + 51 + 29 + 19) / 6)
    table = format_table(results)
    header = "| model | PIQA | ARC-E | SST | WinoGrande | LAMBADA ppl | RACE | OpenbookQA | Avg |"
    assert table.splitlines()[0] == header
    assert "| GrootL (paper) | 65.0 | 49.8 | 69.5 | 51.1 | 15.9 | 28.9 | 19.2 | 47.2 |" in table
    # The paper's averages leave LAMBADA's perplexity out.
    for values in PAPER_TABLE3.values():
        assert round(sum(v for i, v in enumerate(values[:7]) if i != 4) / 6, 1) == values[7]
    assert paper_row({"piqa": {"acc,none": 0.6}})[7] is None


def test_evaluate_end_to_end_on_local_task_files(checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPOSITORY)  # the example task files name their data relative to the repository
    output = tmp_path / "results.json"
    evaluate_cli.main(
        ["--model", "mamba", "--model_args", f"pretrained={checkpoint}", "--tasks", LOCAL_TASKS,
         "--include_path", "configs/lm_eval", "--batch_size", "4", "--output_path", str(output)]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert "| GrootL (paper) | 65.0 |" in printed and "grootl_local_mc" in printed
    summary = json.loads(output.read_text())
    results = summary["results"]
    assert 0.0 <= results["grootl_local_mc"]["acc,none"] <= 1.0
    assert results["grootl_local_cloze"]["perplexity,none"] > 1.0
    assert "exact_match,none" in results["grootl_local_gen"]
    assert summary["paper_columns"][-1] == "Avg" and summary["paper_row"] == [None] * 8


def test_a_failed_write_leaves_the_previous_results(checkpoint, tmp_path, monkeypatch):
    output = tmp_path / "results.json"
    output.write_text("previous")
    lm = GrootLEvalModel(str(checkpoint), batch_size=4)
    monkeypatch.setattr(evaluate_cli, "simple_evaluate", lambda **kwargs: {"results": {"piqa": {"acc,none": 0.5}}})

    def full_disk(*args):
        raise OSError("no space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError, match="no space left"):
        evaluate_cli.evaluate(lm, ["grootl_local_mc"], include_path=str(REPOSITORY / "configs" / "lm_eval"), output_path=output)
    assert os.listdir(tmp_path) == ["results.json"] and output.read_text() == "previous"
