"""Recipes and the shipped course models: loadable, and their cards match their files."""
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from lococourse.core.checks import file_sha256
from synthetic import common
from synthetic.common import ASSETS, WEIGHTS, list_models

MODELS = list_models()


def test_some_models_are_shipped_and_small():
    assert {"molrg_d48", "molrg_d192"} <= set(MODELS) and any(m.startswith("faces") for m in MODELS)
    total = sum(f.stat().st_size for f in ASSETS.rglob("*") if f.is_file())
    assert total <= 25e6, f"the course models take {total / 1e6:.1f} MB > 25 MB"


@pytest.mark.parametrize("name", MODELS)
def test_shipped_model_loads_and_card_matches(name):
    from diffusers import UNet2DModel

    path = ASSETS / name
    card = json.loads((path / "card.json").read_text())
    unet = UNet2DModel.from_pretrained(path)
    assert card["name"] == name
    assert sum(p.numel() for p in unet.parameters()) == card["params"]
    assert (path / WEIGHTS).stat().st_size == card["weights_bytes"]
    assert file_sha256(path / WEIGHTS) == card["weights_sha256"]
    assert list(unet.config.block_out_channels) == list(card["architecture"]["block_out_channels"])
    assert unet.config.sample_size == card["architecture"]["sample_size"] == card["shape"][1]
    assert unet.config.in_channels == card["shape"][0]
    assert card["steps"] == card["steps_planned"] == card["train"]["steps"]
    assert card["final_loss"] == card["loss_curve"][-1][1]
    assert card["prediction_type"] in ("epsilon", "v_prediction", "sample")
    rr = card["rank_ratio"]
    assert rr["d"] == card["shape"][0] * card["shape"][1] * card["shape"][2]
    assert len(rr["t"]) == len(rr["rank_ratio"]) == len(rr["numerical_rank"]) == len(rr["timestep"])
    for r, nr in zip(rr["rank_ratio"], rr["numerical_rank"]):
        assert r == pytest.approx(nr / rr["d"])
    mid = [r for t, r in zip(rr["t"], rr["rank_ratio"]) if 0.2 - 1e-9 <= t <= 0.8 + 1e-9]
    assert card["min_rank_ratio"] == pytest.approx(min(mid)) and card["low_rank"] == (min(mid) < 0.1)
    assert (path / "samples.png").exists() and (path / "README.md").exists()
    for f in card["extra_files"]:
        assert (path / f).exists()


@pytest.mark.parametrize("name", [m for m in MODELS if m.startswith("molrg")])
def test_molrg_model_ships_its_exact_model(name):
    from lococourse.data import load_molrg

    card = common.load_card(name)
    m = load_molrg(ASSETS / name / card["data"]["bases_file"])
    assert list(m.shape) == card["shape"] and m.ranks == card["data"]["ranks"]
    from lococourse.data import molrg_image_model

    ref = molrg_image_model(card["shape"], card["data"]["ranks"], seed=card["data"]["basis_seed"])
    # the recipe's seed rebuilds the bases: a recomputed QR, so equal to float64 rounding (not bit for bit: the
    # kernels differ between CPUs, AVX2 vs AVX-512), while a wrong seed or rank differs by O(1)
    assert all(torch.allclose(a, b, rtol=0, atol=1e-12) for a, b in zip(m.bases, ref.bases))


def _tiny(cfg):
    cfg.train = replace(cfg.train, steps=3, batch_size=4, checkpoint_every=2)
    return replace(cfg, rank_ts=(0.5,), rank_points=1, n_samples=4)


def test_molrg_recipe_end_to_end(tmp_path):
    from synthetic import molrg_d48

    cfg, sampler, kw = molrg_d48.make_from(_tiny(molrg_d48.config()))
    card = common.run_recipe(cfg, sampler, tmp_path / "out", tmp_path / "work", recipe="test", log=lambda s: None, **kw)
    out = tmp_path / "out"
    assert {"config.json", WEIGHTS, "card.json", "README.md", "samples.png", "molrg_bases.safetensors"} <= {
        p.name for p in out.iterdir()}
    assert card["steps"] == 3 and card["rank_ratio"]["d"] == 48 and len(card["rank_ratio"]["exact_rank_ratio"]) == 1
    assert common.load_card(out)["weights_sha256"] == file_sha256(out / WEIGHTS)


