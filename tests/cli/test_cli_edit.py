"""``lococourse edit`` and ``lococourse transfer`` on tiny model folders built here (seeded random UNets)."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from lococourse.cli.common import read_png
from lococourse.cli.edit import FACES_GENERATOR
from lococourse.cli.main import main
from lococourse.data.faces import sample_faces
from lococourse.editing.direction import Direction


def _tiny_model(path, size=16, seed=0, faces=True):
    """A seeded random x₀-prediction UNet2DModel saved as a diffusers folder (safetensors) with a card."""
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    unet = UNet2DModel(sample_size=size, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                       layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4, add_attention=False)
    unet.save_pretrained(path, safe_serialization=True)
    (path / "scheduler_config.json").write_text(json.dumps({"prediction_type": "sample"}))
    data = {"generator": FACES_GENERATOR, "size": size} if faces else {"generator": "noise"}
    (path / "card.json").write_text(json.dumps({"name": path.name, "prediction_type": "sample", "data": data,
                                                "shape": [3, size, size], "resolution": size}))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {"a": _tiny_model(root / "tiny_a"), "b": _tiny_model(root / "tiny_b", seed=1),
            "small": _tiny_model(root / "tiny_8", size=8)}


FAST = ["--max-iter", "8", "--quiet"]


@pytest.fixture(scope="module")
def edited(models, tmp_path_factory):
    out = tmp_path_factory.mktemp("edit") / "e.png"
    rc = main(["edit", "--model", str(models["a"]), "--seed", "3", "--mask", "hair", "--t", "0.6", "--index", "1",
               "--strength", "4", "--r", "3", "--r-null", "2", "--out", str(out), *FAST])
    assert rc == 0
    return out


def test_edit_writes_image_and_direction(edited, models, capsys):
    assert edited.exists() and edited.with_suffix(".safetensors").exists() and edited.with_suffix(".json").exists()
    img = np.asarray(Image.open(edited))
    assert img.shape == (16, 16, 3) and img.dtype == np.uint8
    meta = json.loads(edited.with_suffix(".json").read_text())
    assert meta["model"] == "tiny_a" and meta["index"] == 1 and meta["r"] == 3 and meta["r_null"] == 2
    assert meta["t"] == pytest.approx(0.601) and meta["shape"] == [3, 16, 16]
    assert meta["extra"]["source"] == "faces seed 3" and meta["extra"]["strength"] == 4.0
    assert meta["extra"]["mask_part"] == "hair"
    # the direction's "seed" is the power method's; the image's --seed is recorded apart from it
    assert meta["extra"]["image_seed"] == 3 and meta["extra"]["power_method_seed"] == meta["seed"]
    d = Direction.load(edited.with_suffix(".safetensors"))
    assert d.v.shape == (3, 16, 16) and d.v.norm().item() == pytest.approx(1.0, abs=1e-5)
    assert torch.equal(d.mask, sample_faces(1, 3, size=16).masks["hair"][0])  # the named mask is the face's part


def test_saved_direction_reloads_and_transfers(edited, models, tmp_path, capsys):
    out = tmp_path / "tr.png"
    rc = main(["transfer", "--direction", str(edited.with_suffix(".safetensors")), "--seed", "5", "--strength", "4",
               "--out", str(out), "--quiet"])
    assert rc == 0 and out.exists()
    text = capsys.readouterr().out
    assert "leakage" in text and "the hair of this image" in text
    # applying it by hand gives the same image: x₀' = DDIM(DDIM-Inv(x₀, t) + λ v, 0)
    from lococourse.editing.loco import apply_directions, invert
    from lococourse.models.registry import load_model

    model = load_model(str(models["a"]))
    d = Direction.load(edited.with_suffix(".safetensors"))
    x_t, t = invert(model, sample_faces(1, 5, size=16).images, d.t)
    ref = apply_directions(model, x_t[0], t, direction=d, strengths=[4.0])[0]
    got = read_png(str(out), (3, 16, 16))
    assert (got - ref.clamp(-1, 1)).abs().max() <= 1 / 127.5 + 1e-6  # PNG quantisation only
    # an --image source of the right size also transfers
    out2 = tmp_path / "tr2.png"
    assert main(["transfer", "--direction", str(edited.with_suffix(".safetensors")), "--image", str(out),
                 "--strength", "-4", "--out", str(out2), "--quiet"]) == 0


def test_edit_from_image_with_rectangle_and_no_projection(models, edited, tmp_path):
    out = tmp_path / "r.png"
    rc = main(["edit", "--model", str(models["a"]), "--image", str(edited), "--mask", "4,4,12,9", "--t", "0.5",
               "--strength", "-3", "--r", "2", "--r-null", "0", "--out", str(out), *FAST])
    assert rc == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["r_null"] == 0 and meta["extra"]["source"] == str(edited) and meta["extra"]["mask_part"] is None
    assert meta["extra"]["image_seed"] is None  # --image, not --seed
    assert Direction.load(out).mask.sum() == 8 * 5


def _err(capsys, argv):
    rc = main(argv)
    return rc, capsys.readouterr().err


def test_clear_errors(models, edited, tmp_path, capsys):
    a = str(models["a"])
    base = ["edit", "--model", a, "--seed", "1", "--t", "0.6", "--strength", "3", "--out", str(tmp_path / "x.png"), *FAST]
    # a mask image of the wrong size
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(tmp_path / "m8.png")
    rc, err = _err(capsys, base + ["--mask", str(tmp_path / "m8.png")])
    assert rc == 2 and "spatial size" in err and "(16, 16)" in err
    # an empty mask
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "m0.png")
    rc, err = _err(capsys, base + ["--mask", str(tmp_path / "m0.png")])
    assert rc == 2 and "empty" in err
    rc, err = _err(capsys, base + ["--mask", "nose"])
    assert rc == 2 and "neither a named mask" in err and "eyes" in err
    # r' ≥ d, k ≥ r
    rc, err = _err(capsys, base + ["--mask", "hair", "--r-null", "768"])
    assert rc == 2 and "r'" in err and "d = 768" in err
    rc, err = _err(capsys, base + ["--mask", "hair", "--index", "5"])
    assert rc == 2 and "--index" in err
    # λ not finite
    for bad in ("nan", "inf"):
        rc, err = _err(capsys, ["edit", "--model", a, "--seed", "1", "--mask", "hair", "--strength", bad,
                                "--out", str(tmp_path / "x.png"), *FAST])
        assert rc == 2 and "finite" in err
    # an image of another size
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "big.png")
    rc, err = _err(capsys, ["edit", "--model", a, "--image", str(tmp_path / "big.png"), "--mask", "hair",
                            "--strength", "1", "--out", str(tmp_path / "y.png"), *FAST])
    assert rc == 2 and "20×20" in err and "16×16" in err
    rc, err = _err(capsys, ["edit", "--model", a, "--seed", "1", "--mask", "hair", "--strength", "1",
                            "--out", str(tmp_path / "x.jpg"), *FAST])
    assert rc == 2 and ".png" in err
    # a direction used on another model, or another image size
    dfile = str(edited.with_suffix(".safetensors"))
    rc, err = _err(capsys, ["transfer", "--direction", dfile, "--model", str(models["b"]), "--seed", "1",
                            "--strength", "1", "--out", str(tmp_path / "z.png"), "--quiet"])
    assert rc == 2 and "found on model 'tiny_a'" in err
    rc, err = _err(capsys, ["transfer", "--direction", dfile, "--model", str(models["small"]), "--seed", "1",
                            "--strength", "1", "--out", str(tmp_path / "z.png"), "--quiet"])
    assert rc == 2 and "shape" in err and "(3, 16, 16)" in err
    rc, err = _err(capsys, ["transfer", "--direction", str(tmp_path / "missing.safetensors"), "--seed", "1",
                            "--strength", "1", "--out", str(tmp_path / "z.png")])
    assert rc == 2 and "no direction file" in err
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "z.png").exists()


def test_non_faces_model_has_no_named_masks(tmp_path, capsys):
    m = _tiny_model(tmp_path / "plain", faces=False)
    rc, err = _err(capsys, ["edit", "--model", str(m), "--seed", "0", "--mask", "eyes", "--strength", "1",
                            "--out", str(tmp_path / "p.png"), *FAST])
    assert rc == 2 and "has no parts" in err and "'eyes'" in err
    assert main(["edit", "--model", str(m), "--seed", "0", "--mask", "0,0,8,8", "--strength", "1", "--r", "2",
                 "--r-null", "1", "--out", str(tmp_path / "p.png"), *FAST]) == 0


@pytest.mark.parametrize("part", ["eyes", "hair"])
def test_cli_direction_transfers_with_the_same_effect_on_the_same_part(part, tmp_path):
    """Issue #4's must-show on the shipped faces32: a direction saved by ``lococourse edit`` (face 3), reloaded
    by ``lococourse transfer`` (face 4), changes the same factors of the same part in the same directions.
    Oracle: the factor estimator (analysis by synthesis through the renderer), each edit against its own
    λ = 0 reconstruction DDIM(DDIM-Inv(x₀, t), 0) computed here."""
    from lococourse.data.faces import FACTOR_NAMES
    from lococourse.editing.loco import apply_directions, invert
    from lococourse.eval.decisions import changed, thresholds_for
    from lococourse.eval.factors import factor_changes, factors_of_part
    from lococourse.models.registry import load_model

    src, dst = tmp_path / "edit.png", tmp_path / "transfer.png"
    assert main(["edit", "--model", "faces32", "--seed", "3", "--mask", part, "--t", "0.6", "--strength", "2",
                 "--out", str(src), "--quiet"]) == 0
    assert main(["transfer", "--direction", str(src.with_suffix(".safetensors")), "--seed", "4", "--strength", "2",
                 "--out", str(dst), "--quiet"]) == 0
    model = load_model("faces32")
    d = Direction.load(src.with_suffix(".safetensors"))
    recon = []
    for seed in (3, 4):
        x_t, t = invert(model, sample_faces(1, seed, size=32).images, d.t)
        recon.append(apply_directions(model, x_t[0], t, direction=d, strengths=[0.0])[0])
    edited = [read_png(str(p), (3, 32, 32)) for p in (src, dst)]
    ch = factor_changes(torch.stack(recon).clamp(-1, 1), torch.stack(edited))  # (2, 9)
    tau = thresholds_for(32)
    idx = [FACTOR_NAMES.index(n) for n in factors_of_part(part)]
    moved = changed(ch, tau)[:, idx]  # (2, factors of the part)
    assert moved[0].any(), f"the source edit changed no {part} factor: {ch[0].tolist()}"
    assert torch.equal(moved[0], moved[1]), f"source {ch[0].tolist()} vs transfer {ch[1].tolist()}"
    signs = torch.sign(ch[:, idx])[:, moved[0]]
    assert torch.equal(signs[0], signs[1])


# ---------------------------------------------------------------------------------------- nothing lost
def _digests(*roots) -> dict:
    """sha256 of every file under the given folders/files (an input that changes shows up here)."""
    import hashlib
    from pathlib import Path

    out = {}
    for root in roots:
        root = Path(root)
        for f in ([root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())):
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def _copy_model(models, tmp_path, name="copied"):
    import shutil

    dst = tmp_path / name
    shutil.copytree(models["a"], dst)
    return dst


def test_out_inside_a_model_folder_never_replaces_its_weights(models, tmp_path, capsys):
    """The issue's data-loss case: --out <model>/diffusion_pytorch_model.png would have written the direction over
    the model's diffusion_pytorch_model.safetensors.  Refused before loading, with or without --overwrite."""
    m = _copy_model(models, tmp_path)
    before = _digests(m)
    for extra in ([], ["--overwrite"]):
        rc, err = _err(capsys, ["edit", "--model", str(m), "--seed", "3", "--mask", "hair", "--strength", "2",
                                "--out", str(m / "diffusion_pytorch_model.png"), *FAST, *extra])
        assert rc == 2 and "inside the model folder" in err and str(m) in err and "Traceback" not in err
    # a sub-folder of a model folder, and the package's own model store, are refused too
    rc, err = _err(capsys, ["edit", "--model", str(m), "--seed", "3", "--mask", "hair", "--strength", "2",
                            "--out", str(m / "sub" / "x.png"), *FAST])
    assert rc == 2 and "inside the model folder" in err
    from lococourse.models.registry import ASSETS

    rc, err = _err(capsys, ["edit", "--model", str(m), "--seed", "3", "--mask", "hair", "--strength", "2",
                            "--out", str(ASSETS / "faces16" / "mine.png"), *FAST])
    assert rc == 2 and "inside the model folder" in err
    assert _digests(m) == before and not (m / "sub").exists() and not (ASSETS / "faces16" / "mine.png").exists()


