"""LOCO and T-LOCO end to end on the paper's architectures at their real size, on a CPU — RANDOM WEIGHTS.

The stand-ins (:func:`lococourse.models.real_size.standin_model` / ``standin_t2i``) have the real
architectures with seeded random weights: these runs check shapes, dtypes, memory, time and the
double-backward / forward-mode paths through the real attention blocks — never image quality.

Run them (slow, deselected by the default command; ≈ 2–3 h on one shared CPU thread)::

    python -m pytest -m slow tests/models/test_real_size_end_to_end.py -q

Each run prints one line: wall time and the process's peak resident memory (weights included).
Reduced settings, all for CPU time only (the sizes are the real ones):

* DDIM on a 10-step grid instead of the paper's 100 (``num_steps=10``; the same "leading" grid);
* one power-method iteration (``max_iter=1``) plus the Rayleigh–Ritz step, instead of iterating to tol;
* one strength λ (plus the λ = 0 reference) per edit;
* SD-2.1-base and LCM_Dreamshaper_v7: r = r' = 1 instead of 5 (one J·V costs minutes there); DDPM and IF: r = r' = 5;
* SD and LCM run with recomputed UNet/VAE blocks (``standin_t2i(recompute=True)``, J·v by forward mode, one
  direction per call): the only way their 512 px Jacobians fit a 24 GB machine (see SD_KNOBS).

What does not fit: see the module-level notes by each test and benchmarks/README.md ("Real size").
"""
import math

import pytest
import torch

from lococourse.editing import tloco
from lococourse.editing.loco import loco_edit
from lococourse.editing.masks import rectangle
from lococourse.jacobian.operator import JacobianOperator
from lococourse.models import real_size as rs
from lococourse.models.ddim import ddim_grid, ddim_invert, ddim_sample
from lococourse.theory.molrg import MoLRG

NUM_STEPS = 10  # DDIM grid for the CPU runs (the paper: 100)
#: Stop the test process before the kernel's OOM killer picks some other process on the shared machine.
MEMORY_LIMIT_GB = 20.0


def _report(capsys, label: str, m: dict, extra: str = "") -> None:
    with capsys.disabled():
        print(f"\n[real size] {label}: {m['seconds']:.0f} s wall, peak RSS {m['peak_rss_gb']:.2f} GB "
              f"(before {m['rss_before_gb']:.2f} GB){' — ' + extra if extra else ''}", flush=True)


def _smooth_image(shape, seed=0) -> torch.Tensor:
    """A smooth image in [−1, 1]: a few low-frequency cosines (random weights make any image as good)."""
    g = torch.Generator().manual_seed(seed)
    c, h, w = shape
    yy, xx = torch.meshgrid(torch.linspace(0, math.pi, h), torch.linspace(0, math.pi, w), indexing="ij")
    img = sum(torch.randn(c, 1, 1, generator=g) * torch.cos(a * yy + b * xx) for a, b in ((1, 0), (0, 2), (2, 1)))
    return (img / img.abs().max()).float()


def _fd_and_adjoint(f, x, v, u, h=1e-3):
    """(‖J v − central difference‖/‖J v‖, |⟨u, J v⟩ − ⟨Jᵀ u, v⟩|/(‖u‖‖J v‖)) at x, J by the library's operator."""
    op = JacobianOperator(f, x)
    jv = op.mv(v.unsqueeze(0))[0]
    jtu = op.rmv(u.unsqueeze(0))[0]
    with torch.no_grad():
        pair = f(torch.stack([x + h * v, x - h * v]))
    fd = (pair[0] - pair[1]) / (2 * h)
    rel = float((jv - fd).norm() / jv.norm())
    adj = float(((u * jv).sum() - (jtu * v).sum()).abs() / (u.norm() * jv.norm()))
    return rel, adj


