"""Choosing the most local of several candidate directions (editing.select), against numpy and DDIM directly."""
import numpy as np
import pytest
import torch

from lococourse.editing.loco import find_direction, invert, select_direction
from lococourse.editing.select import most_local
from lococourse.models.ddim import ddim_grid, ddim_sample
from lococourse.theory.molrg import MoLRG

DT = torch.float64


def _mask():
    m = torch.zeros(8, 8, dtype=torch.bool)
    m[2:5, 1:6] = True
    return m


def _np_leakage(ref, edit, mask):
    d = (edit.numpy() - ref.numpy()) ** 2
    m = mask.numpy()
    return float(np.sqrt(d[..., ~m].mean()) / np.sqrt(d[..., m].mean()))


def test_most_local_picks_the_least_mean_leakage_against_numpy():
    g = torch.Generator().manual_seed(0)
    mask = _mask()
    ref = torch.randn(1, 8, 8, generator=g, dtype=DT)
    inside = torch.randn(3, 1, 8, 8, generator=g, dtype=DT) * mask
    noise = torch.randn(3, 1, 8, 8, generator=g, dtype=DT)
    # three candidates with ever more change outside Ω, listed out of order
    edits = [ref + inside + 0.3 * noise * ~mask, ref + inside + 0.01 * noise * ~mask, ref + inside + noise]
    sel = most_local(ref, [e[:2] for e in edits], mask)
    expect = [np.mean([_np_leakage(ref, e[j], mask) for j in range(2)]) for e in edits]
    assert sel.index == int(np.argmin(expect)) == 1
    assert np.allclose(sel.leakages, expect, rtol=1e-12)


def test_an_edit_that_changes_nothing_inside_is_never_chosen():
    mask = _mask()
    ref = torch.zeros(1, 8, 8, dtype=DT)
    nothing_inside = (ref + 1e-3 * ~mask).unsqueeze(0)  # tiny change, all of it outside
    leaky = (ref + 1.0 * mask + 0.9 * ~mask).unsqueeze(0)
    sel = most_local(ref, [nothing_inside, leaky], mask)
    assert sel.index == 1 and sel.leakages[0] == float("inf")
    assert most_local(ref, [leaky, leaky.clone()], mask).index == 0  # ties go to the earlier candidate


@pytest.mark.parametrize("edits,match", [([], "at least one"), ([torch.zeros(1, 8, 8)], r"shape \(L, 1, 8, 8\)"),
                                         ([torch.zeros(0, 1, 8, 8)], "L ≥ 1")])
def test_most_local_refuses_bad_edits(edits, match):
    with pytest.raises(ValueError, match=match):
        most_local(torch.zeros(1, 8, 8), edits, _mask())


@pytest.fixture(scope="module")
def molrg_setup():
    molrg = MoLRG.random((1, 8, 8), [3, 5], seed=0)
    x0 = molrg.sample(1, torch.Generator().manual_seed(2))[0][0]
    x_t, t = invert(molrg, x0, 0.6, num_steps=20)
    mask = _mask()
    cands = [find_direction(molrg.pmp(t), x_t, mask, r=3, r_null=rn, tol=1e-8, max_iter=500, extra={"method": name})
             for name, rn in (("no_projection", 0), ("loco", 2), ("loco_r6", 6))]
    return molrg, x_t, t, mask, cands


def test_select_direction_samples_each_candidate_and_keeps_the_most_local(molrg_setup):
    molrg, x_t, t, mask, cands = molrg_setup
    lams = [[-2.0, 2.0], [-3.0, 3.0], [-1.5, 1.5]]
    chosen = select_direction(molrg, x_t, t, cands, lams, num_steps=20)
    # the oracle: DDIM of every edit, one at a time, and numpy's leakage
    grid = ddim_grid(20)
    with torch.no_grad():
        ref = ddim_sample(molrg.eps_model(), x_t.unsqueeze(0), t, 0.0, grid=grid)[0]
        expect = []
        for d, ls in zip(cands, lams):
            leaks = [_np_leakage(ref, ddim_sample(molrg.eps_model(), (x_t + lam * d.v).unsqueeze(0), t, 0.0, grid=grid)[0],
                                 mask) for lam in ls]
            expect.append(np.mean(leaks))
    best = int(np.argmin(expect))
    rec = chosen.extra["selected"]
    assert torch.equal(chosen.v, cands[best].v) and rec["chosen"] == cands[best].extra["method"]
    assert np.allclose(rec["leakages"], expect, rtol=1e-5)
    assert rec["labels"] == ["no_projection", "loco", "loco_r6"] and rec["strengths"] == lams
    assert chosen.seconds >= sum(d.seconds for d in cands)
    assert "selected" not in cands[best].extra  # the candidates are not modified