def test_out_equal_to_an_input_is_refused(models, edited, tmp_path, capsys):
    import os
    import shutil

    img = tmp_path / "face.png"
    shutil.copyfile(edited, img)
    os.link(img, tmp_path / "hard.png")
    os.symlink(img, tmp_path / "soft.png")
    mask = tmp_path / "m.png"
    Image.fromarray(np.pad(np.full((4, 4), 255, np.uint8), 6)).save(mask)
    before = _digests(tmp_path)
    base = ["edit", "--model", str(models["a"]), "--image", str(img), "--strength", "2", *FAST]
    for out, mask_arg, what in [(img, "4,4,12,12", "--image"), (tmp_path / "hard.png", "4,4,12,12", "--image"),
                                (tmp_path / "soft.png", "4,4,12,12", "--image"), (mask, str(mask), "--mask")]:
        for extra in ([], ["--overwrite"]):
            rc, err = _err(capsys, [*base, "--mask", mask_arg, "--out", str(out), *extra])
            assert rc == 2 and f"the input {what}" in err and "never overwrite an input" in err, err
    # transfer: --out equal to its --image
    rc, err = _err(capsys, ["transfer", "--direction", str(edited.with_suffix(".safetensors")), "--image", str(img),
                            "--strength", "1", "--out", str(img), "--quiet", "--overwrite"])
    assert rc == 2 and "the input --image" in err
    assert _digests(tmp_path) == before


