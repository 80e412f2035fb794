"""Language-side trees: candidate edges and the tree built from them."""

import brute_force as bf
import pytest
import torch
from conftest import DEVICES

import tree_scan_lan


def release_candidate_pairs(seq_len, prompt_len):
    """The edge list of the release, written out as SPEC §1 states it."""
    if prompt_len <= 2:
        return [(i, i + 1) for i in range(seq_len - 1)]
    pairs = [(i, i + 1) for i in range(seq_len - prompt_len)]
    for i in range(seq_len - prompt_len, seq_len - 3):
        pairs += [(i, i + 1), (i, i + 2), (i, i + 3)]
    return pairs + [(seq_len - 3, seq_len - 2), (seq_len - 3, seq_len - 1), (seq_len - 2, seq_len - 1)]


def real_edges(candidates):
    return [tuple(e) for e in candidates.tolist() if e[0] != e[1]]


@pytest.mark.parametrize("seq_len", [3, 4, 5, 9, 30])
def test_candidates_are_the_release_edge_list_in_its_order(seq_len):
    for prompt_len in range(0, seq_len + 1):
        candidates = tree_scan_lan.candidate_edges(seq_len, prompt_len)[0]
        assert real_edges(candidates) == release_candidate_pairs(seq_len, prompt_len), prompt_len


def test_candidates_of_a_batch_follow_each_rows_prompt_length():
    candidates = tree_scan_lan.candidate_edges(10, torch.tensor([0, 4, 10, 25]))
    assert candidates.shape == (4, 27, 2)
    for row, prompt_len in enumerate([0, 4, 10, 10]):  # lengths are clamped to the sequence
        assert real_edges(candidates[row]) == release_candidate_pairs(10, prompt_len)


@pytest.mark.parametrize("device", DEVICES)
def test_language_tree_is_the_mst_of_the_release_candidates(device, generator):
    seq_len, prompt_lens = 23, [0, 2, 7, 23]
    features = torch.randn(4, 16, seq_len, generator=generator, dtype=torch.float64)
    features[1] = features[1].round()  # ties
    tree = tree_scan_lan.language_tree(features.to(device), prompt_lens)
    for row, prompt_len in enumerate(prompt_lens):
        pairs = release_candidate_pairs(seq_len, prompt_len)
        a = features[row][:, [p[0] for p in pairs]]
        b = features[row][:, [p[1] for p in pairs]]
        weights = torch.exp(-torch.cosine_similarity(a, b, dim=0))
        expected = bf.kruskal(pairs, weights.tolist(), seq_len)
        assert [tuple(e) for e in tree[row].tolist()] == expected


def test_chain_tree_rooted_at_zero_orders_the_chain():
    order = tree_scan_lan.bfs(tree_scan_lan.chain_tree(2, 6))
    assert order.order.tolist() == [list(range(6))] * 2
    assert order.parent.tolist() == [[-1, 0, 1, 2, 3, 4]] * 2
