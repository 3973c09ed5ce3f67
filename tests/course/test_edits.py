"""lococourse.course.edits: Algorithm 1 on a coarser grid (= loco_edit at 100 steps), per-factor R², RMS in/out."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lococourse.course import edits
from lococourse.editing.loco import loco_edit
from lococourse.editing.masks import rectangle
from lococourse.theory.molrg import MoLRG


@pytest.fixture(scope="module")
def molrg():
    return MoLRG.random((1, 8, 8), [3, 4], seed=2)


def test_loco_edit_reduced_at_100_steps_is_loco_edit():
    """Rank-one classes: distinct singular values, so the power methods converge to one answer (a degenerate top-k
    subspace would let round-off pick among equivalent directions)."""
    molrg = MoLRG.random((1, 8, 8), [1, 1, 1], weights=[0.5, 0.3, 0.2], seed=2)
    x0 = molrg.sample(1, torch.Generator().manual_seed(0))[0][0]
    mask = rectangle((8, 8), 2, 2, 6, 5)
    a = loco_edit(molrg, x0, mask, 0.6, strengths=(-3.0, 3.0), r=1, r_null=1, max_iter=200, tol=1e-10)
    b = edits.loco_edit_reduced(molrg, x0, mask, 0.6, (-3.0, 3.0), num_steps=100, r=1, r_null=1, max_iter=200, tol=1e-10)
    assert b.t == a.t and b.num_steps == 100
    torch.testing.assert_close(b.x_t, a.x_t)
    torch.testing.assert_close(b.direction.v, a.direction.v, atol=1e-6, rtol=0)
    torch.testing.assert_close(b.edited, a.edited, atol=1e-6, rtol=0)
    torch.testing.assert_close(b.reconstruction, a.reconstruction)
    d = (b.edited[1] - b.reconstruction).numpy()
    m = mask.numpy()
    assert np.isclose(b.leakage[1], np.sqrt(np.mean(d[:, ~m] ** 2)) / np.sqrt(np.mean(d[:, m] ** 2)))


def test_loco_edit_reduced_on_a_coarse_grid_lands_on_its_levels(molrg):
    x0 = molrg.sample(1, torch.Generator().manual_seed(1))[0][0]
    res = edits.loco_edit_reduced(molrg, x0, rectangle((8, 8), 0, 0, 4, 4), 0.6, (2.0,), num_steps=5, r=1, r_null=1,
                                  max_iter=2)
    assert res.t == pytest.approx(0.601) and res.edited.shape == (1, 1, 8, 8)
    assert abs(float(res.direction.v.norm()) - 1) < 1e-10
    with pytest.raises(ValueError, match="finite"):
        edits.loco_edit_reduced(molrg, x0, rectangle((8, 8), 0, 0, 4, 4), 0.6, (float("nan"),), num_steps=5)


def test_factor_r2_rms_and_changed_factors_against_numpy():
    from types import SimpleNamespace

    from lococourse.data.faces import FACTOR_NAMES
    from lococourse.eval.decisions import thresholds_for

    lams = [-2.0, -1.0, 1.0, 2.0]
    changes = torch.zeros(4, 9)
    i, j = FACTOR_NAMES.index("eye_size"), FACTOR_NAMES.index("gaze")
    changes[:, i] = torch.tensor([0.58, 0.26, -0.06, -0.06])
    changes[:, j] = torch.tensor([0.1, 0.05, -0.05, -0.1])  # exactly linear
    study = SimpleNamespace(part="eyes", strengths=lams, changes=changes)
    r2 = edits.factor_r2(study)
    y = changes[:, i].numpy()
    fit = np.polyval(np.polyfit(lams, y, 1), lams)
    assert np.isclose(r2["eye_size"], 1 - ((y - fit) ** 2).sum() / ((y - y.mean()) ** 2).sum())
    assert np.isclose(r2["gaze"], 1.0)
    rec = torch.zeros(2, 3, 4, 4)
    ed = rec.clone()
    ed[0, :, :2] = 1.0
    ed[0, :, 2:] = 0.1
    ed[1, :, :2] = 0.5
    sweep = SimpleNamespace(reconstructions=rec, edited=ed)
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[:2] = True
    inside, outside = edits.rms_inside_outside(sweep, mask)
    assert np.allclose(inside, [1.0, 0.5]) and np.allclose(outside, [0.1, 0.0])
    th = thresholds_for(32)
    assert edits.changed_factors(changes[0], th) == {"eye_size": 0.58, "gaze": 0.1}
