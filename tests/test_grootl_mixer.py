"""GrootLMixer against the plain-PyTorch reference, transformers' MambaMixer, and bad inputs."""

import pytest
import torch
from transformers import MambaConfig
from transformers.models.mamba.modeling_mamba import MambaMixer

from grootl.configuration import GrootLMambaConfig
from grootl.modeling import GrootLMixer
from grootl.prompts import PromptLayout, prompt_lengths_from_labels
from grootl.reference import kruskal, reference_mixer_forward, release_candidate_edges


def make_mixer(generator, **overrides):
    values = dict(hidden_size=8, state_size=3, expand=2, conv_kernel=3, time_step_rank=2, num_hidden_layers=1)
    values.update(overrides)
    config = GrootLMambaConfig(**values)
    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
    mixer = GrootLMixer(config, layer_idx=0)
    with torch.no_grad():
        # Larger time steps than the default init so the decays (and the tree) matter.
        mixer.dt_proj.bias.add_(2.0)
    return mixer


def right_and_left_padded_mask(batch, seq_len):
    mask = torch.ones(batch, seq_len, dtype=torch.long)
    mask[1, :3] = 0  # left padding
    mask[2, -2:] = 0  # right padding
    mask[3, :1] = 0  # both
    mask[3, -2:] = 0
    return mask


@pytest.mark.parametrize("seq_len", [1, 2, 3, 11])
def test_mixer_matches_reference_unpadded(generator, seq_len):
    mixer = make_mixer(generator)
    hidden = torch.randn(3, seq_len, 8, generator=generator)
    lengths = [0, min(3, seq_len), seq_len]
    with torch.no_grad():
        fast = mixer(hidden, contex_len=lengths)
        slow = reference_mixer_forward(mixer, hidden, lengths)
    torch.testing.assert_close(fast, slow, atol=2e-5, rtol=1e-4)


def test_mixer_matches_reference_with_right_and_left_padding(generator):
    mixer = make_mixer(generator)
    hidden = torch.randn(4, 12, 8, generator=generator)
    mask = right_and_left_padded_mask(4, 12)
    lengths = [12, 4, 7, 5]
    with torch.no_grad():
        fast = mixer(hidden, attention_mask=mask, contex_len=lengths)
        slow = reference_mixer_forward(mixer, hidden, lengths, mask)
    real = mask.bool().unsqueeze(-1)
    torch.testing.assert_close(fast * real, slow * real, atol=2e-5, rtol=1e-4)


def test_mixer_gradients_match_reference(generator):
    mixer = make_mixer(generator)
    hidden = torch.randn(2, 9, 8, generator=generator)
    lengths = [6, 9]
    weight = torch.randn(2, 9, 8, generator=generator)

    def grads(forward):
        mixer.zero_grad()
        x = hidden.clone().requires_grad_(True)
        (forward(x) * weight).sum().backward()
        return [x.grad] + [p.grad.clone() for p in mixer.parameters()]

    fast = grads(lambda x: mixer(x, contex_len=lengths))
    slow = grads(lambda x: reference_mixer_forward(mixer, x, lengths))
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)


def test_tree_scale_and_batch_min_options(generator):
    mixer = make_mixer(generator, tree_scale=0.7, contex_len_mode="batch_min")
    hidden = torch.randn(3, 10, 8, generator=generator)
    with torch.no_grad():
        fast = mixer(hidden, contex_len=[9, 4, 10])
        slow = reference_mixer_forward(mixer, hidden, [4, 4, 4], tree_scale=0.7)
    torch.testing.assert_close(fast, slow, atol=2e-5, rtol=1e-4)


def test_tree_off_equals_transformers_mixer(generator):
    mixer = make_mixer(generator, use_tree=False)
    fields = {k: v for k, v in mixer.config.to_dict().items() if k in MambaConfig.__dataclass_fields__}
    stock = MambaMixer(MambaConfig(**fields), 0)
    stock.load_state_dict(mixer.state_dict())
    hidden = torch.randn(3, 13, 8, generator=generator)
    mask = torch.ones(3, 13, dtype=torch.long)
    mask[0, :4] = 0
    mask[1, -3:] = 0
    with torch.no_grad():
        ours, theirs = mixer(hidden, attention_mask=mask), stock(hidden, attention_mask=mask)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)


def test_short_prompts_make_the_tree_a_chain(generator):
    mixer = make_mixer(generator)
    hidden = torch.randn(2, 7, 8, generator=generator)
    with torch.no_grad():
        on = mixer(hidden, contex_len=[2, 1])
        mixer.config.tree_scale = 0.0
        chain_only_scaled = reference_mixer_forward(mixer, hidden, [0, 0], use_tree=False)
    assert not torch.allclose(on, chain_only_scaled)
    # h = (1 + 0.3) * chain when the tree is the chain
    mixer.config.tree_scale = 0.3
    with torch.no_grad():
        slow = reference_mixer_forward(mixer, hidden, [2, 1])
    torch.testing.assert_close(on, slow, atol=2e-5, rtol=1e-4)


def test_release_candidate_edges_and_kruskal():
    assert release_candidate_edges(5, 2) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert release_candidate_edges(6, 4) == [(0, 1), (1, 2), (2, 3), (2, 4), (2, 5), (3, 4), (3, 5), (4, 5)]
    tree = kruskal([(0, 1), (1, 2), (0, 2)], [1.0, 1.0, 1.0], 3)
    assert tree == [(0, 1), (1, 2)]  # ties go to the earlier edge


@pytest.mark.parametrize(
    "contex_len, error, words",
    [
        ([3, 4], ValueError, "one length per row"),
        (torch.tensor([[1, 2, 3]]), ValueError, "scalar or a (B,)"),
        ([-1, 2, 3], ValueError, ">= 0"),
        ([3, 99, 3], ValueError, "row 1"),
        (2.5, TypeError, "int"),
        (torch.tensor([1.0, 2.0, 3.0]), TypeError, "integer tensor"),
        ([1, 2.0, 3], TypeError, "ints"),
        ("3", TypeError, "int"),
    ],
)
def test_bad_contex_len_names_the_argument(generator, contex_len, error, words):
    mixer = make_mixer(generator)
    with pytest.raises(error, match="contex_len") as info:
        mixer(torch.randn(3, 6, 8), contex_len=contex_len)
    assert words in str(info.value)


def test_bad_attention_mask_names_the_argument(generator):
    mixer = make_mixer(generator)
    hidden = torch.randn(2, 6, 8)
    holes = torch.tensor([[1, 1, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    with pytest.raises(ValueError, match="`attention_mask` row 0 has padding between"):
        mixer(hidden, attention_mask=holes)
    with pytest.raises(ValueError, match="`attention_mask` must be"):
        PromptLayout.build(None, 2, 6, torch.ones(2, 5))
    with pytest.raises(ValueError, match="contex_len` of row 0 is 6, more than the row's 4"):
        mixer(hidden, attention_mask=torch.tensor([[0, 0, 1, 1, 1, 1]] * 2), contex_len=6)


def test_prompt_lengths_from_labels_ignore_padding():
    labels = torch.tensor([[-100, -100, 5, 6, -100], [-100, 7, 8, 9, 9]])
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    assert prompt_lengths_from_labels(labels, mask).tolist() == [2, 1]
    assert prompt_lengths_from_labels(labels).tolist() == [3, 1]
    with pytest.raises(ValueError, match="`labels` must be a \\(B, L\\) tensor"):
        prompt_lengths_from_labels(labels[0])
