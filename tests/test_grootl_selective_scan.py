"""GrootL's fused selective tree scan (``tree_scan_lan.selective_tree_scan``) against its twins:
a brute-force loop over SPEC §4, the unfused reference (``tree_scan_lan.selective_reference``),
and, inside the model, the unfused mixer path (``fused_scan=False``)."""


import pytest
import torch
from transformers import MambaConfig
from transformers.cache_utils import DynamicCache

import tree_scan_lan
from tree_scan_lan import _library, selective_reference
from grootl.configuration import GrootLMambaConfig
from grootl.lm_eval_model import GrootLEvalModel
from grootl.modeling import GrootLMambaForCausalLM, GrootLMixer
from grootl.testing import tiny_mamba_config, train_tokenizer

from conftest import run_in_python_without
from selective_scan_brute_force import brute_force, random_problem

compiled = pytest.mark.skipif(_library.BACKEND == "reference", reason="the extension is not built")


def op_arguments(x, delta, A, B, C, D, tree, tree_scale):
    order = (tree.order, tree.parent) if tree is not None else (None, None)
    return (x, delta, A, B, C, D, *order, tree_scale)


# ---------------------------------------------------------------------------------------
# The operator


@pytest.mark.parametrize("batch, length, channels, state", [(1, 1, 1, 1), (2, 2, 3, 2), (3, 9, 5, 3), (2, 13, 67, 16)])
@pytest.mark.parametrize("with_tree", [True, False])
def test_forward_equals_brute_force(generator, one_thread, batch, length, channels, state, with_tree):
    x, delta, A, B, C, D, tree = random_problem(generator, batch, length, channels, state)
    tree = tree if with_tree else None
    y, final = tree_scan_lan.selective_tree_scan(x, delta, A, B, C, D, tree, 0.3)
    want_y, want_final = brute_force(x, delta, A, B, C, D, tree, 0.3)
    assert y.dtype == x.dtype and final.dtype == torch.float32
    torch.testing.assert_close(y.double(), want_y, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(final.double(), want_final, atol=1e-5, rtol=1e-5)


@compiled
@pytest.mark.parametrize(
    "dtype, delta_dtype, tolerance",
    [(torch.float32, None, 2e-5), (torch.bfloat16, None, 1e-2), (torch.bfloat16, torch.bfloat16, 1e-2),
     (torch.float16, None, 2e-3)],
)
@pytest.mark.parametrize("batch, length, channels, state", [(1, 1, 2, 1), (2, 2, 3, 4), (3, 17, 70, 16)])
def test_kernel_equals_reference_forward_and_backward(
    generator, one_thread, dtype, delta_dtype, tolerance, batch, length, channels, state
):
    problem = random_problem(generator, batch, length, channels, state, dtype, delta_dtype)
    for tree, tree_scale in ((problem[-1], 0.3), (None, 0.3), (None, 0.0)):
        args = op_arguments(*problem[:-1], tree, tree_scale)
        y, final = torch.ops.tree_scan_lan.selective_tree_scan(*args)
        want_y, want_final = selective_reference.selective_tree_scan(*args)
        torch.testing.assert_close(y.float(), want_y.float(), atol=tolerance, rtol=tolerance)
        torch.testing.assert_close(final, want_final, atol=tolerance, rtol=tolerance)

        grad_y = torch.randn(y.shape, generator=generator).to(dtype)
        grad_final = torch.randn(final.shape, generator=generator)
        for seed in (grad_final, None):
            grads = torch.ops.tree_scan_lan.selective_tree_scan_backward(grad_y, seed, *args)
            want = selective_reference.selective_tree_scan_backward(grad_y, seed, *args)
            for name, got, expected, given in zip(("x", "delta", "A", "B", "C", "D"), grads, want, args):
                assert got.dtype == given.dtype and got.shape == given.shape, name
                scale = expected.float().abs().max().clamp_min(1.0)
                torch.testing.assert_close(got.float() / scale, expected.float() / scale, atol=tolerance,
                                           rtol=tolerance, msg=lambda m, name=name: f"grad {name}: {m}")


@compiled
def test_kernel_reads_any_strides(generator, one_thread):
    x, delta, A, B, C, D, tree = random_problem(generator, 2, 11, 9, 5)
    # Channel-major x and delta (as the conv leaves them), B and C slices of one projection.
    x_cm = x.transpose(1, 2).contiguous().transpose(1, 2)
    delta_cm = delta.transpose(1, 2).contiguous().transpose(1, 2)
    projection = torch.cat([B, torch.randn(2, 11, 3, generator=generator), C], dim=-1)
    B_view, C_view = projection[..., :5], projection[..., 8:]
    grad_y = torch.randn(2, 11, 9, generator=generator).transpose(1, 2).contiguous().transpose(1, 2)
    dense = op_arguments(x, delta, A, B, C, D, tree, 0.3)
    strided = op_arguments(x_cm, delta_cm, A.t().contiguous().t(), B_view, C_view, D, tree, 0.3)
    for got, want in zip(torch.ops.tree_scan_lan.selective_tree_scan(*strided),
                         torch.ops.tree_scan_lan.selective_tree_scan(*dense)):
        torch.testing.assert_close(got, want, atol=0, rtol=0)
    for got, want in zip(torch.ops.tree_scan_lan.selective_tree_scan_backward(grad_y, None, *strided),
                         torch.ops.tree_scan_lan.selective_tree_scan_backward(grad_y.contiguous(), None, *dense)):
        torch.testing.assert_close(got, want, atol=0, rtol=0)


@compiled
def test_results_do_not_depend_on_the_number_of_threads(generator):
    problem = random_problem(generator, 3, 21, 150, 16)
    args = op_arguments(*problem, 0.3)
    grad_y = torch.randn(3, 21, 150, generator=generator)
    results = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(torch.ops.tree_scan_lan.selective_tree_scan(*args)
                           + torch.ops.tree_scan_lan.selective_tree_scan_backward(grad_y, None, *args))
    finally:
        torch.set_num_threads(before)
    for one, two in zip(*results):
        assert torch.equal(one, two)


def test_an_empty_batch(generator):
    x, delta, A, B, C, D, tree = random_problem(generator, 0, 5, 3, 2, prompts=torch.zeros(0, dtype=torch.long))
    x.requires_grad_(True)
    y, final = tree_scan_lan.selective_tree_scan(x, delta, A, B, C, D, tree)
    y.sum().backward()
    assert y.shape == (0, 5, 3) and final.shape == (0, 3, 2) and x.grad.shape == (0, 5, 3)


@pytest.mark.parametrize("with_tree", [True, False])
def test_gradcheck_all_six_inputs_and_both_outputs(generator, one_thread, with_tree):
    x, delta, A, B, C, D, tree = random_problem(generator, 2, 6, 3, 2, torch.float64, prompts=torch.tensor([6, 4]))
    tree = tree if with_tree else None
    inputs = [t.clone().requires_grad_(True) for t in (x, delta, A, B, C, D)]
    assert torch.autograd.gradcheck(lambda *a: tree_scan_lan.selective_tree_scan(*a, tree, 0.3), inputs)


@compiled
def test_opcheck(generator):
    x, delta, A, B, C, D, tree = random_problem(generator, 2, 7, 5, 3)
    bf16 = random_problem(generator, 1, 4, 3, 2, torch.bfloat16)
    cases = [
        op_arguments(x, delta, A, B, C, D, tree, 0.3),
        op_arguments(x, delta, A, B, C, D, None, 0.3),
        (*op_arguments(x, delta, A, B, C, D, tree, 0.3), [torch.zeros(3)]),  # a plan, ignored on the CPU
        op_arguments(*bf16[:-1], bf16[-1], 0.3),
    ]
    for args in cases:
        args = tuple(a.clone().requires_grad_(True) if isinstance(a, torch.Tensor) and a.is_floating_point() else a
                     for a in args)
        torch.library.opcheck(torch.ops.tree_scan_lan.selective_tree_scan.default, args)


@compiled
def test_python_schemas_equal_the_compiled_ones():
    for name, schema in _library.SCHEMAS.items():
        assert str(getattr(torch.ops.tree_scan_lan, name).default._schema) == f"tree_scan_lan::{schema}"


def test_double_backward_is_refused(generator):
    x, delta, A, B, C, D, tree = random_problem(generator, 1, 4, 2, 2)
    x.requires_grad_(True)
    y, _ = tree_scan_lan.selective_tree_scan(x, delta, A, B, C, D, tree)
    (grad,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="first derivatives only"):
        grad.sum().backward()


def test_bad_arguments_name_the_argument(generator):
    x, delta, A, B, C, D, tree = random_problem(generator, 2, 5, 3, 2)
    good = dict(x=x, delta=delta, A=A, B=B, C=C, D=D, tree=tree)
    cases = [
        (dict(x=x[0]), ValueError, "`x` must be (B, L, d)"),
        (dict(x=x.long()), TypeError, "`x` must have dtype"),
        (dict(delta=delta[:, :4]), ValueError, "`delta` must have shape (2, 5, 3)"),
        (dict(delta=delta.double()), TypeError, "`delta` must have dtype"),
        (dict(A=A[:2]), ValueError, "`A` must be (d, N) with d = 3"),
        (dict(A=A.double()), TypeError, "`A` must have dtype float32"),
        (dict(B=B[:, :, :1]), ValueError, "`B` must have shape (2, 5, 2)"),
        (dict(C=C.bfloat16()), TypeError, "`C` must have dtype float32"),
        (dict(D=D[:2]), ValueError, "`D` must have shape (3,)"),
        (dict(tree=tree.order), TypeError, "`tree` must be a tree_scan.TreeOrder"),
        (dict(tree=tree._replace(parent=tree.parent[:, :4])), ValueError, "`tree.parent` must be (B, L)"),
        (dict(tree=tree._replace(order=tree.order.int())), TypeError, "`tree.order` must have dtype int64"),
    ]
    for change, error, words in cases:
        with pytest.raises(error) as info:
            tree_scan_lan.selective_tree_scan(**{**good, **change})
        assert words in str(info.value), (change.keys(), str(info.value))
    with pytest.raises(ValueError, match="`tree_scale` must be finite"):
        tree_scan_lan.selective_tree_scan(**good, tree_scale=float("nan"))
    with pytest.raises(TypeError, match="`tree_plan` must be a list of tensors"):
        tree_scan_lan.selective_tree_scan(**good, tree_plan=[1, 2])


@compiled
def test_kernel_rejects_an_order_that_is_not_a_bfs(generator):
    x, delta, A, B, C, D, tree = random_problem(generator, 2, 6, 3, 2, prompts=torch.tensor([6, 6]))
    not_a_permutation = tree._replace(order=torch.zeros_like(tree.order))
    with pytest.raises(ValueError, match="tree_order\\[0\\] is not a permutation"):
        tree_scan_lan.selective_tree_scan(x, delta, A, B, C, D, not_a_permutation)
    children_first = tree._replace(order=tree.order.flip(1))
    with pytest.raises(ValueError, match="comes before its parent"):
        tree_scan_lan.selective_tree_scan(x, delta, A, B, C, D, children_first)


def test_without_the_extension_the_reference_serves_the_operator():
    run_in_python_without(
        ("tree_scan._C",),
        """
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import tree_scan_lan
        from tree_scan_lan import _library
        assert _library.BACKEND == "reference", _library.BACKEND

        import torch
        sys.path.insert(0, "tests")
        from selective_scan_brute_force import brute_force, random_problem
        generator = torch.Generator().manual_seed(0)
        x, delta, A, B, C, D, tree = random_problem(generator, 2, 6, 3, 2, torch.float64, prompts=torch.tensor([6, 4]))
        for t in (tree, None):
            y, final = tree_scan_lan.selective_tree_scan(x, delta, A, B, C, D, t, 0.3)
            want_y, want_final = brute_force(x, delta, A, B, C, D, t, 0.3)
            assert torch.allclose(y, want_y) and torch.allclose(final, want_final)
            inputs = [v.clone().requires_grad_(True) for v in (x, delta, A, B, C, D)]
            assert torch.autograd.gradcheck(lambda *a: tree_scan_lan.selective_tree_scan(*a, t, 0.3), inputs)
        print("ok")
        """,
    )


# ---------------------------------------------------------------------------------------
# The tree from the factors of u = (delta x) ⊗ B


def test_factored_edge_weights_equal_those_of_the_formed_features(generator):
    batch, length, channels, state = 3, 40, 24, 16
    p = torch.randn(batch, length, channels, generator=generator)
    b = torch.randn(batch, length, state, generator=generator)
    p[0, 5] = 0  # a zero token (a pad): cosine exactly 0 with everything, both ways
    p[1, 10:14], b[1, 10:14] = p[1, 9], b[1, 9]  # repeated identical tokens: exact ties
    u = (p.unsqueeze(-1) * b.unsqueeze(2)).reshape(batch, length, -1)
    formed = tree_scan_lan.candidate_edge_weights(u.transpose(1, 2))
    factored = tree_scan_lan.candidate_edge_weights_of_factors([p.transpose(1, 2), b.transpose(1, 2)])
    torch.testing.assert_close(factored, formed, atol=1e-6, rtol=1e-6)
    assert torch.equal(factored.view(batch, -1, 3)[0, 5], torch.ones(3))  # exp(-0)
    lengths = torch.tensor([length, 17, 3])
    tree_formed = tree_scan_lan.language_tree(u.transpose(1, 2), lengths)
    tree_factored = tree_scan_lan.language_tree_of_factors([p.transpose(1, 2), b.transpose(1, 2)], lengths)
    assert torch.equal(tree_factored, tree_formed)
    # One factor is the features themselves: the very same numbers.
    assert torch.equal(tree_scan_lan.candidate_edge_weights_of_factors([u.transpose(1, 2)]), formed)


def test_mixer_trees_fused_equal_unfused(generator, one_thread):
    mixer = make_mixer(generator)
    trees = {}
    for fused in (True, False):
        mixer.config.fused_scan = fused
        captured = []
        original = mixer._tree_order_of_factors
        mixer._tree_order_of_factors = lambda factors, layout: captured.append(original(factors, layout)) or captured[-1]
        hidden = torch.randn(3, 14, 8, generator=torch.Generator().manual_seed(7))
        mask = torch.ones(3, 14, dtype=torch.long)
        mask[1, :4] = 0
        with torch.no_grad():
            mixer(hidden, attention_mask=mask, contex_len=[14, 6, 9])
        del mixer._tree_order_of_factors
        trees[fused] = captured[0]
    assert torch.equal(trees[True].order, trees[False].order)
    assert torch.equal(trees[True].parent, trees[False].parent)


# ---------------------------------------------------------------------------------------
# The mixer: fused (the default) against unfused


def make_mixer(generator, **overrides):
    values = dict(hidden_size=8, state_size=3, expand=2, conv_kernel=3, time_step_rank=2, num_hidden_layers=1)
    values.update(overrides)
    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
    mixer = GrootLMixer(GrootLMambaConfig(**values), layer_idx=0)
    with torch.no_grad():
        mixer.dt_proj.bias.add_(2.0)  # larger time steps: the decays (and the tree) matter
    return mixer


def run_mixer(mixer, fused, hidden, weight, **kwargs):
    mixer.config.fused_scan = fused
    mixer.zero_grad()
    hidden = hidden.clone().requires_grad_(True)
    cache = DynamicCache(config=mixer.config)
    out = mixer(hidden, cache_params=cache, **kwargs)
    (out.float() * weight).sum().backward()
    grads = [hidden.grad] + [p.grad.clone() for p in mixer.parameters()]
    return out.detach(), cache.get_recurrent_state(0), grads


@pytest.mark.parametrize(
    "batch, seq_len, contex_len, padding",
    [(1, 1, None, None), (2, 2, [2, 1], None), (3, 11, [11, 0, 5], None), (4, 12, [9, 4, 7, 3], "left+right"),
     (3, 10, [10, 6, 2], "left")],
)
def test_mixer_fused_equals_unfused(generator, one_thread, batch, seq_len, contex_len, padding):
    mixer = make_mixer(generator)
    hidden = torch.randn(batch, seq_len, 8, generator=generator)
    weight = torch.randn(batch, seq_len, 8, generator=generator)
    kwargs = {"contex_len": contex_len}
    if padding is not None:
        mask = torch.ones(batch, seq_len, dtype=torch.long)
        mask[1, :3] = 0
        if padding == "left+right":
            mask[2, -2:] = 0
            mask[3, :1] = 0
            mask[3, -2:] = 0
        kwargs["attention_mask"] = mask
    fused = run_mixer(mixer, True, hidden, weight, **kwargs)
    unfused = run_mixer(mixer, False, hidden, weight, **kwargs)
    torch.testing.assert_close(fused[0], unfused[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fused[1], unfused[1], atol=1e-5, rtol=1e-5)  # the generation cache
    for got, want in zip(fused[2], unfused[2]):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("use_tree", [True, False])
def test_mixer_fused_equals_unfused_in_bfloat16(generator, one_thread, use_tree):
    mixer = make_mixer(generator, use_tree=use_tree, hidden_size=16, state_size=4).to(torch.bfloat16)
    hidden = torch.randn(3, 13, 16, generator=generator).bfloat16()
    weight = torch.randn(3, 13, 16, generator=generator)
    fused = run_mixer(mixer, True, hidden, weight, contex_len=[13, 8, 5])
    unfused = run_mixer(mixer, False, hidden, weight, contex_len=[13, 8, 5])
    assert fused[0].dtype == torch.bfloat16
    scale = unfused[0].float().abs().max()
    torch.testing.assert_close(fused[0].float() / scale, unfused[0].float() / scale, atol=2e-2, rtol=0)
    torch.testing.assert_close(fused[1], unfused[1], atol=2e-2, rtol=2e-2)
    for got, want in zip(fused[2], unfused[2]):
        scale = want.float().abs().max().clamp_min(1e-3)
        torch.testing.assert_close(got.float() / scale, want.float() / scale, atol=5e-2, rtol=0)


def test_fused_scan_is_read_from_any_config():
    assert GrootLMambaConfig().fused_scan is True
    mixer = GrootLMixer(MambaConfig(hidden_size=8, state_size=2, num_hidden_layers=1), layer_idx=0)
    assert mixer._fused_scan()  # a plain MambaConfig: the default
    mixer.config.fused_scan = False
    assert not mixer._fused_scan()


# ---------------------------------------------------------------------------------------
# The model: generation and lm-eval scores


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(3)
    model = GrootLMambaForCausalLM(GrootLMambaConfig.from_dict(tiny_mamba_config(61).to_dict())).eval()
    with torch.no_grad():
        for layer in model.backbone.layers:
            layer.mixer.dt_proj.bias.add_(2.0)
    return model


def test_generation_fused_equals_unfused(tiny_model, generator):
    ids = torch.randint(1, 61, (3, 9), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    outputs = {}
    for fused in (True, False):
        tiny_model.config.fused_scan = fused
        outputs[fused] = tiny_model.generate(
            ids, attention_mask=mask, max_new_tokens=5, do_sample=False, pad_token_id=0, eos_token_id=None,
            output_scores=True, return_dict_in_generate=True,
        )
    tiny_model.config.fused_scan = True
    for a, b in zip(outputs[True].scores, outputs[False].scores):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    top2 = torch.stack(outputs[False].scores).topk(2, dim=-1).values
    if bool(((top2[..., 0] - top2[..., 1]) > 1e-4).all()):
        assert torch.equal(outputs[True].sequences, outputs[False].sequences)


def test_lm_eval_loglikelihoods_fused_equal_unfused(tiny_model, generator):
    tokenizer = train_tokenizer(61)
    pairs = []
    for _ in range(9):
        context = torch.randint(1, 61, (int(torch.randint(2, 16, (1,), generator=generator)),), generator=generator)
        continuation = torch.randint(1, 61, (int(torch.randint(1, 5, (1,), generator=generator)),), generator=generator)
        pairs.append((context.tolist(), continuation.tolist()))
    scores = {}
    for fused in (True, False):
        tiny_model.config.fused_scan = fused
        scores[fused] = GrootLEvalModel(tiny_model, tokenizer=tokenizer, batch_size=4).score_tokens(pairs)
    tiny_model.config.fused_scan = True
    for (a, greedy_a), (b, greedy_b) in zip(scores[True], scores[False]):
        assert a == pytest.approx(b, abs=1e-5) and greedy_a == greedy_b
