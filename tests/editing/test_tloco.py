"""T-LOCO Edit (Algorithms 3 and 4) on tiny random-weight pipelines of the three families, and its oracles."""
import numpy as np
import pytest
import torch

from lococourse.editing import tloco
from lococourse.editing.masks import rectangle
from lococourse.jacobian import JacobianOperator
from lococourse.models import registry, t2i
from lococourse.models.registry import ModelNotAvailableError
from lococourse.models.tiny import tiny_pipeline

FAST = dict(r_null=2, max_iter=3, tol=1e-3)
SRC, EDIT = "a photo of a man", "a photo of a man wearing glasses"


@pytest.fixture(scope="module", params=["sd", "if", "lcm"])
def model(request):
    pipe = tiny_pipeline(request.param, 0, num_steps=10 if request.param != "lcm" else None)
    return pipe.with_prompts(SRC, EDIT)


def _mask(model):
    _, H, W = model.out_shape
    return rectangle((H, W), W // 4, H // 4, 3 * W // 4, H // 2 + 1)


def test_shapes_and_plain_sampling(model):
    fam = model.family
    assert model.shape == ((3, 8, 8) if fam == "if" else (4, 8, 8))
    assert model.out_shape == ((3, 8, 8) if fam == "if" else (3, 16, 16))
    a, b, c = tloco.sample(model, 1), tloco.sample(model, 1), tloco.sample(model, 2)
    assert a.shape == model.out_shape and torch.equal(a, b) and not torch.allclose(a, c)
    f = model.pmp_source(0.7)
    assert f(torch.randn(2, *model.shape)).shape == (2, *model.out_shape)
    assert f(torch.randn(2, *model.shape)).dtype == torch.float32


def test_resample_reproduces_the_edit_and_plain_sampling(model):
    """tloco.resample at the edit's own λ gives the edit's images; at λ = 0 the plain sample (oracle:
    t_loco_unsupervised's own sampling and tloco.sample); the notebook-08 view draws it."""
    res = tloco.t_loco_unsupervised(model, _mask(model), None, (-4.0, 4.0), seed=1, r=2, **FAST)
    again = tloco.resample(model, res, [4.0, -4.0, 0.0], seed=1)
    assert torch.allclose(again[0], res.edited[1], atol=1e-5) and torch.allclose(again[1], res.edited[0], atol=1e-5)
    assert torch.allclose(again[2], tloco.sample(model, 1), atol=1e-5)
    from matplotlib.figure import Figure

    from lococourse.course import viz_edit

    w = viz_edit.tloco_widget({model.family: model}, {"unsup": (model.family, res)}, strength=2.0, seed=1)
    assert isinstance(w.result, Figure)
    with pytest.raises(ValueError, match="name must be one of"):
        viz_edit.tloco_view({model.family: model}, {"unsup": (model.family, res)}, "text", 1.0)
    with pytest.raises(ValueError, match="finite"):
        tloco.resample(model, res, [float("nan")])


def test_unsupervised_edit(model):
    res = tloco.t_loco_unsupervised(model, _mask(model), None, (0.0, 5.0), seed=1, r=2, **FAST)
    base = tloco.sample(model, 1)
    assert res.edited.shape == (2, *model.out_shape) and res.x_t.shape == model.shape
    torch.testing.assert_close(res.original, base, atol=1e-4, rtol=0)  # λ = 0 is plain sampling
    torch.testing.assert_close(res.edited[0], base, atol=1e-4, rtol=0)
    assert (res.edited[1] - base).abs().max() > 1e-3  # the edit changes the image
    assert abs(float(res.direction.v.norm()) - 1) < 1e-5
    expected_t = {"sd": 0.7, "if": 0.75}.get(model.family)
    assert abs(res.t - expected_t) < 0.06 if expected_t else res.t == model.sampler(0).t[1]


def test_text_edit_deterministic(model):
    r1 = tloco.t_loco_text(model, _mask(model), None, (10.0,), seed=1, **FAST)
    r2 = tloco.t_loco_text(model, _mask(model), None, (10.0,), seed=1, **FAST)
    torch.testing.assert_close(r1.direction.v, r2.direction.v, atol=1e-6, rtol=0)
    td = r1.text
    assert torch.all(td.d[~tloco.pixel_mask(_mask(model), model)] == 0)  # d is masked
    assert float((td.Vbar.T @ r1.direction.v.reshape(-1)).abs().max()) < 1e-5  # projected out of span(V̄)
    torch.testing.assert_close(r1.original, tloco.sample(model, 1), atol=1e-4, rtol=0)
    assert (r1.edited[0] - r1.original).abs().max() > 1e-3


def test_text_direction_linear_oracle():
    """f(x) = A x + b exactly: v = A_eᵀ d by hand, and its projection off the top-r' of P_{Ω^c} A_o."""
    g = torch.Generator().manual_seed(0)
    d_in, out = 12, (2, 4, 4)
    A_o, A_e = torch.randn(32, d_in, generator=g, dtype=torch.float64), torch.randn(32, d_in, generator=g, dtype=torch.float64)
    b_o, b_e = torch.randn(32, generator=g, dtype=torch.float64), torch.randn(32, generator=g, dtype=torch.float64)
    f_o = lambda x: (x @ A_o.T + b_o).reshape(-1, *out)  # noqa: E731
    f_e = lambda x: (x @ A_e.T + b_e).reshape(-1, *out)  # noqa: E731
    x = torch.randn(d_in, generator=g, dtype=torch.float64)
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[1:3, :] = True
    m = mask.expand(out).reshape(-1).double()
    td = tloco.text_direction(f_o, f_e, x, mask, r_null=3, tol=1e-12, max_iter=2000)
    d = m * ((A_e - A_o) @ x + b_e - b_o)
    v = A_e.T @ d
    torch.testing.assert_close(td.d.reshape(-1), d)
    torch.testing.assert_close(td.v_raw, v)  # before projection and normalisation
    Vbar = torch.from_numpy(np.linalg.svd(((1 - m)[:, None] * A_o).numpy())[2][:3].T)
    vp = v - Vbar @ (Vbar.T @ v)
    torch.testing.assert_close(td.v_proj, vp, atol=1e-7, rtol=1e-6)
    torch.testing.assert_close(td.direction.v, vp / vp.norm(), atol=1e-7, rtol=1e-6)


def test_lcm_sampler_matches_diffusers():
    from diffusers import LCMScheduler
    from diffusers.pipelines.latent_consistency_models import LatentConsistencyModelPipeline

    pipe = tiny_pipeline("lcm", 0)
    m = pipe.with_prompts(SRC)
    w = pipe.w_embedding(8.0)
    ref_w = LatentConsistencyModelPipeline.get_guidance_scale_embedding(None, torch.tensor([7.0]), embedding_dim=16)
    torch.testing.assert_close(w, ref_w)
    sched = LCMScheduler.from_config(pipe.scheduler.config)
    sched.set_timesteps(4)
    g = torch.Generator().manual_seed(3)
    z = torch.randn(1, *m.shape, generator=g)
    with torch.no_grad():
        for k in sched.timesteps:
            eps = pipe.unet(z, k, encoder_hidden_states=m.cond, timestep_cond=w).sample
            z = sched.step(eps, k, z, generator=g).denoised if k == sched.timesteps[-1] else sched.step(eps, k, z, generator=g).prev_sample
        ref = pipe.vae.decode(z / pipe.vae.config.scaling_factor).sample[0]
    torch.testing.assert_close(tloco.sample(m, 3), ref, atol=1e-4, rtol=1e-4)


def test_chunk_and_pool():
    pipe = tiny_pipeline("sd", 0, num_steps=10)
    m = pipe.with_prompts(SRC, EDIT)
    f = m.pmp_source(0.7)
    x = torch.randn(*m.shape, generator=torch.Generator().manual_seed(0))
    V = torch.randn(3, *m.shape, generator=torch.Generator().manual_seed(1))
    full = JacobianOperator(f, x).mv(V)
    torch.testing.assert_close(JacobianOperator(f, x, chunk=2).mv(V), full, atol=1e-5, rtol=1e-4)
    pm = tloco.pixel_mask(_mask(m), m, pool=2)
    assert pm.shape == (3, 8, 8)
    res = tloco.t_loco_text(m, _mask(m), 0.7, (10.0,), seed=1, jacobian_pool=2, chunk=1, **FAST)
    assert res.edited.shape == (1, 3, 16, 16) and res.direction.extra["jacobian_pool"] == 2


@pytest.fixture(scope="module")
def sd():
    return tiny_pipeline("sd", 0, num_steps=10)


def test_bad_inputs(sd, monkeypatch):
    with pytest.raises(ValueError, match="prompt must be a non-empty"):
        sd.with_prompts("")
    with pytest.raises(ValueError, match="edit_prompt must be a non-empty"):
        sd.with_prompts(SRC, "  ")
    with pytest.raises(ValueError, match="needs an edit prompt"):
        tloco.t_loco_text(sd.with_prompts(SRC), rectangle((16, 16), 0, 0, 8, 8))
    m = sd.with_prompts(SRC)
    with pytest.raises(ValueError, match="latent resolution"):
        tloco.t_loco_unsupervised(m, rectangle((8, 8), 0, 0, 4, 4))
    with pytest.raises(ValueError, match="unknown family"):
        tiny_pipeline("sdxl")
    with pytest.raises(ValueError, match="unknown family"):
        t2i.T2IPipeline("dalle", sd.unet, sd.vae, sd.text_encoder, sd.tokenizer, sd.scheduler)
    with pytest.raises(ValueError, match="CUDA only"):
        registry.load_t2i("tiny-sd", dtype=torch.float16)
    with pytest.raises(ValueError, match="family"):
        registry.load_t2i("ddpm-celebahq-256")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError, match="not available"):
        registry.load_t2i("sd-2.1-base")


def test_cli(tmp_path, capsys, monkeypatch):
    from lococourse.cli.main import main

    out = tmp_path / "e.png"
    rc = main(["t-edit", "--model", "tiny-if", "--prompt", SRC, "--edit-prompt", EDIT, "--mask", "2,2,6,5",
               "--strength", "10", "--seed", "1", "--out", str(out), "--num-steps", "6", "--r-null", "2",
               "--max-iter", "2", "--quiet"])
    assert rc == 0 and out.exists() and (tmp_path / "e_source.png").exists() and (tmp_path / "e.safetensors").exists()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["t-edit", "--model", "sd-2.1-base", "--prompt", SRC, "--mask", "0,0,8,8", "--strength", "1",
                 "--out", str(out), "--quiet"]) == 2
    assert "not available" in capsys.readouterr().err