# ----------------------------------------------------------------------------- fast: the grid option used here
def test_loco_edit_num_steps_runs_steps_3_and_9_on_that_ddim_grid():
    """loco_edit(num_steps=N) = DDIM-Inv and DDIM on ddim_grid(N) (oracle: the DDIM module called directly)."""
    model = MoLRG.random((1, 8, 8), [3, 5], seed=0)
    x0 = torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[2:5, 1:6] = True
    res = loco_edit(model, x0, mask, 0.58, strengths=(3.0,), r=2, r_null=1, num_steps=10)
    grid = ddim_grid(10)
    assert res.t == pytest.approx(grid.snap(0.58)) and res.t != pytest.approx(ddim_grid().snap(0.58))
    x_t = ddim_invert(model.eps_model(), x0.unsqueeze(0), 0.58, grid=grid)[0]
    torch.testing.assert_close(res.x_t, x_t)
    torch.testing.assert_close(res.reconstruction, ddim_sample(model.eps_model(), x_t.unsqueeze(0), res.t, 0.0,
                                                               grid=grid)[0])
    default = loco_edit(model, x0, mask, 0.58, strengths=(3.0,), r=2, r_null=1)
    assert default.t == pytest.approx(ddim_grid(100).snap(0.58))
    with pytest.raises(ValueError, match="num_steps"):
        loco_edit(model, x0, mask, 0.58, num_steps=0)


# ----------------------------------------------------------------------------- slow: real size
# SD-2.1-base first: the largest run (≈ 19 GB resident) is the one most likely not to fit next to other work.
def _mem_total_gb() -> float:
    try:
        kb = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    except (OSError, StopIteration):
        return 0.0
    return kb * 1e3 / 1e9


@pytest.fixture(scope="module")
def sd_model():
    torch.set_num_threads(1)
    pipe = rs.standin_t2i("sd-2.1-base", seed=0, num_steps=NUM_STEPS, recompute=True)
    model = pipe.with_prompts("a photo of a cat", "a photo of a cat with a red hat")
    pipe.text_encoder = None  # the prompts are encoded: release its 1.2 GB (T-LOCO never encodes again)
    return model


#: SD-2.1-base at 64×64×4 → 512 px does not fit 24 GB with every activation stored: the Jacobian's stored graph of
#: f^o is ≈ 7.6 GB of UNet activations (CFG batch 2; most of them the attention probabilities of the jvp-safe
#: processor) and ≈ 5.9 GB of VAE-decoder activations at 512², on top of 4.2 GB of weights, and a J·v by forward
#: mode adds ≈ 3 GB (measured: 20 GB guard hit).  With recomputation (standin_t2i(recompute=True):
#: lococourse.models.recompute) the stored graph is the blocks' inputs only (≈ 1.7 GB) and one block is
#: recomputed at a time in a VJP; T-LOCO then takes J·v by forward mode ("jvp"), one direction per call.
SD_KNOBS = dict(chunk=1)
#: The guard for the SD runs: the target of issue 14 (fit within ≈ 18 GB), below the 20 GB of the others.
SD_MEMORY_LIMIT_GB = 18.0
#: RAM below which the SD tests are skipped: the guard's limit plus the rest of a running system.
SD_NEEDS_GB = 20.0


def _sd_skip():
    return pytest.mark.skipif(_mem_total_gb() < SD_NEEDS_GB,
                              reason=f"T-LOCO on SD-2.1-base at 512 px is guarded at {SD_MEMORY_LIMIT_GB:g} GB resident "
                                     f"(see SD_KNOBS): run it on a machine with ≥ {SD_NEEDS_GB:g} GB of RAM")


@pytest.mark.slow
@_sd_skip()
def test_tloco_unsupervised_on_the_sd21_base_architecture(sd_model, capsys):
    """Algorithm 3 on SD-2.1-base: 64×64×4 latents, the PMP decoded to 512×512 by the real VAE; r = r' = 1."""
    torch.set_num_threads(1)
    mask = rectangle((512, 512), 128, 64, 384, 192)
    assert sd_model.shape == (4, 64, 64) and sd_model.out_shape == (3, 512, 512)
    with rs.memory_guard(SD_MEMORY_LIMIT_GB, "T-LOCO unsupervised on SD-2.1-base"):
        res, m = rs.measure(tloco.t_loco_unsupervised, sd_model, mask, None, (5.0,), seed=0, r=1, r_null=1,
                            max_iter=1, **SD_KNOBS)
        _report(capsys, "sd-2.1-base T-LOCO unsupervised", m, f"direction {res.direction.seconds:.0f} s, t = {res.t:.3f}")
        assert res.edited.shape == (1, 3, 512, 512) and res.original.shape == (3, 512, 512)
        assert res.x_t.shape == res.direction.v.shape == (4, 64, 64)
        assert torch.isfinite(res.edited).all() and torch.isfinite(res.original).all()
        assert float(res.direction.v.norm()) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.slow
