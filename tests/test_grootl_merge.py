"""python -m grootl.merge: the adapter folded into a plain Mamba checkpoint that both classes load."""

import json
import os

import pytest
import torch
from transformers import MambaForCausalLM

from grootl import merge as merge_cli
from grootl.lora import add_lora, load_lora
from grootl.merge import merge
from grootl.modeling import GrootLMambaForCausalLM
from grootl.testing import save_tiny_checkpoint

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    """A base checkpoint and an adapter with random (non-zero) LoRA weights on all four targets."""
    root = tmp_path_factory.mktemp("merge")
    save_tiny_checkpoint(root / "base", seed=3)
    peft = add_lora(GrootLMambaForCausalLM.from_pretrained(root / "base"))
    torch.manual_seed(4)
    with torch.no_grad():
        for name, parameter in peft.named_parameters():
            if "lora_" in name:
                parameter.normal_(0, 0.2)
    peft.save_pretrained(root / "adapter")
    return root


def test_merged_checkpoint_loads_in_both_classes_with_the_same_logits(adapter, generator):
    path = merge(adapter / "base", adapter / "adapter", adapter / "merged")
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "mamba" and config["architectures"] == ["MambaForCausalLM"]
    assert not {"tree_scale", "use_tree", "contex_len_mode"} & set(config)
    assert config["tie_word_embeddings"] is False
    assert (path / "tokenizer_config.json").is_file()

    ids = torch.randint(1, 200, (2, 13), generator=generator)
    peft = load_lora(GrootLMambaForCausalLM.from_pretrained(adapter / "base"), str(adapter / "adapter")).eval()
    grootl = GrootLMambaForCausalLM.from_pretrained(path).eval()
    stock = MambaForCausalLM.from_pretrained(path).eval()
    with torch.no_grad():
        expected = peft(ids, contex_len=[6, 13]).logits
        torch.testing.assert_close(grootl(ids, contex_len=[6, 13]).logits, expected, atol=1e-5, rtol=1e-4)
        peft.base_model.model.config.use_tree = False
        torch.testing.assert_close(stock(ids).logits, peft(ids).logits, atol=1e-5, rtol=1e-4)
    # The untied head keeps the base matrix the adapter was trained against.
    base = MambaForCausalLM.from_pretrained(adapter / "base")
    torch.testing.assert_close(stock.lm_head.weight, base.lm_head.weight, atol=0, rtol=0)
    assert not torch.equal(stock.backbone.embeddings.weight, base.backbone.embeddings.weight)


def test_tie_embeddings_reproduces_the_release(adapter):
    untied = MambaForCausalLM.from_pretrained(merge(adapter / "base", adapter / "adapter", adapter / "untied"))
    path = merge_cli.main(
        ["--base_model", str(adapter / "base"), "--peft_model", str(adapter / "adapter"),
         "--save_path", str(adapter / "tied"), "--tie_embeddings"]
    )  # fmt: skip
    tied = MambaForCausalLM.from_pretrained(path)
    assert json.loads((path / "config.json").read_text()).get("tie_word_embeddings", True) is True
    assert tied.lm_head.weight.data_ptr() == tied.backbone.embeddings.weight.data_ptr()
    torch.testing.assert_close(tied.backbone.embeddings.weight, untied.backbone.embeddings.weight, atol=0, rtol=0)


def test_bad_arguments_are_reported(adapter, tmp_path):
    with pytest.raises(ValueError, match="`save_path`.*exists"):
        merge(adapter / "base", adapter / "adapter", adapter / "base")
    with pytest.raises(ValueError, match="`peft_model`.*adapter_config.json"):
        merge(adapter / "base", adapter / "base", tmp_path / "out")
    with pytest.raises(ValueError, match="`base_model`"):
        merge(tmp_path / "nothing", adapter / "adapter", tmp_path / "out")
    with pytest.raises(ValueError, match="`dtype`"):
        merge(adapter / "base", adapter / "adapter", tmp_path / "out", dtype="int8")
    assert not (tmp_path / "out").exists()


def test_overwrite_replaces_the_whole_folder_with_plain_permissions(adapter, tmp_path):
    (tmp_path / "plain").mkdir()
    plain_mode = (tmp_path / "plain").stat().st_mode & 0o777
    target = tmp_path / "merged"
    target.mkdir()
    (target / "stale.bin").write_text("from an earlier merge")
    path = merge(adapter / "base", adapter / "adapter", target, overwrite=True)
    assert "stale.bin" not in os.listdir(path) and (path / "config.json").is_file()
    assert path.stat().st_mode & 0o777 == plain_mode  # readable by others, like any saved checkpoint
    assert sorted(os.listdir(tmp_path)) == ["merged", "plain"]  # no staging folder left behind
