"""Shared machinery of the recipes: train → export → measure (rank ratio, eq. 10) → sample → model card.

Layout of a shipped model ``lococourse/assets/models/<name>/``::

    config.json, diffusion_pytorch_model.safetensors   the EMA UNet (``UNet2DModel.from_pretrained``)
    card.json, README.md                              the model card (numbers below are measured)
    samples.png                                       DDIM samples (η = 0), clamped to [-1, 1] for display only
    (extra files, e.g. molrg_bases.safetensors)

Training state (raw weights, Adam moments, generator) lives in a separate work directory so that
only the EMA model is shipped; re-running a recipe with the same work directory resumes it.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import torch

from lococourse.core.checks import file_sha256
from lococourse.core.schedule import SCHEDULE
from lococourse.jacobian.operator import dense_jacobian
from lococourse.jacobian.subspace import numerical_rank
from lococourse.models.adapters import UNetPMP
from lococourse.models.ddim import ddim_sample
from lococourse.models.registry import ASSETS, WEIGHTS, LoadedModel, course_models, load_card, load_model
from lococourse.models.train import Sampler, TrainConfig, train

__all__ = ["ASSETS", "WEIGHTS", "RecipeConfig", "stage_configs", "list_models", "load_card", "sample_images",
           "subspace_fit", "rank_ratio_vs_t", "noised_points", "save_grid", "run_recipe", "recipe_main", "readme"]



@dataclass
class RecipeConfig:
    """A recipe: what to train and how to evaluate it."""

    name: str
    train: TrainConfig
    data: dict = field(default_factory=dict)  # a description of the data (written to the card)
    rank_ts: tuple = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    rank_points: int = 3  # x_t per t for the rank ratio
    # warm restarts after ``train.steps``: each a dict of schedule fields (steps, lr, warmup) for one more
    # learning-rate segment (lococourse.models.train, extend=True); replayed in order, so a recipe stays reproducible
    extensions: tuple = ()
    eval_seed: int = 1234
    n_samples: int = 64


def stage_configs(cfg: RecipeConfig) -> list[TrainConfig]:
    """The training configs a recipe runs in order: its base run, then one per extension (warm restart)."""
    stages = [cfg.train]
    for ext in cfg.extensions:
        bad = set(ext) - {"steps", "lr", "warmup", "snr_weight_max"}
        if bad:
            raise ValueError(f"an extension may set steps, lr, warmup and snr_weight_max only; got {sorted(bad)}")
        if ext["steps"] <= stages[-1].steps:
            raise ValueError(f"extension steps must grow; {ext['steps']} after {stages[-1].steps}")
        stages.append(replace(stages[-1], **ext))
    return stages


# ------------------------------------------------------------------------------------------------ loading, sampling
# One home each: lococourse.models.registry (ASSETS, load_model, load_card), lococourse.models.ddim (DDIM on the
# paper's 100-step grid), lococourse.models.adapters (the PMP), lococourse.jacobian (the dense Jacobian).
def list_models() -> list[str]:
    """Names of the shipped course models."""
    return sorted(course_models())


@torch.no_grad()
def sample_images(model: LoadedModel, n: int, seed: int = 0, batch: int = 64) -> torch.Tensor:
    """n DDIM samples (η = 0, the paper's 100-step grid, x_T seeded) of a loaded model: (n, *model.shape)."""
    g = torch.Generator().manual_seed(seed)
    eps = model.eps_model()
    outs = []
    for start in range(0, n, batch):
        x_T = torch.randn(min(batch, n - start), *model.shape, generator=g)
        outs.append(ddim_sample(eps, x_T, 1.0, 0.0))
    return torch.cat(outs)


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 8, scale: int = 4, mode: str = "image") -> None:
    """A PNG grid of (n, C, H, W) images.  ``mode="image"``: values in [-1, 1] (clamped for display);
    ``mode="auto"``: each image min-max normalised (for unbounded data such as MoLRG)."""
    import numpy as np
    from PIL import Image

    x = images.detach().float()
    if mode == "auto":
        lo = x.amin(dim=(1, 2, 3), keepdim=True)
        hi = x.amax(dim=(1, 2, 3), keepdim=True)
        x = (x - lo) / (hi - lo).clamp(min=1e-8)
    else:
        x = (x.clamp(-1, 1) + 1) / 2
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    n, c, h, w = x.shape
    rows = math.ceil(n / nrow)
    grid = torch.ones(3, rows * (h + 1) + 1, nrow * (w + 1) + 1)
    for i in range(n):
        r, q = divmod(i, nrow)
        grid[:, 1 + r * (h + 1):1 + r * (h + 1) + h, 1 + q * (w + 1):1 + q * (w + 1) + w] = x[i, :3]
    arr = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    img = Image.fromarray(arr)
    img.resize((img.width * scale, img.height * scale), Image.NEAREST).save(path)


