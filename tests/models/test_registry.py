"""lococourse.models.registry: names, availability, loading (course models, local folders, hub models that are not here)."""
from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import torch

from lococourse.cli import main as cli
from lococourse.models import registry
from lococourse.models.registry import HUB_MODELS, ModelNotAvailableError

COURSE = sorted(registry.course_models())
#: A never-routed address (RFC 5737 TEST-NET-1): a hub probe against it fails and can never download anything.
NO_ROUTE = "192.0.2.1"


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _skip_if_cached(spec):
    if registry.cached_config(spec):
        pytest.skip(f"{spec.name} is in the local Hugging Face cache here")


@pytest.fixture(scope="module")
def tiny_unet():
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=4).eval()


# ---------------------------------------------------------------------------------------- names
@pytest.mark.parametrize("fn", [registry.get_spec, registry.load_model, registry.load_unet])
def test_unknown_name_is_a_value_error_listing_the_names(fn):
    with pytest.raises(ValueError, match="unknown model 'no-such-model'") as e:
        fn("no-such-model")
    for name in registry.all_models():
        assert name in str(e.value)
    assert "local diffusers folder" in str(e.value)


def test_registry_holds_course_and_hub_models():
    assert {"faces16", "faces32", "molrg_d48", "molrg_d192"} <= set(COURSE)
    assert set(HUB_MODELS) <= set(registry.all_models()) and "ddpm-celebahq-256" in HUB_MODELS
    for name, spec in registry.all_models().items():
        assert spec.name == name and spec.kind in ("course", "hub")


# ---------------------------------------------------------------------------------------- course models
@pytest.mark.parametrize("name", COURSE)
def test_course_model_is_available_and_loads(name):
    spec = registry.get_spec(name)
    card = json.loads((registry.ASSETS / name / "card.json").read_text())
    assert spec.kind == "course" and registry.availability(spec) == (True, spec.source)
    m = registry.load_model(name)
    assert m.shape == tuple(card["shape"]) and m.prediction_type == card["prediction_type"]
    assert not m.unet.training and not any(p.requires_grad for p in m.unet.parameters())
    f = m.pmp(0.5)
    x = torch.randn(2, *m.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = f(x)
    assert y.shape == x.shape and torch.isfinite(y).all() and f.t == pytest.approx(0.5)


# ---------------------------------------------------------------------------------------- hub models, not here
@pytest.mark.parametrize("name", sorted(HUB_MODELS))
def test_hub_models_are_listed_as_not_available(name, offline):
    spec = registry.get_spec(name)
    _skip_if_cached(spec)
    ok, why = registry.availability(spec)
    assert spec.kind == "hub" and not ok and "cache" in why


@pytest.mark.parametrize("loader, name", [(registry.load_model, "ddpm-celebahq-256"), (registry.load_unet, "ddpm-church-256"),
                                          (registry.load_unet, "sd-2.1-base"), (registry.load_unet, "deepfloyd-if-i-m")])
def test_missing_hub_model_fails_fast_offline(loader, name, offline):
    spec = registry.get_spec(name)
    _skip_if_cached(spec)
    t0 = time.perf_counter()
    with pytest.raises(ModelNotAvailableError) as e:
        loader(name)
    assert time.perf_counter() - t0 < 20, "a missing model must never hang"
    msg = str(e.value)
    assert name in msg and spec.source in msg and "HF_HUB_OFFLINE" in msg
    assert f"hf download {spec.source}" in msg  # says how to get it


def test_missing_hub_model_fails_fast_without_network(monkeypatch):
    spec = registry.get_spec("ddpm-celebahq-256")
    _skip_if_cached(spec)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(registry, "HUB_HOST", NO_ROUTE)
    t0 = time.perf_counter()
    with pytest.raises(ModelNotAvailableError, match="unreachable") as e:
        registry.load_model("ddpm-celebahq-256")
    assert time.perf_counter() - t0 < 20, "a missing model must never hang"
    assert "hf download google/ddpm-ema-celebahq-256" in str(e.value)
    ok, why = registry.availability(spec, probe_network=True)
    assert not ok and "unreachable" in why


def test_text_to_image_model_is_refused_by_load_model():
    with pytest.raises(ValueError, match="text-to-image"):
        registry.load_model("sd-2.1-base")


# ---------------------------------------------------------------------------------------- local folders
def test_local_diffusers_folder_loads_by_path(tiny_unet, tmp_path):
    tiny_unet.save_pretrained(tmp_path, safe_serialization=True)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").exists()
    assert not list(tmp_path.glob("*.bin"))
    spec = registry.get_spec(str(tmp_path))
    assert spec.kind == "local" and spec.resolution == 8 and spec.channels == 3
    assert registry.availability(spec)[0]
    # a folder that does not say what its UNet predicts is refused, not read as ε (issue 11) ...
    with pytest.raises(ValueError, match="does not say what its UNet predicts") as e:
        registry.load_model(str(tmp_path))
    assert str(tmp_path) in str(e.value) and "prediction_type" in str(e.value) and "sample" in str(e.value)
    # ... and loads once the caller says it
    m = registry.load_model(str(tmp_path), prediction_type="epsilon")
    assert m.shape == (3, 8, 8) and m.prediction_type == "epsilon"
    for a, b in zip(m.unet.state_dict().values(), tiny_unet.state_dict().values()):
        assert torch.equal(a, b)  # stored weights, loaded: not recomputed
    # the PMP is eq. 2 with diffusers' noise table: x̂₀ = (x − √(1−ᾱ_k) ε_θ(x, k)) / √ᾱ_k, k = round(t·T) − 1
    from diffusers import DDPMScheduler

    ab = float(DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02,
                             beta_schedule="linear").alphas_cumprod[299])
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = (x - math.sqrt(1 - ab) * tiny_unet(x, 299).sample) / math.sqrt(ab)
        got = m.pmp(0.3)(x)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-5)


