"""`lococourse rank-curve` and `lococourse models` end to end on a tiny model trained here, with the numbers
recomputed independently: DDIM trajectories by diffusers' DDIMScheduler, the PMP from the raw UNet call and
diffusers' noise table, the numerical rank (eq. 10) by hand from a numpy SVD, eq. 4 from the dense Jacobian."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math

import numpy as np
import pytest
import torch

from lococourse.cli import main as cli
from lococourse.jacobian.operator import dense_jacobian
from lococourse.models.train import TrainConfig, UNetConfig, train

# vmap over the tiny UNet's mid-block attention backward (the oracle calls the raw UNet) is slow, not wrong
pytestmark = pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")

ETA = 0.99
TS = (0.3, 0.7)
LAMBDAS = (0.0, 10.0, 20.0)
N, SEED = 2, 3


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A 1×8×8 ε-prediction UNet trained for 3 steps on seeded smooth blobs: a local diffusers folder."""
    def sampler(batch: int, g: torch.Generator) -> torch.Tensor:
        c = torch.rand(batch, 2, 1, 1, generator=g) * 8
        yy, xx = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
        return torch.exp(-((yy - c[:, :1]) ** 2 + (xx - c[:, 1:]) ** 2) / 6) * 2 - 1  # (B, 1, 8, 8)

    unet = UNetConfig(sample_size=8, in_channels=1, block_out_channels=(8, 16), down_block_types=("DownBlock2D",) * 2,
                      up_block_types=("UpBlock2D",) * 2, norm_num_groups=4)
    cfg = TrainConfig(unet=unet, prediction_type="epsilon", steps=3, batch_size=8, warmup=1, checkpoint_every=3, seed=0)
    out = tmp_path_factory.mktemp("tiny_train")
    train(cfg, sampler, out, log=lambda s: None)
    return out / "model"


@pytest.fixture(scope="module")
def cli_run(tiny_model, tmp_path_factory):
    """(output stem, what the command printed)."""
    stem = tmp_path_factory.mktemp("rank_curve") / "out" / "rc"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli.main(["rank-curve", "--model", str(tiny_model), "--ts", ",".join(map(str, TS)), "--n", str(N),
                       "--seed", str(SEED), "--linearity-t", "0.7", "--lambdas", ",".join(map(str, LAMBDAS)),
                       "--out", str(stem), "--no-progress"])
    assert rc == 0
    return stem, buf.getvalue()


def _rank_by_hand(S: np.ndarray, eta: float = ETA) -> int:
    """Eq. 10: the smallest r with Σ_{i≤r} σ_i² / Σ σ_i² > η²."""
    s2 = np.sort(S.astype(float) ** 2)[::-1]
    return int(np.argmax(np.cumsum(s2) / s2.sum() > eta ** 2)) + 1


