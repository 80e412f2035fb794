"""Generation with the recurrent cache: each new token is an O(1) update of the combined
state, and must give what recomputing the whole sequence (prompt tree + chain) gives."""

import pytest
import torch
from transformers import MambaForCausalLM
from transformers.cache_utils import DynamicCache

from grootl.modeling import GrootLMambaForCausalLM
from grootl.testing import tiny_mamba_config

VOCAB = 53
PAD = 0


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(1)
    model = GrootLMambaForCausalLM(tiny_mamba_config(VOCAB)).eval()
    with torch.no_grad():
        for layer in model.backbone.layers:
            layer.mixer.dt_proj.bias.add_(2.0)
    return model


def left_padded_prompts(generator, lengths):
    longest = max(lengths)
    ids = torch.full((len(lengths), longest), PAD, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, longest - n :] = torch.randint(1, VOCAB, (n,), generator=generator)
        mask[i, longest - n :] = 1
    return ids, mask


def test_greedy_generation_with_cache_equals_full_recomputation(model, generator):
    ids, mask = left_padded_prompts(generator, [9, 5, 7])
    new_tokens = 6
    out = model.generate(
        ids,
        attention_mask=mask,
        max_new_tokens=new_tokens,
        do_sample=False,
        pad_token_id=PAD,
        eos_token_id=None,
        output_scores=True,
        return_dict_in_generate=True,
    )
    assert out.sequences.shape == (3, ids.shape[1] + new_tokens)
    prompt_lengths = mask.sum(1)
    for step, scores in enumerate(out.scores):
        prefix = out.sequences[:, : ids.shape[1] + step]
        prefix_mask = torch.cat([mask, torch.ones(3, step, dtype=torch.long)], dim=1)
        with torch.no_grad():
            full = model(prefix, attention_mask=prefix_mask, contex_len=prompt_lengths).logits[:, -1]
        torch.testing.assert_close(scores, full, atol=1e-5, rtol=1e-4)
        chosen = out.sequences[:, ids.shape[1] + step]
        top2 = full.topk(2, dim=-1).values
        clear = (top2[:, 0] - top2[:, 1]) > 1e-4
        assert torch.equal(chosen[clear], full.argmax(-1)[clear])


def test_generation_without_cache_gives_the_same_tokens(model, generator):
    ids, mask = left_padded_prompts(generator, [6, 8])
    kwargs = dict(attention_mask=mask, max_new_tokens=5, do_sample=False, pad_token_id=PAD, eos_token_id=None)
    cached = model.generate(ids, use_cache=True, **kwargs)
    recomputed = model.generate(ids, use_cache=False, **kwargs)
    assert torch.equal(cached, recomputed)


def test_a_chunk_after_a_cached_prefix_is_continuation(model, generator):
    ids = torch.randint(1, VOCAB, (2, 14), generator=generator)
    prompt_len = 8
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        first = model(ids[:, :prompt_len], cache_params=cache, use_cache=True).logits
        rest = model(ids[:, prompt_len:], cache_params=cache, use_cache=True).logits
        full = model(ids, contex_len=prompt_len).logits
    torch.testing.assert_close(torch.cat([first, rest], dim=1), full, atol=1e-5, rtol=1e-4)


def test_tree_off_generation_equals_transformers_mamba(model, generator):
    stock = MambaForCausalLM(model.config).eval()
    stock.load_state_dict(model.state_dict())
    ids = torch.randint(1, VOCAB, (1, 7), generator=generator)
    kwargs = dict(max_new_tokens=6, do_sample=False, pad_token_id=PAD, eos_token_id=None)
    model.config.use_tree = False
    try:
        ours = model.generate(ids, **kwargs)
    finally:
        model.config.use_tree = True
    assert torch.equal(ours, stock.generate(ids, **kwargs))


def test_generation_from_embeddings_and_several_sequences_per_prompt(model, generator):
    ids, mask = left_padded_prompts(generator, [7, 4])
    kwargs = dict(attention_mask=mask, max_new_tokens=4, do_sample=False, pad_token_id=PAD, eos_token_id=None)
    from_ids = model.generate(ids, **kwargs)
    from_embeddings = model.generate(inputs_embeds=model.backbone.embeddings(ids), **kwargs)
    assert torch.equal(from_embeddings, from_ids[:, ids.shape[1] :])
    beams = model.generate(ids, num_beams=3, num_return_sequences=2, **kwargs)
    assert beams.shape == (4, ids.shape[1] + 4)


def test_without_a_mask_the_prompt_is_what_generation_infers(model, generator):
    """No attention_mask: generation infers one from the pad tokens (pad != EOS), and the
    tree covers each row's real tokens, as with that mask given explicitly."""
    ids, mask = left_padded_prompts(generator, [7, 4])
    kwargs = dict(max_new_tokens=4, do_sample=False, pad_token_id=PAD, eos_token_id=VOCAB - 1)
    inferred = model.generate(ids, **kwargs)
    explicit = model.generate(ids, attention_mask=mask, **kwargs)
    assert torch.equal(inferred, explicit)
    assert torch.equal(model.generate(ids, use_cache=False, **kwargs), explicit)


def test_a_list_of_prompt_lengths_follows_beams_and_sequences(model, generator):
    ids = torch.randint(1, VOCAB, (2, 7), generator=generator)
    kwargs = dict(max_new_tokens=4, do_sample=False, pad_token_id=PAD, eos_token_id=None, num_beams=2,
                  num_return_sequences=2, output_scores=True, return_dict_in_generate=True)
    from_list = model.generate(ids, contex_len=[3, 5], **kwargs)
    from_tensor = model.generate(ids, contex_len=torch.tensor([3, 5]), **kwargs)
    assert torch.equal(from_list.sequences, from_tensor.sequences)
    torch.testing.assert_close(from_list.scores, from_tensor.scores)
    whole_prompt = model.generate(ids, contex_len=7, **kwargs)
    assert not torch.allclose(from_list.scores[0], whole_prompt.scores[0])  # the lengths matter
