"""Recomputed blocks (lococourse.models.recompute): the same J·v and Jᵀ·u as the stored graph, on the tiny pipelines.

Oracles: the JacobianOperator of the same PMP without recomputation (plain torch.func, every activation stored),
central finite differences of the PMP, and plain torch.autograd on a single block.
"""
import pytest
import torch

from lococourse.editing import tloco
from lococourse.editing.masks import rectangle
from lococourse.jacobian.operator import JacobianOperator
from lococourse.models import real_size as rs
from lococourse.models.recompute import (
    Recompute,
    disable_recompute,
    enable_recompute,
    is_recompute_enabled,
    recompute_call,
)
from lococourse.models.tiny import tiny_pipeline


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module", params=["sd", "if", "lcm"])
def family_model(request):
    pipe = tiny_pipeline(request.param, seed=0)
    return pipe, pipe.with_prompts("a cat", "a cat with a red hat")


def _products(f, x, V, U, chunk=None, forward_mode="jvp"):
    op = JacobianOperator(f, x, forward_mode=forward_mode, chunk=chunk)
    return op.y, op.mv(V), op.rmv(U)


@pytest.mark.parametrize("edit", [False, True])
def test_recomputed_pmp_has_the_stored_graphs_jv_and_jtu(family_model, edit):
    pipe, model = family_model
    f = (model.pmp_edit if edit else model.pmp_source)(0.7)
    x = _randn(*model.shape, seed=1)
    V, U = _randn(3, *model.shape, seed=2), _randn(3, *model.out_shape, seed=3)
    y_ref, jv_ref, jtu_ref = _products(f, x, V, U, forward_mode="transpose")  # plain torch.func, graph stored
    pipe.enable_recompute()
    try:
        assert pipe.recompute and is_recompute_enabled(pipe.unet)
        for chunk in (None, 1):  # all k columns in one vmapped call, and one column per call
            y, jv, jtu = _products(f, x, V, U, chunk=chunk)
            torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(jv, jv_ref, rtol=1e-4, atol=1e-5 * float(jv_ref.abs().max()))
            torch.testing.assert_close(jtu, jtu_ref, rtol=1e-4, atol=1e-5 * float(jtu_ref.abs().max()))
    finally:
        pipe.disable_recompute()
    assert not pipe.recompute


def test_recomputed_jv_matches_finite_differences_and_the_adjoint():
    pipe = tiny_pipeline("sd", seed=1).enable_recompute()
    model = pipe.with_prompts("a dog")
    f = model.pmp_source(0.5)
    x, v, u = _randn(*model.shape, seed=4), _randn(*model.shape, seed=5), _randn(*model.out_shape, seed=6)
    op = JacobianOperator(f, x, forward_mode="jvp")
    jv, jtu = op.mv(v.unsqueeze(0))[0], op.rmv(u.unsqueeze(0))[0]
    h = 1e-2
    with torch.no_grad():
        fd = (f((x + h * v).unsqueeze(0)) - f((x - h * v).unsqueeze(0)))[0] / (2 * h)
    assert float((jv - fd).norm() / jv.norm()) < 1e-3
    assert float(((u * jv).sum() - (jtu * v).sum()).abs() / (u.norm() * jv.norm())) < 1e-5


def test_recompute_stores_less_than_the_plain_graph():
    """What the forward pass keeps for backward (saved tensors of the graph) shrinks with recomputation."""
    pipe = tiny_pipeline("sd", seed=0)
    model = pipe.with_prompts("a cat")
    f = model.pmp_source(0.7)
    x = _randn(1, *model.shape, seed=1).requires_grad_(True)

    def saved_bytes():
        sizes = {}

        def pack(t):
            sizes[(t.data_ptr(), t.dtype, tuple(t.shape))] = t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            y = f(x)
        return sum(sizes.values()), y

    plain, y_plain = saved_bytes()
    pipe.enable_recompute()
    lean, y_lean = saved_bytes()
    torch.testing.assert_close(y_lean, y_plain)
    assert lean < 0.5 * plain
    # and plain autograd goes through it: the same gradient as the stored graph
    w = _randn(*y_plain.shape, seed=2)
    (g_lean,) = torch.autograd.grad((y_lean * w).sum(), x)
    pipe.disable_recompute()
    (g_plain,) = torch.autograd.grad((f(x) * w).sum(), x)
    # float32 sums in another order (recomputed blocks, another CPU's kernels) differ in the last bits:
    # compare on the gradient's own scale, not element by element against an absolute floor
    assert float((g_lean - g_plain).norm() / g_plain.norm()) < 1e-5
    torch.testing.assert_close(g_lean, g_plain, rtol=0, atol=1e-5 * float(g_plain.abs().max()))