@pytest.fixture(scope="module")
def oracle(tiny_model):
    """The numbers of both panels, recomputed without lococourse's DDIM, schedule, adapters or figure2 code."""
    from diffusers import DDIMScheduler, UNet2DModel

    unet = UNet2DModel.from_pretrained(tiny_model, use_safetensors=True).eval().requires_grad_(False)
    sched = DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                          clip_sample=False, set_alpha_to_one=True, steps_offset=0, timestep_spacing="leading")
    sched.set_timesteps(100)
    x = torch.randn((N, 1, 8, 8), generator=torch.Generator().manual_seed(SEED))
    levels = {}  # DDIM level time (τ + 1)/T → x at that level
    with torch.no_grad():
        for tau in sched.timesteps.tolist():
            levels[(tau + 1) / 1000] = x
            x = sched.step(unet(x, tau).sample, tau, x, eta=0.0).prev_sample
    ab = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))

    def snap(t):  # the DDIM level nearest to t: its time, where the PMP is evaluated too
        return min(levels, key=lambda s: abs(s - t))

    def point(t):  # the trajectory at the level nearest to t
        return levels[snap(t)]

    def pmp(t):  # eq. 2 at timestep k = round(t·T) − 1, on a batch (or one image, or a flat vector)
        k = round(t * 1000) - 1
        a = float(ab[k])

        def f(z):
            zb = z.reshape(-1, 1, 8, 8)
            return (zb - math.sqrt(1 - a) * unet(zb, k).sample) / math.sqrt(a)
        return f

    ranks = []
    for t in TS:
        row = []
        for xi in point(t):
            J = torch.autograd.functional.jacobian(lambda z: pmp(snap(t))(z).reshape(-1), xi.reshape(-1)).double().numpy()
            J_lib = dense_jacobian(pmp(snap(t)), xi).double().reshape(64, 64).numpy()
            np.testing.assert_allclose(J_lib, J, atol=1e-5 * np.abs(J).max())
            row.append(_rank_by_hand(np.linalg.svd(J_lib, compute_uv=False)))
        ranks.append(row)
    # panel (b): eq. 4 with the dense Jacobian, along the seeded directions linearity_curve draws
    X = point(0.7)
    dirs = torch.randn(X.shape, generator=torch.Generator().manual_seed(SEED), dtype=torch.float64).to(X.dtype)
    nr, cos = [], []
    for xi, dx in zip(X, dirs):
        f = pmp(snap(0.7))
        J = torch.autograd.functional.jacobian(lambda z: f(z).reshape(-1), xi.reshape(-1)).double().numpy()
        u = (dx / dx.norm()).reshape(-1).double().numpy()
        with torch.no_grad():
            f0 = f(xi).reshape(-1).double().numpy()
            fl = np.stack([f(xi + lam * (dx / dx.norm())).reshape(-1).double().numpy() for lam in LAMBDAS])
        lin = f0 + np.outer(LAMBDAS, J @ u)
        nr.append(np.linalg.norm(fl, axis=1) / np.linalg.norm(lin, axis=1))
        cos.append(np.sum(fl * lin, axis=1) / (np.linalg.norm(fl, axis=1) * np.linalg.norm(lin, axis=1)))
    return {"ranks": np.array(ranks, dtype=float), "norm_ratio": np.mean(nr, 0), "cosine": np.mean(cos, 0)}


def test_rank_curve_writes_png_json_csv(cli_run):
    cli_run, out = cli_run
    for ext in (".png", ".json", ".csv"):
        assert cli_run.with_suffix(ext).exists()
    assert cli_run.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = json.loads(cli_run.with_suffix(".json").read_text())
    assert res["d"] == 64 and res["n_points"] == N and res["seed"] == SEED and res["model"] == "model"
    assert res["rank_curve"]["t"] == pytest.approx(list(TS), abs=1.5e-3) and res["linearity"]["lambda"] == list(LAMBDAS)
    assert "min rank ratio" in out and str(cli_run.with_suffix(".png")) in out


def test_rank_curve_numbers_match_an_independent_computation(cli_run, oracle):
    cli_run, _ = cli_run
    res = json.loads(cli_run.with_suffix(".json").read_text())
    rc = res["rank_curve"]
    np.testing.assert_allclose(rc["rank_mean"], oracle["ranks"].mean(1), atol=1e-9)
    np.testing.assert_allclose(rc["rank_ratio"], oracle["ranks"].mean(1) / 64, atol=1e-6)
    i = int(np.argmin(oracle["ranks"].mean(1)))
    assert res["min_rank_ratio"] == pytest.approx(oracle["ranks"].mean(1)[i] / 64, abs=1e-6) and res["t_at_min"] == pytest.approx(TS[i], abs=1.5e-3)
    lin = res["linearity"]
    assert lin["t"] == pytest.approx(0.7, abs=1.5e-3)
    np.testing.assert_allclose(lin["norm_ratio"], oracle["norm_ratio"], atol=1e-4)
    np.testing.assert_allclose(lin["cosine"], oracle["cosine"], atol=1e-4)
    assert lin["norm_ratio"][0] == pytest.approx(1.0, abs=1e-6) and lin["cosine"][0] == pytest.approx(1.0, abs=1e-6)


