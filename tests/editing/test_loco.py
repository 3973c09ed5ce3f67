"""LOCO Edit (Algorithm 1): closed-form check on an exactly linear PMP, directions, transfer, bad input."""
import numpy as np
import pytest
import torch

from lococourse.editing.direction import Direction
from lococourse.editing.loco import apply_directions, find_direction, loco_edit, transfer
from lococourse.editing.masks import as_mask, ellipse, parse_mask, rectangle
from lococourse.theory.molrg import MoLRG

DT = torch.float64


class LinearPMP:
    """f(x) = A x on (1, 8, 8) images: its Jacobian is A everywhere."""

    t = 0.5

    def __init__(self, A):
        self.A = A

    def __call__(self, x):
        return (x.reshape(x.shape[0], -1) @ self.A.T).reshape(x.shape)


@pytest.fixture(scope="module")
def linear():
    g = torch.Generator().manual_seed(0)
    return LinearPMP(torch.randn(64, 64, generator=g, dtype=DT))


@pytest.fixture(scope="module")
def molrg():
    return MoLRG.random((1, 8, 8), [3, 5], seed=0)


def _mask():
    m = torch.zeros(8, 8, dtype=torch.bool)
    m[2:5, 1:6] = True
    return m


@pytest.mark.parametrize("index,r_null", [(0, 0), (1, 4), (2, 10)])
def test_direction_matches_closed_form_on_linear_pmp(linear, index, r_null):
    mask = _mask()
    x = torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=DT)
    d = find_direction(linear, x, mask, index=index, r=3, r_null=r_null, tol=1e-12, max_iter=2000)
    mf = mask.reshape(-1).numpy()
    A = linear.A.numpy()
    _, S, Vh = np.linalg.svd(A[mf])  # rows inside Ω: the SVD of ∇ P_Ω f
    v = Vh[index]
    if r_null:
        Vbar = np.linalg.svd(A[~mf])[2][:r_null].T  # top-r' right singular vectors of ∇ P_{Ω^c} f
        v = v - Vbar @ (Vbar.T @ v)
    v /= np.linalg.norm(v)
    assert abs(abs(float(v @ d.v.reshape(-1).numpy())) - 1) < 1e-9
    assert d.sigma == pytest.approx(S[index], rel=1e-9)
    assert d.v.norm().item() == pytest.approx(1.0, abs=1e-12)


def test_nullspace_projection_removes_complement_response(linear):
    """v_p ⟂ span(V̄): the top-r' response of the complement is exactly removed."""
    mask = _mask()
    x = torch.zeros(1, 8, 8, dtype=DT)
    r_null = 6
    d = find_direction(linear, x, mask, r=2, r_null=r_null, tol=1e-12, max_iter=2000)
    mf = mask.reshape(-1).numpy()
    Vbar = np.linalg.svd(linear.A.numpy()[~mf])[2][:r_null]
    assert np.abs(Vbar @ d.v.reshape(-1).numpy()).max() < 1e-8


def test_save_load_roundtrip(tmp_path, molrg):
    x0 = molrg.sample(1, torch.Generator().manual_seed(0))[0][0]
    res = loco_edit(molrg, x0, _mask(), 0.6, strengths=[2.0], r=3, r_null=2)
    p = res.direction.save(tmp_path / "dir")
    assert p.suffix == ".safetensors" and p.with_suffix(".json").exists()
    back = Direction.load(p)
    assert torch.allclose(back.v.double(), res.direction.v.double(), atol=1e-6)
    assert torch.equal(back.mask, res.direction.mask)
    assert back.metadata() == {**res.direction.metadata()}
    # The λ = 0 image is the DDIM reconstruction of x₀ (exact ε-model: near-perfect).
    assert (res.reconstruction - x0).abs().max() < 0.05