def subspace_fit(x: torch.Tensor, model) -> torch.Tensor:
    """For each x (B, *shape): max_k ‖M_kᵀ x‖² / ‖x‖², the fraction of its energy in the best MoLRG subspace (1 on the data)."""
    xf = x.detach().double().reshape(x.shape[0], -1)
    proj = torch.stack([((xf @ m) ** 2).sum(1) for m in model.bases], 1)
    return proj.max(1).values / (xf ** 2).sum(1)


# ------------------------------------------------------------------------------------------------ rank ratio
def noised_points(sampler: Sampler, n: int, t: float, seed: int) -> tuple[torch.Tensor, int]:
    """n points x_t = √ᾱ x₀ + √(1−ᾱ) ε from data x₀ (seeded); returns (x_t, the diffusers timestep k of t)."""
    k = int(SCHEDULE.timestep_of_t(t))
    ab = SCHEDULE.alphas_cumprod[k].to(torch.float32)
    g = torch.Generator().manual_seed(seed)
    x0 = sampler(n, g)
    eps = torch.randn(x0.shape, generator=g)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * eps, k


def batched_jacobian(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, chunk_size: int = 128) -> torch.Tensor:
    """The dense Jacobian (d × d) of a PMP at one point x, by plain batched backward passes.

    Rows i…i+c come from one forward pass on c copies of x and one backward pass with the one-hot
    cotangents e_i…e_{i+c}: valid because a PMP's batch entries are independent.  The same numbers as
    :func:`lococourse.jacobian.dense_jacobian` (tested), without vmap — whose fallback for the UNet's
    attention backward is slow on CPU.
    """
    x = x.detach()
    d = x.numel()
    rows = []
    for start in range(0, d, chunk_size):
        c = min(chunk_size, d - start)
        xs = x.unsqueeze(0).repeat(c, *[1] * x.dim()).requires_grad_(True)
        y = f(xs)  # (c, *S)
        if y.shape != xs.shape:
            raise ValueError(f"a PMP maps (B, *S) to (B, *S); got {tuple(xs.shape)} -> {tuple(y.shape)}")
        E = torch.zeros(c, d, dtype=y.dtype)
        E[torch.arange(c), torch.arange(start, start + c)] = 1
        (g,) = torch.autograd.grad(y, xs, grad_outputs=E.reshape(y.shape))
        rows.append(g.reshape(c, d).detach())
    return torch.cat(rows)