@_sd_skip()
def test_tloco_text_on_the_sd21_base_architecture(sd_model, capsys):
    """Algorithm 4 on SD-2.1-base at 64×64×4 → 512 px; V̄ from r' = 1."""
    torch.set_num_threads(1)
    mask = rectangle((512, 512), 128, 64, 384, 192)
    with rs.memory_guard(SD_MEMORY_LIMIT_GB, "T-LOCO text on SD-2.1-base"):
        res, m = rs.measure(tloco.t_loco_text, sd_model, mask, None, (10.0,), seed=0, r_null=1, max_iter=1,
                            **SD_KNOBS)
        _report(capsys, "sd-2.1-base T-LOCO text-supervised", m, f"direction {res.direction.seconds:.0f} s, t = {res.t:.3f}")
        _check_text_direction(res.text, res, (4, 64, 64), 1)
        assert res.edited.shape == (1, 3, 512, 512)


@pytest.mark.slow
def test_loco_edit_on_the_256px_ddpm_architecture(capsys):
    """Algorithm 1 on google/ddpm-ema-celebahq-256's architecture (random weights): 256×256×3, r = r' = 5."""
    torch.set_num_threads(1)
    with rs.memory_guard(MEMORY_LIMIT_GB, "LOCO on the 256² DDPM"):
        model, mb = rs.measure(rs.standin_model, "ddpm-celebahq-256")
        _report(capsys, "ddpm-celebahq-256 build", mb)
        x0 = _smooth_image(model.shape)
        mask = rectangle((256, 256), 96, 64, 160, 128)  # a band across the upper middle ("eyes")
        res, m = rs.measure(loco_edit, model, x0, mask, model.spec.edit_t, strengths=(6.0,), r=5, r_null=5,
                            max_iter=1, num_steps=NUM_STEPS)
        d = res.direction
        _report(capsys, "ddpm-celebahq-256 LOCO edit (inversion, both power methods, sampling)", m,
                f"direction {d.seconds:.0f} s, t = {res.t:.3f}, σ_k = {d.sigma:.3g}")
        assert res.t == pytest.approx(ddim_grid(NUM_STEPS).snap(model.spec.edit_t))
        assert res.x_t.shape == res.reconstruction.shape == (3, 256, 256) and res.edited.shape == (1, 3, 256, 256)
        for tensor in (res.x_t, res.reconstruction, res.edited, d.v):
            assert torch.isfinite(tensor).all()
        assert d.v.shape == (3, 256, 256) and float(d.v.norm()) == pytest.approx(1.0, abs=1e-4)
        assert d.sigma > 0 and d.extra["n_iter"] == 1 and d.r == 5 and d.r_null == 5
        assert not torch.allclose(res.edited[0], res.reconstruction)
        # the Jacobian the direction came from, at this x_t, against finite differences and its own adjoint
        u = torch.randn(3, 256, 256, generator=torch.Generator().manual_seed(2))
        # ‖f‖ ≈ 2.9e3 against ‖J v‖ ≈ 7 (random weights, t = 0.6): float32 rounding, error ∝ 1/h, dominates the
        # central difference (measured at a random x: 1.6e-2 at h = 0.01, 5.5e-4 at h = 0.3), so h = 0.3 (‖v‖ = 1)
        (rel, adj), mc = rs.measure(_fd_and_adjoint, model.pmp(res.t), res.x_t, d.v, u, h=0.3)
        _report(capsys, "ddpm-celebahq-256 J·v vs finite differences", mc, f"rel. error {rel:.1e}, adjoint {adj:.1e}")
        assert rel < 5e-3 and adj < 1e-4


