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