def rank_ratio_vs_t(unet, prediction_type: str, sampler: Sampler, ts: Sequence[float], n_points: int = 3,
                    seed: int = 1234, eta: float = 0.99, exact=None, log: Callable[[str], None] = print) -> dict:
    """Rank ratio (eq. 10, η) of the dense Jacobian of the learned PMP, averaged over n_points x_t per t.

    With ``exact`` (a MoLRG) also the exact posterior mean's rank ratio and the relative error of the
    learned PMP, ‖f_θ(x_t) − E[x₀|x_t]‖ / ‖E[x₀|x_t]‖, on the same x_t.
    """
    unet = unet.eval().float().requires_grad_(False)
    out = {"t": [], "timestep": [], "rank_ratio": [], "numerical_rank": [], "d": None, "eta": eta, "n_points": n_points}
    if exact is not None:
        out.update(exact_rank_ratio=[], pmp_rel_error=[])
    for i, t in enumerate(ts):
        xt, k = noised_points(sampler, n_points, t, seed + i)
        f = UNetPMP(unet, float(SCHEDULE.t_of_timestep(k)), prediction_type)
        d = xt[0].numel()
        ranks = []
        for x in xt:
            S = torch.linalg.svdvals(dense_jacobian(f, x, chunk_size=128, method="batch").double())
            ranks.append(numerical_rank(S, eta))
        out["t"].append(float(t))
        out["timestep"].append(k)
        out["numerical_rank"].append(sum(ranks) / len(ranks))
        out["rank_ratio"].append(sum(ranks) / len(ranks) / d)
        out["d"] = d
        msg = f"t={t:.2f} (k={k}): rank ratio {out['rank_ratio'][-1]:.4f} (ranks {ranks}, d={d})"
        if exact is not None:
            tk = float(SCHEDULE.t_of_timestep(k))
            xd = xt.double()
            J = exact.jacobian(xd, tk)
            er = [numerical_rank(torch.linalg.svdvals(Ji), eta) for Ji in J]
            out["exact_rank_ratio"].append(sum(er) / len(er) / d)
            with torch.no_grad():
                fl = f(xt).double()
            ex = exact.posterior_mean(xd, tk)
            rel = (torch.linalg.norm((fl - ex).flatten(1), dim=1) / torch.linalg.norm(ex.flatten(1), dim=1)).mean()
            out["pmp_rel_error"].append(float(rel))
            msg += f"; exact {out['exact_rank_ratio'][-1]:.4f}; PMP rel. error {float(rel):.3f}"
        log(msg)
    return out


# ------------------------------------------------------------------------------------------------ recipe driver
def readme(card: dict) -> str:
    """The model folder's README.md, from its card."""
    rr = card["rank_ratio"]
    rows = "\n".join(
        f"| {t:.2f} | {k} | {r:.4f} | {nr:.1f} |" + (f" {e:.4f} | {pe:.3f} |" if "exact_rank_ratio" in rr else "")
        for t, k, r, nr, *rest in zip(rr["t"], rr["timestep"], rr["rank_ratio"], rr["numerical_rank"],
                                      *( [rr["exact_rank_ratio"], rr["pmp_rel_error"]] if "exact_rank_ratio" in rr else []))
        for e, pe in [tuple(rest) if rest else (0, 0)]
    )
    head = "| t | timestep | rank ratio | numerical rank |" + (" exact rank ratio | PMP rel. error |" if "exact_rank_ratio" in rr else "")
    sep = "|---|---|---|---|" + ("---|---|" if "exact_rank_ratio" in rr else "")
    fit = ""
    if "subspace_fit_mean" in card["samples"]:
        fit = (f"; fraction of each sample's energy in its best MoLRG subspace: mean {card['samples']['subspace_fit_mean']:.4f},"
               f" min {card['samples']['subspace_fit_min']:.4f} (exact samples: 1)")
    bayes = card["data"].get("bayes_optimal_loss")
    if bayes is not None:
        fit += f"\n- Bayes-optimal x₀-prediction loss of this data (exact posterior mean, Monte Carlo): {bayes:.5f}"
    return f"""# Course model `{card['name']}`

Trained by `python -m {card['recipe']}` (seed {card['seed']}); see `card.json` for every number.

- Data: {json.dumps(card['data'])}
- Network: diffusers `UNet2DModel`, {card['params']:,} parameters, {json.dumps(card['architecture'])}
- Prediction type: `{card['prediction_type']}`; schedule: {card['schedule']}
- Training: {card['steps']} / {card['steps_planned']} steps, batch {card['train']['batch_size']}, lr {card['train']['lr']},
  EMA {card['train']['ema_decay']}; final loss {card['final_loss']:.5f}; wall time {card['wall_s']:.0f} s on {card['hardware']}
- Weights: EMA, float32, `{WEIGHTS}` ({card['weights_bytes'] / 1e6:.2f} MB, sha256 `{card['weights_sha256'][:16]}…`)
- Samples: `samples.png`, {card['samples']['n']} DDIM samples ({card['samples']['steps']} steps, η = 0, seed {card['samples']['seed']}){fit}

## Rank ratio of the PMP Jacobian (paper §3.1, Appendix D.1 eq. 10, η = {rr['eta']})

Numerical rank of the dense Jacobian of x_t ↦ x̂₀ over d = {rr['d']}, averaged over {rr['n_points']} x_t
(data noised to t).  Low-rank (the paper's criterion): rank ratio < 0.1 somewhere in t ∈ [0.2, 0.8]:
**{card['low_rank']}** (minimum {card['min_rank_ratio']:.4f} at t = {card['argmin_t']:.2f}).

{head}
{sep}
{rows}
"""