def test_rank_curve_csv_holds_the_json_numbers(cli_run):
    cli_run, _ = cli_run
    res = json.loads(cli_run.with_suffix(".json").read_text())
    with open(cli_run.with_suffix(".csv"), newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["panel", "x", "rank_ratio_or_norm_ratio", "cosine"]
    a = [r for r in rows[1:] if r[0] == "a"]
    b = [r for r in rows[1:] if r[0] == "b"]
    assert [float(r[1]) for r in a] == res["rank_curve"]["t"]
    assert [float(r[2]) for r in a] == res["rank_curve"]["rank_ratio"]
    assert [float(r[1]) for r in b] == res["linearity"]["lambda"]
    assert [float(r[2]) for r in b] == res["linearity"]["norm_ratio"]
    assert [float(r[3]) for r in b] == res["linearity"]["cosine"]


def test_rank_curve_json_flag_prints_the_numbers(tiny_model, tmp_path, capsys):
    assert cli.main(["rank-curve", "--model", str(tiny_model), "--ts", "0.5", "--n", "1", "--lambdas", "0,5",
                     "--out", str(tmp_path / "rc"), "--json", "--no-progress"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((tmp_path / "rc.json").read_text())


@pytest.mark.parametrize("args, names", [
    (["--ts", "0.3,abc"], ["'abc' is not a number", "comma-separated numbers"]),
    (["--ts", "0.3,1.5"], ["t = 1.5", "(0, 1]"]),
    (["--ts", "0,0.5"], ["t = 0 ", "(0, 1]"]),
    (["--ts", ""], ["--ts ''", "comma-separated numbers"]),
    (["--ts", "0.5,0.501"], ["0.501", "more than once"]),
    (["--linearity-t", "0"], ["--linearity-t 0", "(0, 1]"]),
    (["--lambdas", "x"], ["'x' is not a number", "comma-separated numbers"]),
    (["--lambdas", "nan,10"], ["nan is not finite", "finite number"]),
    (["--n", "0"], ["--n 0", "1 … 64"]),
    (["--seed", str(2 ** 64)], [str(2 ** 64), "2⁶⁴ − 1"]),
])
def test_rank_curve_rejects_bad_arguments(tiny_model, tmp_path, capsys, args, names):
    """Every bad argument: exit 2, one line naming the value and what is allowed, no traceback, no output."""
    rc = cli.main(["rank-curve", "--model", str(tiny_model), "--out", str(tmp_path / "rc"), "--no-progress", *args])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("lococourse rank-curve: error: ") and "Traceback" not in err
    for n in names:
        assert n in err, err
    assert not list(tmp_path.iterdir())


def test_rank_curve_unknown_model_lists_the_names(tmp_path, capsys):
    assert cli.main(["rank-curve", "--model", "nope", "--out", str(tmp_path / "rc"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'nope'" in err and "faces16" in err and "Traceback" not in err


def test_rank_curve_refuses_existing_outputs_unless_overwrite(tiny_model, tmp_path, capsys):
    (tmp_path / "rc.csv").write_text("earlier")
    argv = ["rank-curve", "--model", str(tiny_model), "--ts", "0.5", "--n", "1", "--lambdas", "0,5",
            "--out", str(tmp_path / "rc"), "--no-progress"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "rc.csv" in err and "already exists" in err and "--overwrite" in err
    assert (tmp_path / "rc.csv").read_text() == "earlier" and not (tmp_path / "rc.json").exists()
    assert cli.main([*argv, "--overwrite"]) == 0
    assert (tmp_path / "rc.csv").read_text().startswith("panel,") and (tmp_path / "rc.json").exists()


def test_models_command_lists_the_local_course_models(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert cli.main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    for name in ("faces16", "faces32", "molrg_d48", "molrg_d192"):
        assert rows[name]["kind"] == "course" and rows[name]["available"] is True
