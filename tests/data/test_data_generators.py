"""The generated data sets: shapes, ranges, determinism, and independence of the face parts."""
import pytest
import torch
import torch.nn.functional as F

from lococourse.data import (
    FACTOR_NAMES,
    FACTOR_PARTS,
    PARTS,
    load_molrg,
    molrg_image_model,
    molrg_sampler,
    render_faces,
    sample_faces,
    sample_factors,
    save_molrg,
)


@pytest.mark.parametrize("size", [16, 32])
def test_faces_shapes_range_dtype(size):
    b = sample_faces(10, 0, size=size)
    assert b.images.shape == (10, 3, size, size) and b.images.dtype == torch.float32
    assert b.images.min() >= -1 and b.images.max() <= 1
    assert set(b.factors) == set(FACTOR_NAMES) and all(v.shape == (10,) for v in b.factors.values())
    assert set(b.masks) == set(PARTS)
    assert all(m.shape == (10, size, size) and m.dtype == torch.bool for m in b.masks.values())


def test_faces_deterministic_with_seed():
    a, b, c = sample_faces(6, 3), sample_faces(6, torch.Generator().manual_seed(3)), sample_faces(6, 4)
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)
    assert torch.equal(render_faces(a.factors).images, a.images)


def test_masks_partition_and_non_empty():
    b = sample_faces(32, 1)
    stack = torch.stack([b.masks[p] for p in PARTS]).long()
    assert torch.equal(stack.sum(0), torch.ones(32, 32, 32, dtype=torch.long))  # disjoint and covering
    for p in PARTS:
        assert b.masks[p].flatten(1).any(1).all(), f"part {p} is empty in some face"


def _dilate(mask: torch.Tensor, px: int) -> torch.Tensor:
    return F.max_pool2d(mask.float().unsqueeze(1), 2 * px + 1, stride=1, padding=px).squeeze(1) > 0


@pytest.mark.parametrize("factor", FACTOR_NAMES)
def test_changing_one_factor_changes_only_its_part(factor):
    """Pixels that change lie in the part's mask before or after the change, dilated by 2 px (anti-aliasing)."""
    g = torch.Generator().manual_seed(7)
    f = sample_factors(24, g)
    f2 = dict(f)
    f2[factor] = torch.rand(24, generator=g)
    a, b = render_faces(f), render_faces(f2)
    part = FACTOR_PARTS[factor]
    changed = (a.images - b.images).abs().amax(1) > 0.05  # (n, H, W)
    region = _dilate(a.masks[part] | b.masks[part], 2)
    assert changed.any(), f"changing {factor} changed nothing"
    outside = changed & ~region
    assert not outside.any(), f"{factor} changed {int(outside.sum())} pixels outside the {part} mask"


def test_factor_smoothness():
    """Images move continuously with the factors (the data manifold is smooth)."""
    f = sample_factors(8, torch.Generator().manual_seed(0))
    for name in FACTOR_NAMES:
        f2 = dict(f)
        f2[name] = (f[name] + 1e-3).clamp(max=1)
        assert (render_faces(f).images - render_faces(f2).images).abs().max() < 0.05


def test_render_rejects_bad_factors():
    f = sample_factors(2)
    with pytest.raises(ValueError, match="must lie in"):
        render_faces({**f, "gaze": torch.tensor([0.5, 1.5])})
    with pytest.raises(ValueError, match="keys"):
        render_faces({k: v for k, v in f.items() if k != "gaze"})


def test_molrg_images_roundtrip(tmp_path):
    m = molrg_image_model((3, 4, 4), (6, 6), seed=0)
    x = molrg_sampler(m)(5, torch.Generator().manual_seed(0))
    assert x.shape == (5, 3, 4, 4) and x.dtype == torch.float32
    save_molrg(m, tmp_path / "b.safetensors")
    m2 = load_molrg(tmp_path / "b.safetensors")
    assert m2.shape == m.shape and m2.ranks == m.ranks
    assert all(torch.equal(a, b) for a, b in zip(m.bases, m2.bases))
    # the samples lie in the union of the subspaces: the projection onto span(M) keeps them
    xf = x.double().reshape(5, -1)
    assert torch.allclose(xf @ m.M @ m.M.T, xf, atol=1e-5)