def test_linearity_sweep_and_composition_agree(molrg):
    """A sweep image and a one-term composition at the same λ are the same computation."""
    x0 = molrg.sample(1, torch.Generator().manual_seed(3))[0][0]
    res = loco_edit(molrg, x0, _mask(), 0.6, strengths=[-2.0, 3.0], r=3, r_null=2)
    comp = apply_directions(molrg, res.x_t, res.t, terms=[(res.direction, 3.0)])
    assert torch.allclose(comp[0], res.edited[1], atol=1e-10)


def test_transfer_applies_same_direction(molrg):
    x0 = molrg.sample(2, torch.Generator().manual_seed(4))[0]
    res = loco_edit(molrg, x0[0], _mask(), 0.6, strengths=[3.0], r=3, r_null=2)
    tr = transfer(molrg, res.direction, x0[1], [3.0])
    assert torch.equal(tr.direction.v, res.direction.v)
    rep = transfer(molrg, res.direction, x0[1], [3.0], reproject=True)
    assert rep.direction.v.norm().item() == pytest.approx(1.0, abs=1e-9)


def test_bad_input(molrg, linear, tmp_path):
    x = torch.zeros(1, 8, 8, dtype=DT)
    with pytest.raises(ValueError, match="empty"):
        find_direction(linear, x, torch.zeros(8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="all True"):
        find_direction(linear, x, torch.ones(8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="shape"):
        find_direction(linear, x, torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"r' \(r_null\)"):
        find_direction(linear, x, _mask(), r_null=64)
    with pytest.raises(ValueError, match="index k"):
        find_direction(linear, x, _mask(), index=5, r=5)
    x0 = molrg.sample(1, torch.Generator().manual_seed(0))[0][0]
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite"):
            loco_edit(molrg, x0, _mask(), 0.6, strengths=[bad])
    d = Direction(torch.zeros(1, 8, 8), 0.6, _mask(), 0, 5, 5, 1.0, model="other-model")
    with pytest.raises(ValueError, match="found on model"):
        transfer(molrg, d, x0, [1.0])
    d16 = Direction(torch.zeros(1, 16, 16), 0.6, _mask(), 0, 5, 5, 1.0)
    with pytest.raises(ValueError, match="shape"):
        transfer(molrg, d16, x0, [1.0])
    with pytest.raises(ValueError, match=r"t must lie in \(0, 1\]"):
        loco_edit(molrg, x0, _mask(), 1.5)


def test_masks():
    r = rectangle((8, 8), 1, 2, 4, 3)
    assert r.sum() == 3 and r[2, 1] and not r[3, 1]
    e = ellipse((9, 9), 4.5, 4.5, 2, 2)
    assert e[4, 4] and not e[0, 0] and torch.equal(e, e.flip(0)) and torch.equal(e, e.T)
    assert torch.equal(as_mask(np.asarray(r, dtype=np.uint8), (8, 8)), r)
    assert torch.equal(parse_mask("1,2,4,3", (8, 8)), r)
    assert torch.equal(parse_mask("eyes", (8, 8), {"eyes": r}), r)
    with pytest.raises(ValueError, match="neither a named mask"):
        parse_mask("nose", (8, 8), {"eyes": r})
    with pytest.raises(ValueError, match="0 and 1"):
        as_mask(torch.full((8, 8), 2), (8, 8))
    with pytest.raises(ValueError, match="spatial size"):
        as_mask(r, (16, 16))
    with pytest.raises(ValueError, match="rectangle"):
        rectangle((8, 8), 5, 0, 3, 8)


def test_loco_edit_on_a_unet_model_with_one_image():
    """Algorithm 1 end to end on a learned (course) model, given one unbatched image."""
    from lococourse.data.faces import sample_faces
    from lococourse.models.registry import load_model

    m = load_model("faces16")
    faces = sample_faces(1, 0, size=16)
    mask = faces.masks["hair"][0]
    res = loco_edit(m, faces.images[0], mask, 0.6, strengths=[6.0], r=2, r_null=2, max_iter=10)
    assert res.x_t.shape == (3, 16, 16) and res.edited.shape == (1, 3, 16, 16)
    change = (res.edited[0] - res.reconstruction).abs().sum(0)
    assert change.max() > 0.05  # the edit does something