def test_recompute_call_matches_autograd_on_one_block_with_non_tensor_args():
    torch.manual_seed(0)
    block = torch.nn.Sequential(torch.nn.Linear(6, 6), torch.nn.Tanh(), torch.nn.Linear(6, 6)).requires_grad_(False)

    def module(h, scale, extra):
        return block(h) * scale + (0 if extra is None else extra["shift"])

    h = torch.randn(4, 6, requires_grad=True)
    out = recompute_call(module, h, 2.0, {"shift": 1.0})
    torch.testing.assert_close(out, module(h, 2.0, {"shift": 1.0}))
    (g,) = torch.autograd.grad(out.sum(), h)
    (g_ref,) = torch.autograd.grad(module(h, 2.0, {"shift": 1.0}).sum(), h)
    torch.testing.assert_close(g, g_ref)
    # forward mode and vmap over the VJP (how the Jacobian operator calls it)
    x, t = torch.randn(4, 6), torch.randn(3, 4, 6)
    jv = torch.func.vmap(lambda v: torch.func.jvp(lambda z: recompute_call(module, z, 2.0, None), (x,), (v,))[1])(t)
    jv_ref = torch.func.vmap(lambda v: torch.func.jvp(lambda z: module(z, 2.0, None), (x,), (v,))[1])(t)
    torch.testing.assert_close(jv, jv_ref)
    _, pull = torch.func.vjp(lambda z: recompute_call(module, z, 2.0, None), x)
    _, pull_ref = torch.func.vjp(lambda z: module(z, 2.0, None), x)
    torch.testing.assert_close(torch.func.vmap(pull)(t)[0], torch.func.vmap(pull_ref)(t)[0])
    # Recompute.apply on a block returning a non-tensor is refused clearly
    with pytest.raises(TypeError, match="one tensor"):
        Recompute.apply(lambda z: (z, z), h)


def test_recompute_refuses_double_backward_and_unfrozen_or_foreign_models():
    pipe = tiny_pipeline("sd", seed=0).enable_recompute()
    model = pipe.with_prompts("a cat")
    x, v = _randn(*model.shape, seed=1), _randn(1, *model.shape, seed=2)
    with pytest.raises(RuntimeError, match="forward_mode='jvp'"):
        JacobianOperator(model.pmp_source(0.7), x, forward_mode="transpose").mv(v)
    mask = rectangle(model.out_shape[1:], 4, 4, 12, 10)
    with pytest.raises(ValueError, match="transpose"):
        tloco.t_loco_unsupervised(model, mask, None, (1.0,), r=1, r_null=1, max_iter=1, forward_mode="transpose")
    with pytest.raises(TypeError, match="diffusers model"):
        enable_recompute(torch.nn.Linear(2, 2))
    unet = tiny_pipeline("sd", seed=0).unet.requires_grad_(True)
    with pytest.raises(ValueError, match="freeze"):
        enable_recompute(unet)
    with pytest.raises(ValueError, match="recompute must be True or False"):
        rs.standin_t2i("sd-2.1-base", recompute="yes")
    disable_recompute(pipe.unet)
    assert not pipe.recompute


def test_tloco_with_recompute_gives_the_plain_direction():
    """Algorithms 3 and 4 on the tiny SD pipeline: recomputation (forward_mode None → "jvp") changes nothing."""
    pipe = tiny_pipeline("sd", seed=0, num_steps=6)
    model = pipe.with_prompts("a cat", "a cat with a red hat")
    mask = rectangle(model.out_shape[1:], 4, 2, 12, 9)
    kw = dict(seed=0, r=2, r_null=2, max_iter=3)
    ref = tloco.t_loco_unsupervised(model, mask, None, (2.0,), forward_mode="jvp", **kw)
    ref_text = tloco.t_loco_text(model, mask, None, (2.0,), seed=0, r_null=2, max_iter=3, forward_mode="jvp")
    pipe.enable_recompute()
    try:
        res = tloco.t_loco_unsupervised(model, mask, None, (2.0,), **kw)
        res_text = tloco.t_loco_text(model, mask, None, (2.0,), seed=0, r_null=2, max_iter=3)
    finally:
        pipe.disable_recompute()
    for a, b in ((res, ref), (res_text, ref_text)):
        torch.testing.assert_close(a.direction.v, b.direction.v, rtol=1e-3, atol=1e-4)
        torch.testing.assert_close(a.edited, b.edited, rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(a.original, b.original)