def run_recipe(cfg: RecipeConfig, sampler: Sampler, out: str | Path, work: str | Path, *, time_limit_s: float | None = None,
               recipe: str = "", exact=None, extra_files: dict | None = None, sample_mode: str = "image",
               skip_eval: bool = False, log: Callable[[str], None] = print) -> dict | None:
    """Train (resumably, in ``work``) and, once all steps are done, export the model with its card to ``out``.

    The export is built in a fresh sibling folder and swapped in at the end (an existing ``out`` — the caller's
    ``--overwrite`` — is replaced whole, never mixed with the new weights: its old card would name the old sha256)."""
    final, work = Path(out), Path(work)
    stages = stage_configs(cfg)
    first = 0
    if (work / "state.json").exists():  # resume at the stage the saved run belongs to
        saved_steps = json.loads((work / "state.json").read_text())["config"]["steps"]
        first = next((i for i, st in enumerate(stages) if st.steps == saved_steps), 0)
    t0 = time.time()
    for i, st in enumerate(stages[first:], first):  # only the recipe's own extensions may extend a run
        left = None if time_limit_s is None else max(0.0, time_limit_s - (time.time() - t0))
        summary = train(st, sampler, work, time_limit_s=left, log=log, extend=i > 0)
        if summary["steps"] < st.steps:
            log(f"stopped at step {summary['steps']} of {stages[-1].steps}; run again with --work {work} to resume")
            return None
    train_cfg = stages[-1]
    state = json.loads((work / "state.json").read_text())
    final.parent.mkdir(parents=True, exist_ok=True)
    out = final.parent / f".{final.name}.export-{os.getpid()}"  # step 1: a fresh folder, no stale card
    if out.exists():
        shutil.rmtree(out)
    out.mkdir()
    for fname in ("config.json", WEIGHTS):
        shutil.copyfile(work / "model" / fname, out / fname)
    for fname, writer in (extra_files or {}).items():
        writer(out / fname)
    model = load_model(str(out))
    unet = model.unet
    shape = (cfg.train.unet.in_channels, cfg.train.unet.sample_size, cfg.train.unet.sample_size)
    if "shape" in cfg.data:
        shape = tuple(cfg.data["shape"])
    t0 = time.time()
    rr = {"t": [], "timestep": [], "rank_ratio": [], "numerical_rank": [], "d": math.prod(shape), "eta": 0.99,
          "n_points": 0} if skip_eval else rank_ratio_vs_t(unet, cfg.train.prediction_type, sampler, cfg.rank_ts,
                                                            cfg.rank_points, cfg.eval_seed, exact=exact, log=log)
    eval_s = time.time() - t0
    samples = sample_images(model, cfg.n_samples, seed=cfg.eval_seed)
    save_grid(samples, out / "samples.png", mode=sample_mode)
    sample_info = {"file": "samples.png", "n": cfg.n_samples, "steps": 100, "eta": 0.0, "seed": cfg.eval_seed,
                   "sampler": "DDIM on the paper's 100-step grid (lococourse.models.ddim.ddim_sample)"}
    if exact is not None:  # how well the samples lie in the union of subspaces: max_k ‖P_k x‖² / ‖x‖²
        fit = subspace_fit(samples, exact)
        sample_info.update(subspace_fit_mean=float(fit.mean()), subspace_fit_min=float(fit.min()))
        log(f"samples: energy in the best subspace {float(fit.mean()):.4f} (min {float(fit.min()):.4f})")
    mid = [(r, t) for t, r in zip(rr["t"], rr["rank_ratio"]) if 0.2 - 1e-9 <= t <= 0.8 + 1e-9]
    best = min(mid) if mid else (float("nan"), float("nan"))
    card = {
        "name": cfg.name,
        "recipe": recipe,
        "seed": cfg.train.seed,
        "data": cfg.data,
        "shape": list(shape),
        "architecture": asdict(cfg.train.unet),
        "params": sum(p.numel() for p in unet.parameters()),
        "prediction_type": cfg.train.prediction_type,
        "schedule": "DDPM linear β from 1e-4 to 0.02, T = 1000 (lococourse.core.schedule.SCHEDULE); t = (k + 1)/T",
        "train": asdict(train_cfg),
        "train_segments": state.get("segments", []),
        "steps": state["step"],
        "steps_planned": train_cfg.steps,
        "final_loss": state["losses"][-1][1] if state["losses"] else float("nan"),
        "loss_curve": state["losses"],
        "wall_s": state["wall_s"],
        "eval_wall_s": eval_s,
        "hardware": f"{platform.machine()} CPU, {torch.get_num_threads()} torch threads (shared machine)",
        "torch": torch.__version__,
        "weights_bytes": (out / WEIGHTS).stat().st_size,
        "weights_sha256": file_sha256(out / WEIGHTS),
        "rank_ratio": rr,
        "min_rank_ratio": best[0],
        "argmin_t": best[1],
        "low_rank": bool(best[0] < 0.1),
        "samples": sample_info,
        "extra_files": sorted((extra_files or {}).keys()),
    }
    (out / "card.json").write_text(json.dumps(card, indent=1))
    (out / "README.md").write_text(readme(card))
    if final.exists():  # step 2: swap the finished export in (the old folder goes only once the new one is whole)
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        final.rename(old)
        out.rename(final)
        shutil.rmtree(old)
    else:
        out.rename(final)
    out = final
    log(f"exported {cfg.name} to {out}: low_rank={card['low_rank']} (min rank ratio {best[0]:.4f} at t={best[1]})")
    return card