def test_local_folder_reads_the_prediction_type_of_its_scheduler(tiny_unet, tmp_path):
    tiny_unet.save_pretrained(tmp_path, safe_serialization=True)
    (tmp_path / "scheduler_config.json").write_text(json.dumps({"prediction_type": "v_prediction"}))
    assert registry.load_model(str(tmp_path)).prediction_type == "v_prediction"


def test_recipe_folder_loaded_by_path_uses_its_card(tmp_path):
    """A copied course model (or a recipe's --out folder) loaded by path keeps its x₀-parametrisation:
    its PMP is the network output itself, the same as loading it by name."""
    import shutil

    shutil.copytree(registry.get_spec("faces16").source, tmp_path / "mine")
    by_path, by_name = registry.load_model(str(tmp_path / "mine")), registry.load_model("faces16")
    assert by_path.prediction_type == by_name.prediction_type == "sample"
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(by_path.pmp(0.5)(x), by_name.unet(x, 499).sample, atol=1e-6)


def test_folder_without_a_config_is_not_available(tmp_path):
    with pytest.raises(ModelNotAvailableError, match="no diffusers config.json"):
        registry.load_model(str(tmp_path))


# ---------------------------------------------------------------------------------------- `lococourse models`
def test_models_json_lists_every_model(capsys, offline):
    assert cli.main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert isinstance(rows, list) and {r["name"] for r in rows} == set(registry.all_models())
    for r in rows:
        assert {"name", "source", "kind", "available"} <= set(r) and isinstance(r["available"], bool)
        spec = registry.get_spec(r["name"])
        assert r["source"] == spec.source and r["kind"] == spec.kind
        if r["kind"] == "course":
            assert r["available"] is True
        elif not registry.cached_config(spec):
            assert r["available"] is False


def test_models_table(capsys, offline):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:2] == ["name", "kind"]
    for name in registry.all_models():
        assert name in out


# ---------------------------------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def d48():
    return registry.load_model("molrg_d48")


@pytest.mark.parametrize("shape, match", [((1, 1, 4, 4), "1 channels but"), ((1, 4, 4, 4), "4 channels but"),
                                          ((1, 3, 8, 8), "size 8×8 but"), ((3, 4), "must be a batch")])
def test_wrong_image_shape_for_a_models_pmp(d48, shape, match):
    with pytest.raises(ValueError, match=match):
        d48.pmp(0.5)(torch.zeros(shape))


def test_nan_input_is_refused(d48):
    with pytest.raises(ValueError, match="NaN"):
        d48.pmp(0.5)(torch.full((1, 3, 4, 4), float("nan")))