def test_select_direction_refuses_bad_input_before_sampling(molrg_setup, monkeypatch):
    molrg, x_t, t, mask, cands = molrg_setup
    import lococourse.editing.loco as sel

    def no_sampling(*a, **k):
        raise AssertionError("sampled before refusing")

    monkeypatch.setattr(sel, "apply_directions", no_sampling)
    other = find_direction(molrg.pmp(t), x_t, ~mask, r=3, r_null=0, tol=1e-6, max_iter=200)
    cases = [([], [1.0], ValueError, "at least one Direction"),
             ([cands[0], other], [1.0], ValueError, "another mask"),
             ([cands[0], "v"], [1.0], TypeError, "must be a Direction"),
             (cands[:2], [[1.0]], ValueError, "one list per candidate"),
             (cands[:2], [[1.0], []], ValueError, "at least one strength"),
             (cands[:2], [float("nan")], ValueError, "nan")]
    for candidates, lams, err, match in cases:
        with pytest.raises(err, match=match):
            select_direction(molrg, x_t, t, candidates, lams)
    with pytest.raises(ValueError, match="one name per candidate"):
        select_direction(molrg, x_t, t, cands[:2], [1.0], labels=["a"])


def test_loco_edit_select_keeps_the_most_local_of_the_three_ways_of_step_7(molrg_setup):
    from lococourse.editing.loco import loco_edit

    molrg, _, _, mask, _ = molrg_setup
    x0 = molrg.sample(1, torch.Generator().manual_seed(2))[0][0]
    kw = dict(r=3, r_null=2, band=1, tol=1e-8, max_iter=500, num_steps=20)
    res = loco_edit(molrg, x0, mask, 0.6, strengths=[-2.0, 2.0], select=True, **kw)
    rec = res.direction.extra["selected"]
    assert rec["labels"] == ["projection", "ridge", "ridge + refine 1"]
    # the oracle: each way on its own through loco_edit, and numpy's leakage of its edits
    leaks = []
    for proj, ref in (("subspace", 0), ("ridge", 0), ("ridge", 1)):
        one = loco_edit(molrg, x0, mask, 0.6, strengths=[-2.0, 2.0], projection=proj, refine=ref, **kw)
        leaks.append(np.mean([_np_leakage(one.reconstruction, e, mask) for e in one.edited]))
        if rec["chosen"] == rec["labels"][len(leaks) - 1]:
            assert torch.allclose(res.direction.v, one.direction.v, atol=1e-8)
            assert torch.allclose(res.edited, one.edited, atol=1e-8)
    assert np.allclose(rec["leakages"], leaks, rtol=1e-5) and rec["chosen"] == rec["labels"][int(np.argmin(leaks))]


@pytest.mark.parametrize("kw,match", [({"projection": "ridge"}, "leave projection and refine at their defaults"),
                                      ({"refine": 1, "projection": "ridge"}, "leave projection"),
                                      ({"select": "yes"}, "select must be True or False")])
def test_loco_edit_refuses_select_with_its_own_options(molrg_setup, kw, match, monkeypatch):
    from lococourse.editing import loco

    molrg, _, _, mask, _ = molrg_setup
    monkeypatch.setattr(loco, "invert", lambda *a, **k: pytest.fail("inverted before refusing"))
    with pytest.raises(ValueError, match=match):
        loco.loco_edit(molrg, torch.zeros(1, 8, 8), mask, 0.6, **{"select": True, **kw})