def test_faces_recipe_cli_resumes(tmp_path):
    from synthetic import faces16

    def make():
        cfg = _tiny(faces16.config(channels=(8, 16)))
        from lococourse.data import face_sampler
        return cfg, face_sampler(16), {}

    args = ["--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"), "--skip-eval"]
    logs = []
    card = common.recipe_main(make, args + ["--steps", "2"], module="test")
    assert card["steps"] == 2
    sha = file_sha256(tmp_path / "out" / WEIGHTS)
    # an existing model folder is never replaced unasked ...
    with pytest.raises(SystemExit) as e:
        common.recipe_main(make, args + ["--steps", "2"], module="test")
    assert e.value.code == 2 and file_sha256(tmp_path / "out" / WEIGHTS) == sha
    args.append("--overwrite")
    # a different config in the same work directory is refused ...
    with pytest.raises(ValueError, match="another config"):
        common.recipe_main(make, args + ["--steps", "4"], module="test")
    # ... but an interrupted run resumes where it stopped
    cfg, sampler, _ = make()
    cfg.train.steps = 2
    from lococourse.models.train import train
    s = train(cfg.train, sampler, tmp_path / "work", log=logs.append)
    assert s["steps"] == 2 and any("resumed" in m for m in logs)
    img = Path(tmp_path / "out" / "samples.png")
    assert img.exists()


def test_batched_dense_jacobian_matches_vmapped_one():
    """The recipes' dense Jacobian (method="batch", plain batched backward) against the vmapped VJPs, on a tiny
    random UNet behind the package's PMP adapter."""
    from lococourse.jacobian.operator import dense_jacobian
    from lococourse.models.adapters import UNetPMP
    from lococourse.models.train import UNetConfig, build_unet

    unet = build_unet(UNetConfig(sample_size=4, block_out_channels=(8, 16), down_block_types=("DownBlock2D",) * 2,
                                 up_block_types=("UpBlock2D",) * 2)).eval().requires_grad_(False)
    f = UNetPMP(unet, 0.301, "epsilon")
    x = torch.randn(3, 4, 4, generator=torch.Generator().manual_seed(0))
    J = dense_jacobian(f, x, chunk_size=20, method="batch")
    assert J.shape == (48, 48)
    assert torch.allclose(J, dense_jacobian(f, x), atol=1e-5)


def test_ddim_sampler_with_the_exact_pmp_lands_on_the_subspaces():
    """Oracle: DDIM driven by the exact MoLRG posterior mean (as an x₀-predictor) ends in the union of subspaces."""
    from lococourse.data import molrg_image_model

    m = molrg_image_model((3, 4, 4), (3, 5), seed=2)
    x = common.sample_images(m, 16, seed=0)  # the recipes' sampler: the package's DDIM, the exact ε-model
    assert x.shape == (16, 3, 4, 4)
    fit = common.subspace_fit(x, m)
    assert fit.min() > 0.999
    assert common.subspace_fit(torch.randn(16, 3, 4, 4), m).mean() < 0.6  # noise does not fit


def test_lr_segments_warm_restart():
    """lr_at: one segment is the old warm-up + cosine; an extension restarts it (closed form by hand)."""
    from lococourse.models.train import lr_at

    seg = [{"start": 0, "end": 100, "lr": 1.0, "warmup": 10}]
    assert lr_at(0, seg) == pytest.approx(0.1) and lr_at(9, seg) == pytest.approx(1.0)
    assert lr_at(55, seg) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_at(99, seg) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 89 / 90)))
    two = seg + [{"start": 100, "end": 200, "lr": 0.5, "warmup": 5}]
    assert lr_at(50, two) == lr_at(50, seg)
    assert lr_at(100, two) == pytest.approx(0.5 / 5) and lr_at(104, two) == pytest.approx(0.5)
    assert lr_at(199, two) == pytest.approx(0.5 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 94 / 95))))