@pytest.mark.parametrize("t", [0.0, -0.1, 1.5, float("nan"), float("inf")])
def test_t_outside_the_unit_interval_is_refused(d48, t):
    with pytest.raises(ValueError, match="t must"):
        d48.pmp(t)


@pytest.mark.parametrize("t", [-0.1, 1.01, float("nan")])
def test_t_edit_outside_0_1_is_refused(t):
    from lococourse.models.ddim import ddim_grid

    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        ddim_grid().index(t)


def test_rank_curve_refuses_bad_times_before_loading():
    from lococourse.cli.rank_curve import compute

    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="t must lie"):
        compute("ddpm-celebahq-256", [0.5, 1.5])  # refused before any load is attempted
    with pytest.raises(ValueError, match="t must lie"):
        compute("faces16", [0.5], linearity_t=0.0)
    assert time.perf_counter() - t0 < 5


# ---------------------------------------------------------------------------------------- integrity (issue 11)
def _copy(name, dst):
    import shutil

    shutil.copytree(registry.get_spec(name).source, dst)
    return dst


def _sha(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_card_sha256_is_checked_before_loading(tmp_path):
    """A flipped byte in a course model's weights: the card's weights_sha256 (written by its recipe) no longer
    matches hashlib's digest of the file, and loading is refused naming the file, before any computation."""
    m = _copy("molrg_d48", tmp_path / "m")
    w = m / registry.WEIGHTS
    card = json.loads((m / "card.json").read_text())
    assert _sha(w) == card["weights_sha256"]  # the oracle: hashlib on the shipped file agrees with the card
    data = bytearray(w.read_bytes())
    data[-1000] ^= 0x01  # one bit in the tensor data: still a valid safetensors file, different weights
    w.write_bytes(bytes(data))
    with pytest.raises(registry.ModelIntegrityError, match="sha256") as e:
        registry.load_model(str(m))
    assert str(w) in str(e.value) and card["weights_sha256"][:16] in str(e.value)
    w.write_bytes(bytes(data[: len(data) // 2]))  # truncated: caught by the size in the card
    with pytest.raises(registry.ModelIntegrityError, match="bytes but its card says"):
        registry.load_model(str(m))


def test_unreadable_or_nonfinite_weights_are_named(tmp_path, tiny_unet):
    folder = tmp_path / "f"
    tiny_unet.save_pretrained(folder, safe_serialization=True)
    w = folder / registry.WEIGHTS
    torch.save(tiny_unet.state_dict(), w)  # a pickle under the safetensors name: never unpickled
    with pytest.raises(ModelNotAvailableError) as e:
        registry.load_model(str(folder), prediction_type="epsilon")
    assert str(w) in str(e.value)
    w.write_bytes(b"")
    with pytest.raises(ModelNotAvailableError, match=str(w)):
        registry.load_model(str(folder), prediction_type="epsilon")
    from safetensors.torch import save_file

    sd = {k: v.clone() for k, v in tiny_unet.state_dict().items()}
    first = next(iter(sd))
    sd[first].view(-1)[0] = float("nan")
    save_file(sd, str(w))
    with pytest.raises(registry.ModelIntegrityError, match="NaN or inf") as e:
        registry.load_model(str(folder), prediction_type="epsilon")
    assert first in str(e.value)


def test_prediction_type_contradicting_the_card_or_not_allowed(tmp_path):
    m = _copy("faces16", tmp_path / "m")
    with pytest.raises(ValueError, match="contradicts its model card, which says 'sample'"):
        registry.load_model(str(m), prediction_type="epsilon")
    with pytest.raises(ValueError, match="not one of epsilon, v_prediction, sample"):
        registry.load_model(str(m), prediction_type="x0")
    card = json.loads((m / "card.json").read_text())
    (m / "card.json").write_text(json.dumps({**card, "prediction_type": "eps"}))
    with pytest.raises(ModelNotAvailableError, match="gives prediction_type 'eps'"):
        registry.load_model(str(m))
    (m / "card.json").write_text("{not json")
    with pytest.raises(ModelNotAvailableError, match="card.json cannot be read"):
        registry.load_model(str(m))


def test_trained_folder_says_what_it_predicts_even_when_copied(tmp_path):
    """train() writes the prediction type into the weights' metadata and a diffusers scheduler_config.json; a
    folder holding only config.json + the weights (what a recipe exports) still loads as what it was trained as."""
    import shutil

    from safetensors import safe_open

    from lococourse.models.train import PREDICTION_TYPE_KEY, TrainConfig, UNetConfig, train

    unet = UNetConfig(sample_size=8, in_channels=1, block_out_channels=(8, 16), down_block_types=("DownBlock2D",) * 2,
                      up_block_types=("UpBlock2D",) * 2, norm_num_groups=4)
    cfg = TrainConfig(unet=unet, prediction_type="v_prediction", steps=1, batch_size=2, warmup=1, checkpoint_every=1)
    train(cfg, lambda b, g: torch.rand(b, 1, 8, 8, generator=g) * 2 - 1, tmp_path / "run", log=lambda s: None)
    folder = tmp_path / "run" / "model"
    with safe_open(str(folder / registry.WEIGHTS), framework="pt") as fh:
        assert fh.metadata()[PREDICTION_TYPE_KEY] == "v_prediction"
    sched = json.loads((folder / "scheduler_config.json").read_text())
    from diffusers import DDPMScheduler

    s = DDPMScheduler.from_config(sched)  # a real diffusers scheduler config, of the paper's schedule
    assert s.config.prediction_type == "v_prediction" and s.config.beta_end == pytest.approx(0.02)
    assert registry.load_model(str(folder)).prediction_type == "v_prediction"
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in ("config.json", registry.WEIGHTS):
        shutil.copyfile(folder / f, bare / f)
    assert registry.load_model(str(bare)).prediction_type == "v_prediction"


def test_half_precision_and_missing_devices_fail_at_once(tmp_path):
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="torch.float16 is not supported by load_model"):
        registry.load_model("faces16", torch.float16)
    with pytest.raises(ValueError, match="bfloat16"):
        registry.load_model("faces16", torch.bfloat16)
    assert time.perf_counter() - t0 < 5  # refused before the weights are read
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="device 'cuda' is not available here") as e:
        registry.load_t2i("tiny-sd", device="cuda")
    assert "cpu" in str(e.value) and torch.__version__ in str(e.value)
    with pytest.raises(ValueError, match="opt-in on CUDA only"):
        registry.load_t2i("tiny-sd", dtype=torch.float16)
    with pytest.raises(ValueError, match="not a device torch knows"):
        registry.load_t2i("tiny-sd", device="gpu")


def test_t2i_names_and_shapes_known_before_loading():
    with pytest.raises(ValueError, match="unknown text-to-image model 'tiny-xl'") as e:
        registry.load_t2i("tiny-xl")
    msg = str(e.value)
    assert all(n in msg for n in ("tiny-sd", "tiny-if", "tiny-lcm", "sd-2.1-base")) and "faces16" not in msg
    for name in ("tiny-sd", "tiny-if", "tiny-lcm"):  # the oracle: the built pipelines themselves
        pipe = registry.load_t2i(name)
        assert registry.t2i_image_shape(name) == tuple(pipe.image_shape)
        assert registry.t2i_latent_shape(name) == tuple(pipe.latent_shape)
    assert registry.t2i_image_shape("sd-2.1-base") == (3, 512, 512)
    assert registry.t2i_latent_shape("sd-2.1-base") == (4, 64, 64)


@pytest.mark.parametrize("name", ["sd-2.1-base", "lcm-dreamshaper-v7"])
def test_latent_hub_shapes_agree_with_their_transcribed_configs(name):
    """The registry's sizes against the checkpoints' own unet/vae configs (models/configs; LCM_Dreamshaper_v7's unet
    has sample_size 96, so 768 px, not SD-1.5's 512)."""
    from lococourse.models import real_size as rs

    source = registry.get_spec(name).source
    size = rs.real_config(source, "unet")["sample_size"]
    assert registry.t2i_latent_shape(name) == (4, size, size)
    assert registry.t2i_image_shape(name) == (3, size * rs.latent_scale(source), size * rs.latent_scale(source))


@pytest.mark.parametrize("bad, match", [("", "is empty"), ("   ", "is empty"), (__file__, "is a file, not a model folder")])
def test_bad_model_names_are_named(bad, match):
    with pytest.raises(ValueError, match=match) as e:
        registry.get_spec(bad)
    assert "faces16" in str(e.value)
