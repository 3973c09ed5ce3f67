"""`lococourse edit --band B --nullspace sampler --projection ridge`: issue 13's method options on the command line, recorded in the
saved direction; bad values refused before any model work (exit 2, the value named)."""
import json

import pytest

from lococourse.cli.main import main


@pytest.mark.parametrize("extra, phrase", [
    (["--band", "-1"], "--band -1 is out of range"),
    (["--band", "40"], "covers the whole 32×32 image"),
    (["--nullspace", "sampler", "--sampler-steps", "0"], "--sampler-steps 0 is out of range"),
    (["--sampler-steps", "0"], "--sampler-steps 0 applies only with --nullspace sampler"),
    (["--sampler-steps", "6"], "--sampler-steps 6 applies only with --nullspace sampler"),
    (["--projection", "ridge", "--ridge", "0"], "--ridge 0.0 is out of range"),
    (["--projection", "ridge", "--ridge", "-1"], "--ridge -1.0 is out of range"),
    (["--projection", "ridge", "--ridge", "nan"], "--ridge nan is out of range"),
    (["--ridge", "0.01"], "--ridge 0.01 applies only with --projection ridge"),
    (["--projection", "ridge", "--refine", "-1"], "--refine -1 is out of range"),
    (["--refine", "1"], "--refine 1 applies only with --projection ridge"),
    (["--keep-holes", "1"], "--keep-holes 1 applies only with a guard band (--band > 0)"),
    (["--band", "2", "--keep-holes", "-1"], "--keep-holes -1 is out of range"),
    (["--select", "--projection", "ridge"], "--select tries step 7's projection, the ridge"),
    (["--select", "--projection", "ridge", "--refine", "1"], "drop --projection ridge --refine 1"),
])
def test_bad_options_are_refused_before_any_model_work(tmp_path, capsys, extra, phrase):
    out = tmp_path / "e.png"
    rc = main(["edit", "--model", "faces32", "--seed", "3", "--mask", "eyes", "--strength", "2", "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert rc == 2 and phrase in err and "Traceback" not in err and not list(tmp_path.iterdir())


def test_band_and_sampler_nullspace_are_used_and_recorded(tmp_path, capsys):
    out = tmp_path / "e.png"
    rc = main(["edit", "--model", "faces16", "--seed", "3", "--mask", "eyes", "--t", "0.3", "--strength", "1",
               "--band", "1", "--nullspace", "sampler", "--sampler-steps", "3", "--r", "2", "--r-null", "2",
               "--max-iter", "3", "--out", str(out), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["extra"]["band"] == 1 and meta["extra"]["nullspace"] == "sampler:3"
    assert out.exists() and out.with_suffix(".safetensors").exists()


def _sampler_ridge_edit(tmp_path, capsys, *extra) -> dict:
    """A faces16 eyes edit with --band 1 --nullspace sampler --projection ridge and ``extra``; its saved metadata."""
    out = tmp_path / "e.png"
    rc = main(["edit", "--model", "faces16", "--seed", "3", "--mask", "eyes", "--t", "0.3", "--strength", "1",
               "--band", "1", "--nullspace", "sampler", "--sampler-steps", "3", "--projection", "ridge", *extra,
               "--r", "2", "--max-iter", "3", "--out", str(out), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    return json.loads(out.with_suffix(".json").read_text())


def test_ridge_projection_is_used_and_recorded(tmp_path, capsys):
    meta = _sampler_ridge_edit(tmp_path, capsys, "--ridge", "0.05")
    assert meta["extra"]["projection"] == "ridge" and meta["extra"]["ridge"] == 0.05 and meta["r_null"] == 0
    assert meta["extra"]["ridge_mu"] > 0 and meta["extra"]["nullspace"] == "sampler:3"
    assert "refine" not in meta["extra"]


def test_refine_is_used_and_recorded(tmp_path, capsys):
    meta = _sampler_ridge_edit(tmp_path, capsys, "--refine", "1")
    assert meta["extra"]["refine"] == 1 and meta["extra"]["projection"] == "ridge"


def test_select_keeps_the_most_local_of_three_and_records_the_choice(tmp_path, capsys):
    out = tmp_path / "e.png"
    rc = main(["edit", "--model", "faces16", "--seed", "3", "--mask", "eyes", "--t", "0.3", "--strength", "1",
               "--band", "1", "--keep-holes", "1", "--nullspace", "sampler", "--sampler-steps", "3", "--select", "--r", "2",
               "--r-null", "2",
               "--max-iter", "3", "--out", str(out), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    meta = json.loads(out.with_suffix(".json").read_text())
    sel = meta["extra"]["selected"]
    assert sel["labels"] == ["projection", "ridge", "ridge + refine 1"] and sel["strengths"] == [[1.0]] * 3
    k = sel["labels"].index(sel["chosen"])
    assert sel["leakages"][k] == min(sel["leakages"])
    # the saved direction is the chosen way's: its own options are recorded with it
    expect = [("subspace", None), ("ridge", None), ("ridge", 1)][k]
    assert (meta["extra"]["projection"], meta["extra"].get("refine")) == expect
    assert meta["extra"]["band"] == 1 and meta["extra"]["nullspace"] == "sampler:3"
    assert meta["extra"]["band_spare"] is True and meta["extra"]["spare_rim"] == 1


# ---------------------------------------------------------------------------------------- --strength auto
@pytest.mark.parametrize("extra, phrase", [
    (["--target", "2"], "--target 2 applies only with --strength auto"),
    (["--strength", "auto", "--target", "0"], "--target 0 is out of range"),
    (["--strength", "auto", "--target", "nan"], "--target nan is out of range"),
    (["--strength", "auto", "--mask", "0,0,8,8"], "--strength auto reads the edited part's factors off the image"),
    (["--strength", "fast"], "'fast' is not a number"),
])
def test_bad_auto_strength_is_refused_before_any_model_work(tmp_path, capsys, monkeypatch, extra, phrase):
    import lococourse.cli.edit as cli_edit

    monkeypatch.setattr(cli_edit, "load_model", lambda *a, **k: pytest.fail("no model before the checks"))
    out = tmp_path / "e.png"
    args = ["edit", "--model", "faces32", "--seed", "3", "--mask", "eyes", "--strength", "2", "--out", str(out)]
    for flag in ("--strength", "--mask"):
        if flag in extra:
            i = args.index(flag)
            del args[i:i + 2]
    rc = main([*args, *extra])
    err = capsys.readouterr().err
    assert rc == 2 and phrase in err and "Traceback" not in err and not list(tmp_path.iterdir())


def test_auto_strength_moves_the_main_factor_by_its_target_and_records_the_sweep(tmp_path, capsys):
    """--strength auto on faces16: the recorded sweep is the part's response in units of τ of edits sampled
    independently here (invert, x_t + λ v at each grid λ, DDIM, the estimator), the chosen λ is the linear
    interpolation of that response at the target, and the written edit is DDIM(x_t + λ v, 0) at that λ."""
    import math

    import numpy as np

    from lococourse.cli.common import read_png
    from lococourse.data.faces import FACTOR_NAMES, sample_faces
    from lococourse.editing.direction import Direction
    from lococourse.editing.loco import apply_directions, invert
    from lococourse.eval.decisions import thresholds_for
    from lococourse.eval.factors import factor_changes
    from lococourse.models.registry import load_model

    out = tmp_path / "e.png"
    rc = main(["edit", "--model", "faces16", "--seed", "3", "--mask", "eyes", "--t", "0.3", "--strength", "auto",
               "--target", "1.5", "--r", "2", "--r-null", "2", "--max-iter", "3", "--out", str(out), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    meta = json.loads(out.with_suffix(".json").read_text())
    ch = meta["extra"]["strength_choice"]
    assert ch["unit"] == "tau" and ch["target"] == 1.5 and meta["extra"]["strength"] == ch["strength"]
    model = load_model("faces16")
    d = Direction.load(out.with_suffix(".safetensors"))
    x_t, t = invert(model, sample_faces(1, 3, size=16).images[0], meta["t"])
    imgs = apply_directions(model, x_t, t, direction=d, strengths=[0.0, *ch["grid"]])
    dth = factor_changes(imgs[:1].expand_as(imgs[1:]), imgs[1:]).numpy()
    tau = thresholds_for(16).tau.numpy()
    idx = [FACTOR_NAMES.index(n) for n in ("eye_size", "gaze")]
    resp = (np.abs(dth[:, idx]) / tau[idx]).max(1)
    assert np.allclose(ch["response"], resp, rtol=1e-4, atol=1e-4)
    lam = ch["strength"]
    if ch["reached"]:
        j = next(i for i, r in enumerate(resp) if r >= 1.5)
        l0, r0 = (0.0, 0.0) if j == 0 else (ch["grid"][j - 1], max(resp[:j]))
        assert lam == pytest.approx(l0 + (1.5 - r0) * (ch["grid"][j] - l0) / (resp[j] - r0), rel=1e-3)
    else:
        assert lam == ch["grid"][-1]
    edit = apply_directions(model, x_t, t, direction=d, strengths=[lam])[0]
    png = read_png(str(out), (3, 16, 16))
    assert math.isclose(float((png - edit.clamp(-1, 1)).abs().max()), 0.0, abs_tol=2 / 255 + 1e-6)