def recipe_main(make: Callable[[], tuple], argv: Sequence[str] | None = None, module: str = "") -> dict | None:
    """Command line of a recipe: ``make()`` returns (RecipeConfig, sampler, run_recipe keyword arguments)."""
    cfg, sampler, kwargs = make()
    p = argparse.ArgumentParser(prog=f"python -m {module}", description=f"train and export the course model {cfg.name}")
    p.add_argument("--out", default=str(ASSETS / cfg.name), help="where the model folder goes (default: the package assets)")
    p.add_argument("--work", default=os.environ.get("LOCOCOURSE_WORK", str(Path.home() / ".cache" / "lococourse" / "recipes"))
                   + f"/{cfg.name}", help="training state (resumed if present)")
    p.add_argument("--time-limit", type=float, default=None, help="stop training after this many seconds (resume later)")
    p.add_argument("--steps", type=int, default=None, help="override the number of training steps (for tests)")
    p.add_argument("--skip-eval", action="store_true", help="skip the rank-ratio measurement (for tests)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model folder at --out")
    a = p.parse_args(argv)
    out = Path(a.out)
    if out.exists() and any(out.iterdir()) and not a.overwrite:
        p.error(f"--out {out} already holds a model folder; give another --out, or --overwrite to replace it")
    if a.steps is not None:
        cfg.train.steps = a.steps
        cfg.train.checkpoint_every = min(cfg.train.checkpoint_every, a.steps)
        cfg.extensions = ()
    return run_recipe(cfg, sampler, a.out, a.work, time_limit_s=a.time_limit, recipe=module, skip_eval=a.skip_eval, **kwargs)
