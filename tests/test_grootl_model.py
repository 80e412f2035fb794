"""GrootL causal LM: loading Mamba checkpoints, equality with Mamba when the tree is off,
causality, per-row prompt lengths in padded batches, the training default of contex_len."""

import pytest
import torch
from transformers import MambaForCausalLM

from conftest import DEVICES
from grootl.modeling import GrootLMambaForCausalLM, GrootLMixer
from grootl.testing import tiny_mamba_config

VOCAB = 61


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A stock Mamba checkpoint directory with a random tiny model."""
    directory = tmp_path_factory.mktemp("mamba")
    torch.manual_seed(0)
    model = MambaForCausalLM(tiny_mamba_config(VOCAB))
    with torch.no_grad():
        for layer in model.backbone.layers:
            layer.mixer.dt_proj.bias.add_(2.0)  # larger steps: the tree branch matters
    model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def model(checkpoint):
    return GrootLMambaForCausalLM.from_pretrained(checkpoint).eval()


def test_loads_a_plain_mamba_checkpoint(checkpoint, model):
    assert all(isinstance(layer.mixer, GrootLMixer) for layer in model.backbone.layers)
    assert model.config.model_type == "mamba"
    assert (model.config.tree_scale, model.config.use_tree, model.config.contex_len_mode) == (0.3, True, "per_row")
    stock = MambaForCausalLM.from_pretrained(checkpoint)
    for name, tensor in stock.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], tensor, atol=0, rtol=0)


def test_tree_off_equals_transformers_mamba(checkpoint, generator):
    grootl = GrootLMambaForCausalLM.from_pretrained(checkpoint, use_tree=False).eval()
    stock = MambaForCausalLM.from_pretrained(checkpoint).eval()
    ids = torch.randint(0, VOCAB, (3, 17), generator=generator)
    labels = ids.clone()
    labels[:, :5] = -100
    with torch.no_grad():
        a, b = grootl(ids, labels=labels), stock(ids, labels=labels)
    torch.testing.assert_close(a.logits, b.logits, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(a.loss, b.loss, atol=1e-6, rtol=1e-5)


def test_tree_changes_the_prompt_logits(model, generator):
    ids = torch.randint(0, VOCAB, (1, 12), generator=generator)
    with torch.no_grad():
        with_tree = model(ids, contex_len=8).logits
        model.config.use_tree = False
        without = model(ids).logits
        model.config.use_tree = True
    assert not torch.allclose(with_tree, without, atol=1e-4)


def test_a_later_continuation_token_changes_no_earlier_logit(model, generator):
    prompt_len, seq_len = 7, 15
    ids = torch.randint(0, VOCAB, (1, seq_len), generator=generator)
    for changed in range(prompt_len, seq_len):
        other = ids.clone()
        other[0, changed] = (ids[0, changed] + 1 + int(torch.randint(0, VOCAB - 1, (1,), generator=generator))) % VOCAB
        with torch.no_grad():
            a = model(ids, contex_len=prompt_len).logits
            b = model(other, contex_len=prompt_len).logits
        torch.testing.assert_close(a[:, :changed], b[:, :changed], atol=0, rtol=0)
        assert not torch.allclose(a[:, changed:], b[:, changed:])


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_padded_batch_equals_rows_one_by_one(model, generator, padding_side):
    lengths, prompts = [13, 6, 9, 3], [8, 6, 4, 3]
    rows = [torch.randint(1, VOCAB, (n,), generator=generator) for n in lengths]
    longest = max(lengths)
    ids = torch.zeros(len(rows), longest, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        where = slice(0, len(row)) if padding_side == "right" else slice(longest - len(row), longest)
        ids[i, where], mask[i, where] = row, 1
    with torch.no_grad():
        batched = model(ids, attention_mask=mask, contex_len=prompts).logits
        for i, row in enumerate(rows):
            alone = model(row.unsqueeze(0), contex_len=prompts[i]).logits[0]
            torch.testing.assert_close(batched[i][mask[i].bool()], alone, atol=2e-5, rtol=1e-4)


def test_batch_min_mode_reproduces_the_release(checkpoint, generator):
    release = GrootLMambaForCausalLM.from_pretrained(checkpoint, contex_len_mode="batch_min").eval()
    ids = torch.randint(0, VOCAB, (3, 11), generator=generator)
    with torch.no_grad():
        batched = release(ids, contex_len=[9, 5, 7]).logits
        for i in range(3):
            alone = release(ids[i : i + 1], contex_len=5).logits
            torch.testing.assert_close(batched[i : i + 1], alone, atol=2e-5, rtol=1e-4)


def test_training_default_is_the_number_of_masked_labels_per_row(model, generator):
    ids = torch.randint(1, VOCAB, (2, 10), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0  # right padding, labelled -100 like the prompt
    labels = ids.clone()
    labels[0, :6] = -100
    labels[1, :3] = -100
    labels[1, 7:] = -100
    with torch.no_grad():
        by_labels = model(ids, attention_mask=mask, labels=labels)
        explicit = model(ids, attention_mask=mask, contex_len=[6, 3]).logits
    torch.testing.assert_close(by_labels.logits, explicit, atol=0, rtol=0)
    assert torch.isfinite(by_labels.loss)


def test_activation_checkpointing_gives_the_same_gradients(checkpoint, generator):
    ids = torch.randint(0, VOCAB, (2, 12), generator=generator)
    labels = ids.clone()
    labels[:, :5] = -100
    grads = []
    for checkpointing in (False, True):
        model = GrootLMambaForCausalLM.from_pretrained(checkpoint)
        model.train()
        if checkpointing:
            model.activation_checkpointing_enable()
        model(ids, labels=labels).loss.backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=1e-6, rtol=1e-5)


def test_bfloat16_runs_close_to_float32(checkpoint, generator):
    ids = torch.randint(0, VOCAB, (2, 10), generator=generator)
    full = GrootLMambaForCausalLM.from_pretrained(checkpoint).eval()
    half = GrootLMambaForCausalLM.from_pretrained(checkpoint, dtype=torch.bfloat16).eval()
    with torch.no_grad():
        a, b = full(ids, contex_len=6).logits, half(ids, contex_len=6).logits
    assert b.dtype == torch.float32  # the head's output is upcast, as in transformers
    assert (a - b).abs().max() < 0.1 * a.abs().max()


@pytest.mark.parametrize("device", DEVICES)
def test_runs_on_every_device(model, generator, device):
    ids = torch.randint(0, VOCAB, (2, 9), generator=generator)
    moved = GrootLMambaForCausalLM(model.config).to(device).eval()
    moved.load_state_dict(model.state_dict())
    with torch.no_grad():
        expected = model(ids, contex_len=[5, 9]).logits
        got = moved(ids.to(device), contex_len=torch.tensor([5, 9], device=device)).logits.cpu()
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
