"""python -m grootl.merge: the adapter folded into a plain Mamba checkpoint that both classes load."""

import json
import os
import shutil

import pytest
import torch
from transformers import MambaForCausalLM

from grootl import merge as merge_cli
from grootl.configuration import write_tree_settings
from grootl.lora import add_lora, load_lora, make_lora_config
from grootl.merge import merge
from grootl.modeling import GrootLMambaForCausalLM
from grootl.testing import save_tiny_checkpoint, tiny_mamba_config

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
    # No grootl_tree.json beside this adapter: the paper's settings.
    assert (config["use_tree"], config["tree_scale"], config["contex_len_mode"]) == (True, 0.3, "per_row")
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


def test_the_adapters_tree_settings_survive_the_merge(adapter, tmp_path, generator):
    """An adapter trained as plain Mamba + LoRA (or with another tree scale) stays that model."""
    trained_as = GrootLMambaForCausalLM.from_pretrained(adapter / "base", use_tree=False, tree_scale=0.7)
    settings_folder = tmp_path / "adapter"
    shutil.copytree(adapter / "adapter", settings_folder)
    write_tree_settings(trained_as.config, settings_folder)
    path = merge(adapter / "base", settings_folder, tmp_path / "merged")
    merged = GrootLMambaForCausalLM.from_pretrained(path).eval()
    assert (merged.config.use_tree, merged.config.tree_scale) == (False, 0.7)
    peft = load_lora(trained_as, str(settings_folder)).eval()
    ids = torch.randint(1, 200, (2, 11), generator=generator)
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, peft(ids).logits, atol=1e-5, rtol=1e-4)


def test_dt_proj_adapters_are_refused():
    """The mixer reads dt_proj.weight itself: an adapter there would silently do nothing."""
    model = GrootLMambaForCausalLM(tiny_mamba_config(50))
    with pytest.raises(ValueError, match="`dt_proj` is not supported"):
        add_lora(model, make_lora_config(target_modules=["in_proj", "dt_proj"]))


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