def test_earlier_outputs_are_kept_unless_overwrite(models, tmp_path, capsys):
    out = tmp_path / "x.png"
    argv = ["edit", "--model", str(models["a"]), "--seed", "3", "--mask", "hair", "--strength", "2", "--r", "2",
            "--r-null", "1", "--out", str(out), *FAST]
    assert main(argv) == 0
    first = _digests(tmp_path)
    assert set(first) == {str(out), str(out.with_suffix(".safetensors")), str(out.with_suffix(".json"))}
    rc, err = _err(capsys, argv[:-len(FAST)] + ["--strength", "-2", *FAST])
    assert rc == 2 and "already exists" in err and "--overwrite" in err
    assert _digests(tmp_path) == first
    # any one of the three existing is enough to refuse
    out.unlink()
    out.with_suffix(".safetensors").unlink()
    rc, err = _err(capsys, argv)
    assert rc == 2 and "x.json" in err and "already exists" in err
    assert not out.exists()
    # --overwrite replaces all three together
    assert main(argv[:-len(FAST)] + ["--strength", "-2", "--overwrite", *FAST]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["extra"]["strength"] == -2.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json", "x.png", "x.safetensors"]  # no temporary left


def test_an_interrupt_leaves_no_output(models, tmp_path, capsys, monkeypatch):
    """Ctrl-C during the computation, or between writing the files: exit 130, and not one output (nor a temporary)."""
    import lococourse.cli.edit as edit_mod

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    argv = ["edit", "--model", str(models["a"]), "--seed", "3", "--mask", "hair", "--strength", "2", "--r", "2",
            "--r-null", "1", "--out", str(tmp_path / "sub" / "x.png"), *FAST]
    monkeypatch.setattr(edit_mod, "loco_edit", interrupted)
    rc, err = _err(capsys, argv)
    assert rc == 130 and "interrupted" in err and list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    monkeypatch.setattr(Direction, "write_json", lambda self, path: interrupted())  # after the PNG and .safetensors
    rc, err = _err(capsys, argv)
    assert rc == 130 and list(tmp_path.iterdir()) == []


def test_an_interrupt_while_renaming_still_writes_every_output(tmp_path, monkeypatch, capsys):
    """SIGINT arriving between two renames is held until all outputs are in place: all of them, not some."""
    import os
    import signal

    import lococourse.cli.common as common

    outs = common.Outputs([("--out", tmp_path / "a.png"), ("direction", tmp_path / "a.safetensors")])
    for p in outs.paths:
        outs.stage(p, lambda tmp, p=p: tmp.write_text(p.name))
    real = os.replace
    calls = []

    def replace_and_interrupt(src, dst):
        calls.append(dst)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # delivered now, to the handler commit() installed
        real(src, dst)

    monkeypatch.setattr(common.os, "replace", replace_and_interrupt)
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN when pytest runs in the background
    outs.commit()
    assert (tmp_path / "a.png").read_text() == "a.png" and (tmp_path / "a.safetensors").read_text() == "a.safetensors"
    assert "all of them were written" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is before  # the handler in place before commit() is back


def test_real_sigint_leaves_all_outputs_or_none(models, tmp_path):
    """The installed command, interrupted by a real SIGINT while it works: exit 130 with no output, or (if it
    had already finished) exit 0 with all three."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "x.png"
    cmd = [sys.executable, "-m", "lococourse.cli", "edit", "--model", str(models["a"]), "--seed", "3", "--mask", "hair",
           "--strength", "2", "--max-iter", "2000", "--tol", "1e-9", "--out", str(out)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "DDIM" in line or "Jacobian" in line or "power" in line:  # the computation has started
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    rc = proc.wait(timeout=120)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert (rc, files) in [(130, []), (0, ["x.json", "x.png", "x.safetensors"])], (rc, files, rest)
    assert "Traceback" not in rest


def test_unwritable_or_impossible_out_fails_before_loading(models, tmp_path, capsys):
    (tmp_path / "file.txt").write_text("not a folder")
    base = ["edit", "--model", str(models["a"]), "--seed", "3", "--mask", "hair", "--strength", "2", *FAST]
    rc, err = _err(capsys, [*base, "--out", str(tmp_path / "file.txt" / "x.png")])
    assert rc == 2 and "is a file, not a folder" in err
    rc, err = _err(capsys, [*base, "--out", "/proc/lococourse-x.png"])  # a read-only file system, even for root
    assert rc == 2 and "not writable" in err and "/proc" in err
    rc, err = _err(capsys, [*base, "--out", str(tmp_path)])
    assert rc == 2 and ".png" in err


def test_a_shared_direction_travels_by_its_registered_name(tmp_path, capsys):
    """A direction records the model's registered name and where it was found; moved to another machine (the folder
    it names does not exist there), transfer loads the model by name.  Files are written 0644."""
    import stat

    src = tmp_path / "e.png"
    assert main(["edit", "--model", "faces16", "--seed", "3", "--mask", "eyes", "--strength", "2", "--max-iter", "4",
                 "--out", str(src), "--quiet"]) == 0
    for f in (src, src.with_suffix(".safetensors"), src.with_suffix(".json")):
        assert stat.S_IMODE(f.stat().st_mode) == 0o644
    d = Direction.load(src.with_suffix(".safetensors"))
    from lococourse.models.registry import get_spec

    assert d.model == "faces16" and d.found_at == get_spec("faces16").source
    d.found_at = "/home/someone-else/lococourse/assets/models/faces16"  # as written on another machine
    shared = d.save(tmp_path / "shared" / "d")
    out = tmp_path / "t.png"
    assert main(["transfer", "--direction", str(shared), "--seed", "4", "--strength", "2", "--out", str(out),
                 "--quiet"]) == 0
    assert out.exists()


def test_a_non_finite_edit_writes_nothing(models, tmp_path, capsys, monkeypatch):
    import lococourse.cli.edit as edit_mod

    real = edit_mod.loco_edit

    def blown_up(*a, **k):
        res = real(*a, **k)
        res.edited[0].fill_(float("nan"))
        return res

    monkeypatch.setattr(edit_mod, "loco_edit", blown_up)
    rc, err = _err(capsys, ["edit", "--model", str(models["a"]), "--seed", "3", "--mask", "hair", "--strength", "2",
                            "--r", "2", "--r-null", "1", "--out", str(tmp_path / "x.png"), *FAST])
    assert rc == 2 and "NaN or infinite" in err and "nothing was written" in err
    assert list(tmp_path.iterdir()) == []