@pytest.fixture(scope="module")
def if_model():
    torch.set_num_threads(1)
    pipe = rs.standin_t2i("deepfloyd-if-i-m", seed=0, num_steps=NUM_STEPS)
    return pipe.with_prompts("a photo of a man", "a photo of a man wearing glasses")


@pytest.mark.slow
def test_tloco_unsupervised_on_the_if_i_m_architecture(if_model, capsys):
    """Algorithm 3 on DeepFloyd IF stage I (M) at 64×64×3 with learned variance, CFG s = 7; r = r' = 5."""
    torch.set_num_threads(1)
    mask = rectangle((64, 64), 16, 16, 48, 32)
    with rs.memory_guard(MEMORY_LIMIT_GB, "T-LOCO unsupervised on IF-I-M"):
        res, m = rs.measure(tloco.t_loco_unsupervised, if_model, mask, None, (15.0,), seed=0, r=5, r_null=5,
                            max_iter=1)
        _report(capsys, "deepfloyd-if-i-m T-LOCO unsupervised", m,
                f"direction {res.direction.seconds:.0f} s, t = {res.t:.3f}")
        assert res.edited.shape == (1, 3, 64, 64) and res.original.shape == (3, 64, 64)
        assert torch.isfinite(res.edited).all() and torch.isfinite(res.original).all()
        assert float(res.direction.v.norm()) == pytest.approx(1.0, abs=1e-4) and res.direction.extra["n_iter"] == 1
        # λ = 0 is exactly plain sampling from the same seed (oracle: tloco.sample)
        plain, ms = rs.measure(tloco.sample, if_model, 0)
        _report(capsys, "deepfloyd-if-i-m plain sample", ms)
        torch.testing.assert_close(res.original, plain, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_tloco_text_on_the_if_i_m_architecture(if_model, capsys):
    """Algorithm 4 on IF-I-M: d = P_Ω(f^e − f^o), v = J_eᵀ d (checked by finite differences), V̄ from r' = 5."""
    torch.set_num_threads(1)
    mask = rectangle((64, 64), 16, 16, 48, 32)
    with rs.memory_guard(MEMORY_LIMIT_GB, "T-LOCO text on IF-I-M"):
        res, m = rs.measure(tloco.t_loco_text, if_model, mask, None, (50.0,), seed=0, r_null=5, max_iter=1)
        _report(capsys, "deepfloyd-if-i-m T-LOCO text-supervised", m,
                f"direction {res.direction.seconds:.0f} s, t = {res.t:.3f}")
        td = res.text
        _check_text_direction(td, res, (3, 64, 64), 5)
        _check_v_raw_by_differences(if_model, res)



# ----------------------------------------------------------------------------- LCM_Dreamshaper_v7
@pytest.fixture(scope="module")
def lcm_model():
    torch.set_num_threads(1)
    pipe = rs.standin_t2i("lcm-dreamshaper-v7", seed=0, recompute=True)  # LCM's own 4 steps (the paper's)
    model = pipe.with_prompts("a photo of a woman", "a photo of a woman with a red hat")
    pipe.text_encoder = None  # the prompts are encoded: release the CLIP encoder (T-LOCO never encodes again)
    return model


#: LCM_Dreamshaper_v7 (an SD-1.5-architecture UNet with the w-embedding, no CFG batch; its unet config's
#: sample_size is 96: 96×96×4 latents decoded to 768 px): larger than SD's 512 px, so it runs as SD does —
#: recomputed blocks, J·v by forward mode, one direction per call (SD_KNOBS), the same guard.
LCM_MASK = ((768, 768), 240, 144, 528, 336)


@pytest.mark.slow
@_sd_skip()
def test_tloco_unsupervised_on_the_lcm_dreamshaper_v7_architecture(lcm_model, capsys):
    """Algorithm 3 on LCM_Dreamshaper_v7: 4 LCM steps, the edit at the second (G.3); 96×96×4 → 768 px; r = r' = 1."""
    torch.set_num_threads(1)
    mask = rectangle(*LCM_MASK)
    assert lcm_model.shape == (4, 96, 96) and lcm_model.out_shape == (3, 768, 768)
    assert lcm_model.pipe.num_steps == 4 and lcm_model.pipe.recompute
    with rs.memory_guard(SD_MEMORY_LIMIT_GB, "T-LOCO unsupervised on LCM_Dreamshaper_v7"):
        res, m = rs.measure(tloco.t_loco_unsupervised, lcm_model, mask, None, (5.0,), seed=0, r=1, r_null=1,
                            max_iter=1, **SD_KNOBS)
        _report(capsys, "lcm-dreamshaper-v7 T-LOCO unsupervised", m,
                f"direction {res.direction.seconds:.0f} s, t = {res.t:.3f}")
        assert res.t == pytest.approx(lcm_model.sampler(0).t[1])  # the second of the 4 LCM steps
        assert res.edited.shape == (1, 3, 768, 768) and res.original.shape == (3, 768, 768)
        assert res.x_t.shape == res.direction.v.shape == (4, 96, 96)
        assert torch.isfinite(res.edited).all() and torch.isfinite(res.original).all()
        assert float(res.direction.v.norm()) == pytest.approx(1.0, abs=1e-4) and res.direction.extra["n_iter"] == 1
        assert not torch.allclose(res.edited[0], res.original)
        # λ = 0 is exactly plain LCM sampling from the same seed (oracle: tloco.sample, its own 4 steps)
        plain, ms = rs.measure(tloco.sample, lcm_model, 0)
        _report(capsys, "lcm-dreamshaper-v7 plain sample", ms)
        torch.testing.assert_close(res.original, plain, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@_sd_skip()
def test_tloco_text_on_the_lcm_dreamshaper_v7_architecture(lcm_model, capsys):
    """Algorithm 4 on LCM_Dreamshaper_v7: v = J_eᵀ d checked by finite differences of f^e; V̄ from r' = 1."""
    torch.set_num_threads(1)
    mask = rectangle(*LCM_MASK)
    with rs.memory_guard(SD_MEMORY_LIMIT_GB, "T-LOCO text on LCM_Dreamshaper_v7"):
        res, m = rs.measure(tloco.t_loco_text, lcm_model, mask, None, (10.0,), seed=0, r_null=1, max_iter=1,
                            **SD_KNOBS)
        _report(capsys, "lcm-dreamshaper-v7 T-LOCO text-supervised", m,
                f"direction {res.direction.seconds:.0f} s, t = {res.t:.3f}")
        td = res.text
        _check_text_direction(td, res, (4, 96, 96), 1)
        assert res.edited.shape == (1, 3, 768, 768)
        _check_v_raw_by_differences(lcm_model, res)  # v_raw by recomputed reverse mode

def _check_v_raw_by_differences(model, res, h: float = 1e-3, rel: float = 2e-2):
    """v_raw = J_eᵀ d: ⟨v_raw, w⟩ = ⟨d, J_e w⟩ for a seeded w, with J_e w by central differences of f^e."""
    td = res.text
    w = torch.randn(res.x_t.shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        pair = model.pmp_edit(res.t)(torch.stack([res.x_t + h * w, res.x_t - h * w]))
    lhs, rhs = float((td.v_raw * w).sum()), float((td.d * (pair[0] - pair[1])).sum() / (2 * h))
    assert lhs == pytest.approx(rhs, rel=rel)


def _check_text_direction(td, res, latent_shape, r_null):
    mask = res.direction.mask
    assert td.v_raw.shape == td.v_proj.shape == res.direction.v.shape == latent_shape
    assert torch.isfinite(td.v_raw).all() and torch.isfinite(res.edited).all()
    assert float(td.d.abs()[~mask.expand_as(td.d)].max()) == 0.0  # d lives inside Ω
    Vb = td.Vbar
    assert Vb.shape == (math.prod(latent_shape), r_null)
    torch.testing.assert_close(Vb.T @ Vb, torch.eye(r_null), atol=1e-4, rtol=0)
    assert float((Vb.T @ td.v_proj.reshape(-1)).abs().max()) <= 1e-4 * float(td.v_proj.norm())  # v_p ⟂ span V̄
    assert float(res.direction.v.norm()) == pytest.approx(1.0, abs=1e-4)