def test_recipe_extension_is_reproducible(tmp_path):
    """A recipe with a warm restart gives the same weights whether it runs in one go or is interrupted and
    resumed at every stage boundary; extending is refused for non-schedule changes and unfinished runs."""
    from safetensors.torch import load_file

    from lococourse.data import face_sampler
    from lococourse.models.train import train
    from synthetic import faces16

    cfg = replace(_tiny(faces16.config(channels=(8, 16))), extensions=({"steps": 5, "lr": 1e-3, "warmup": 1},))
    cfg.train = replace(cfg.train, checkpoint_every=1)
    quiet = dict(recipe="test", skip_eval=True, log=lambda s: None)
    one = common.run_recipe(cfg, face_sampler(16), tmp_path / "a", tmp_path / "wa", **quiet)
    assert one["steps"] == one["steps_planned"] == one["train"]["steps"] == 5
    assert [(s["start"], s["end"]) for s in one["train_segments"]] == [(0, 3), (3, 5)]
    # the same recipe, interrupted: stage 1 alone, then run_recipe picks up stage 2
    train(cfg.train, face_sampler(16), tmp_path / "wb", log=lambda s: None)
    two = common.run_recipe(cfg, face_sampler(16), tmp_path / "b", tmp_path / "wb", **quiet)
    a, b = load_file(tmp_path / "wa" / "state.safetensors"), load_file(tmp_path / "wb" / "state.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert one["weights_sha256"] == two["weights_sha256"]
    # and the extension really trained: different weights from the 3-step run
    base = common.run_recipe(replace(cfg, extensions=()), face_sampler(16), tmp_path / "c", tmp_path / "wc", **quiet)
    assert base["weights_sha256"] != one["weights_sha256"]
    with pytest.raises(ValueError, match="batch_size"):
        train(replace(cfg.train, steps=7, batch_size=8), face_sampler(16), tmp_path / "wa", extend=True, log=lambda s: None)
    with pytest.raises(ValueError, match="steps > 5"):
        train(replace(cfg.train, steps=4), face_sampler(16), tmp_path / "wa", extend=True, log=lambda s: None)
    with pytest.raises(ValueError, match="another config"):
        train(replace(cfg.train, steps=7), face_sampler(16), tmp_path / "wa", log=lambda s: None)


def test_retraining_in_place_replaces_the_whole_folder(tmp_path):
    """--overwrite into an existing model folder: the new weights arrive with their own card (no stale sha256 that
    load_model would refuse), and nothing of the export is left beside the folder."""
    from lococourse.models.registry import load_model
    from synthetic import faces16

    def make():
        cfg = _tiny(faces16.config(channels=(8, 16)))
        from lococourse.data import face_sampler
        return cfg, face_sampler(16), {}

    out = tmp_path / "out"
    first = common.recipe_main(make, ["--out", str(out), "--work", str(tmp_path / "w1"), "--skip-eval", "--steps", "2"],
                               module="test")
    (out / "stale-note.txt").write_text("from the first export")
    second = common.recipe_main(make, ["--out", str(out), "--work", str(tmp_path / "w2"), "--skip-eval", "--steps", "3",
                                       "--overwrite"], module="test")
    assert first["weights_sha256"] != second["weights_sha256"]
    assert common.load_card(out)["weights_sha256"] == file_sha256(out / WEIGHTS) == second["weights_sha256"]
    assert load_model(str(out)).unet is not None and not (out / "stale-note.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "w1", "w2"]


def test_resample_redraws_the_samples_with_the_package_ddim(tmp_path, capsys):
    """synthetic.resample on a copy of molrg_d48: refuses without --overwrite; then samples.png holds the card's n
    samples from its seed through lococourse's DDIM (100 steps), the card's subspace fit is recomputed from those
    samples, and the weights are untouched."""
    import shutil

    import numpy as np
    from PIL import Image

    from lococourse.data.molrg_images import load_molrg
    from lococourse.models.registry import load_model
    from synthetic import resample

    folder = tmp_path / "molrg_d48"
    shutil.copytree(ASSETS / "molrg_d48", folder)
    before = (folder / "samples.png").read_bytes()
    with pytest.raises(SystemExit) as e:
        resample.main([str(folder)])
    assert e.value.code == 2 and "--overwrite" in capsys.readouterr().err
    assert (folder / "samples.png").read_bytes() == before
    assert resample.main([str(folder), "--overwrite"]) == 0
    card = common.load_card(folder)
    assert card["samples"]["steps"] == 100 and "lococourse.models.ddim" in card["samples"]["sampler"]
    assert file_sha256(folder / WEIGHTS) == card["weights_sha256"]
    x = common.sample_images(load_model(str(folder)), card["samples"]["n"], seed=card["samples"]["seed"])
    fit = common.subspace_fit(x, load_molrg(folder / card["data"]["bases_file"]))
    assert card["samples"]["subspace_fit_mean"] == pytest.approx(float(fit.mean()), rel=1e-5)
    img = np.asarray(Image.open(folder / "samples.png"))
    assert img.shape[0] > 0 and (folder / "README.md").read_text().startswith("# Course model `molrg_d48`")
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in (ASSETS / "molrg_d48").iterdir())
