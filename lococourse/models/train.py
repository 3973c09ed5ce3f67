"""Train small pixel-space DDPMs (diffusers ``UNet2DModel``) on data we generate: resumable and seeded.

The objective is the paper's (§2): t uniform over the T = 1000 training steps, x_t = √ᾱ x₀ + √(1−ᾱ) ε,
and a squared error on ε (or on v = √ᾱ ε − √(1−ᾱ) x₀, or on x₀).  An exponential moving average (EMA)
of the weights is what gets saved and sampled.  Checkpoints are safetensors:

    out_dir/model/          the EMA UNet as a diffusers folder (config.json + safetensors): loadable
                            by ``UNet2DModel.from_pretrained(out_dir / "model")``; it says what it predicts
                            (scheduler_config.json, and the weights' metadata: :func:`describe_model_folder`)
    out_dir/state.safetensors, out_dir/state.json    raw weights, EMA, Adam moments, step, losses (to resume)

A run can be *extended*: ``train(cfg, …, extend=True)`` on a finished run whose config differs only in
the schedule fields (``steps``, ``lr``, ``warmup``, ``checkpoint_every``) continues it with a new
learning-rate segment (a warm restart: linear warm-up to ``cfg.lr``, cosine decay to 10 % at
``cfg.steps``).  The segments are recorded in ``state.json`` so a recipe can replay them exactly.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file

from lococourse.core.checks import check_positive_int, check_real, check_seed
from lococourse.core.schedule import SCHEDULE
from lococourse.models.adapters import PREDICTION_TYPES

__all__ = ["UNetConfig", "TrainConfig", "build_unet", "train", "diffusion_loss", "lr_at", "SCHEDULE_FIELDS",
           "describe_model_folder", "PREDICTION_TYPE_KEY"]

Sampler = Callable[[int, torch.Generator], torch.Tensor]  # (batch size, generator) -> x₀ of shape (B, C, H, W)


@dataclass
class UNetConfig:
    """A small ``UNet2DModel``: no attention in its down and up blocks (diffusers keeps one attention
    layer in the mid block; the adapters run it through the jvp-safe processor)."""

    sample_size: int = 16
    in_channels: int = 3
    block_out_channels: tuple = (32, 64, 64)
    layers_per_block: int = 1
    down_block_types: tuple = ("DownBlock2D", "DownBlock2D", "DownBlock2D")
    up_block_types: tuple = ("UpBlock2D", "UpBlock2D", "UpBlock2D")
    norm_num_groups: int = 8
    add_attention: bool = True  # the mid block's attention layer (diffusers' default)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse a configuration diffusers would reject later (or build wrongly), naming the field."""
        for name in ("sample_size", "in_channels", "layers_per_block", "norm_num_groups"):
            check_positive_int(getattr(self, name), f"UNetConfig.{name}")
        chans = tuple(self.block_out_channels)
        if not chans or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in chans):
            raise ValueError(f"UNetConfig.block_out_channels must be positive integers; got {self.block_out_channels!r}")
        for name in ("down_block_types", "up_block_types"):
            if len(tuple(getattr(self, name))) != len(chans):
                raise ValueError(f"UNetConfig.{name} must have one block per entry of block_out_channels "
                                 f"({len(chans)}); got {len(tuple(getattr(self, name)))}")
        bad = [c for c in chans if c % self.norm_num_groups]
        if bad:
            raise ValueError(f"UNetConfig.block_out_channels {chans} must be multiples of norm_num_groups = "
                             f"{self.norm_num_groups}; {bad} are not")


@dataclass
class TrainConfig:
    unet: UNetConfig = field(default_factory=UNetConfig)
    prediction_type: str = "epsilon"  # "epsilon" | "v_prediction" | "sample"
    steps: int = 2000
    batch_size: int = 128
    lr: float = 2e-3
    warmup: int = 100
    ema_decay: float = 0.999
    seed: int = 0
    checkpoint_every: int = 500
    # x₀-prediction only: weight each sample's x₀ error by its SNR ᾱ/(1−ᾱ) clipped to [1, snr_weight_max].
    # 1 (the default) is the plain x₀ loss, which barely trains small t (x_t ≈ x₀ there, so the errors are
    # tiny); a larger cap moves towards the ε loss at small t (whose x₀ weight is SNR) and keeps large t as is.
    snr_weight_max: float = 1.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse a configuration that would train nothing or train wrongly, naming the field and what is allowed
        (called on construction and again by :func:`train`, so a field changed afterwards is checked too)."""
        if not isinstance(self.unet, UNetConfig):
            raise TypeError(f"TrainConfig.unet must be a UNetConfig; got {type(self.unet).__name__}")
        self.unet.validate()
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"TrainConfig.prediction_type must be one of {', '.join(PREDICTION_TYPES)}; "
                             f"got {self.prediction_type!r}")
        for name in ("steps", "batch_size", "checkpoint_every"):
            check_positive_int(getattr(self, name), f"TrainConfig.{name}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"TrainConfig.warmup must be an integer ≥ 0 (steps of linear warm-up); got {self.warmup!r}")
        check_real(self.lr, "TrainConfig.lr", low=0.0, low_open=True)
        check_real(self.ema_decay, "TrainConfig.ema_decay", low=0.0, high=1.0, high_open=True)
        check_seed(self.seed, "TrainConfig.seed")
        check_real(self.snr_weight_max, "TrainConfig.snr_weight_max", low=1.0)
        if self.snr_weight_max != 1.0 and self.prediction_type != "sample":
            raise ValueError(f"TrainConfig.snr_weight_max applies to prediction_type 'sample' only; got "
                             f"snr_weight_max = {self.snr_weight_max} with {self.prediction_type!r}")


#: The safetensors metadata key of the saved model's weights that records what it predicts (read by the registry).
PREDICTION_TYPE_KEY = "lococourse_prediction_type"


def build_unet(cfg: UNetConfig, seed: int = 0):
    """A seeded ``UNet2DModel`` from a :class:`UNetConfig`."""
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    c = asdict(cfg)
    return UNet2DModel(
        sample_size=c["sample_size"], in_channels=c["in_channels"], out_channels=c["in_channels"],
        block_out_channels=tuple(c["block_out_channels"]), layers_per_block=c["layers_per_block"],
        down_block_types=tuple(c["down_block_types"]), up_block_types=tuple(c["up_block_types"]),
        norm_num_groups=c["norm_num_groups"], add_attention=c["add_attention"],
    )


def diffusion_loss(unet, x0: torch.Tensor, prediction_type: str, generator: torch.Generator,
                   snr_weight_max: float = 1.0) -> torch.Tensor:
    """Mean squared error of the network's prediction at uniformly drawn timesteps (the DDPM objective);
    for x₀-prediction optionally weighted by min(max(SNR, 1), snr_weight_max) per sample."""
    if not (math.isfinite(snr_weight_max) and snr_weight_max >= 1.0):
        raise ValueError(f"snr_weight_max must be a finite number ≥ 1; got {snr_weight_max!r}")
    if snr_weight_max != 1.0 and prediction_type != "sample":
        raise ValueError(f"snr_weight_max applies to prediction_type 'sample' only; got {prediction_type!r}")
    B = x0.shape[0]
    k = torch.randint(0, SCHEDULE.num_steps, (B,), generator=generator)
    ab = SCHEDULE.alphas_cumprod[k].to(x0.dtype).reshape(B, 1, 1, 1)
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    out = unet(xt, k).sample
    if prediction_type == "epsilon":
        target = eps
    elif prediction_type == "v_prediction":
        target = ab.sqrt() * eps - (1 - ab).sqrt() * x0
    elif prediction_type == "sample":
        target = x0
    else:
        raise ValueError(f"prediction_type must be 'epsilon', 'v_prediction' or 'sample'; got {prediction_type!r}")
    if snr_weight_max == 1.0:
        return torch.mean((out - target) ** 2)
    w = (ab / (1 - ab)).clamp(1.0, snr_weight_max)  # (B, 1, 1, 1)
    return torch.mean(w * (out - target) ** 2)


#: TrainConfig fields that an extension (a new learning-rate segment) may change: the schedule and the loss weighting
SCHEDULE_FIELDS = ("steps", "lr", "warmup", "checkpoint_every", "snr_weight_max")


def _config_dict(cfg) -> dict:
    """A config as plain JSON (tuples → lists), for comparison with a saved one."""
    return json.loads(json.dumps(asdict(cfg)))


def _with_defaults(saved: dict) -> dict:
    """A saved config with fields added since it was written filled in by their defaults."""
    full = _config_dict(TrainConfig())
    full.update({k: v for k, v in saved.items() if k != "unet"})
    full["unet"] = {**_config_dict(UNetConfig()), **saved.get("unet", {})}
    return full


def describe_model_folder(folder: str | Path, prediction_type: str) -> None:
    """Make a saved diffusers UNet folder say what it predicts, in the two places loaders look: the weights'
    safetensors metadata (:data:`PREDICTION_TYPE_KEY`, so a copied weights file still says it) and a diffusers
    ``scheduler_config.json`` of the paper's schedule (linear β from 1e-4 to 0.02, T = 1000)."""
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {', '.join(PREDICTION_TYPES)}; got {prediction_type!r}")
    folder = Path(folder)
    weights = folder / "diffusion_pytorch_model.safetensors"
    # one metadata key only: safetensors writes several in a hash map's order, which differs from run to run and
    # would make identical weights differ in their bytes (and in the sha256 a recipe records)
    save_file(load_file(weights), weights, metadata={PREDICTION_TYPE_KEY: prediction_type})
    sched = {"_class_name": "DDPMScheduler", "num_train_timesteps": SCHEDULE.num_steps, "beta_start": SCHEDULE.beta_start,
             "beta_end": SCHEDULE.beta_end, "beta_schedule": "linear", "prediction_type": prediction_type}
    (folder / "scheduler_config.json").write_text(json.dumps(sched, indent=2))


def lr_at(s: int, segments: list) -> float:
    """Learning rate at step ``s``: the segment holding ``s`` warms up linearly to its peak lr, then decays
    by a cosine to 10 % of it at the segment's end."""
    seg = next((g for g in segments if g["start"] <= s < g["end"]), segments[-1])
    i, n = s - seg["start"], max(1, seg["end"] - seg["start"])
    if i < seg["warmup"]:
        return seg["lr"] * (i + 1) / seg["warmup"]
    p = (i - seg["warmup"]) / max(1, n - seg["warmup"])
    return seg["lr"] * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(p, 1.0))))


def train(cfg: TrainConfig, sampler: Sampler, out_dir: str | Path, *, time_limit_s: float | None = None,
          log: Callable[[str], None] = print, log_every: int = 100, extend: bool = False) -> dict:
    """Train (or resume) a DDPM on ``sampler`` until ``cfg.steps`` or ``time_limit_s``; returns a summary.

    Resuming: if ``out_dir/state.json`` exists with the same config, training continues from its step,
    with the same weights, EMA, Adam moments and data/noise generator state — so one long run can be
    split into several shorter ones.  With ``extend=True`` a *finished* run whose config differs only in
    :data:`SCHEDULE_FIELDS` continues to ``cfg.steps`` in a new learning-rate segment (see module doc).
    """
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig; got {type(cfg).__name__}")
    cfg.validate()  # again: a field may have been changed after construction (cfg.steps = -5)
    if time_limit_s is not None:
        check_real(time_limit_s, "time_limit_s", low=0.0, low_open=True)
    check_positive_int(log_every, "log_every")
    if not callable(sampler):
        raise TypeError(f"sampler must be a callable (batch size, generator) -> x₀; got {type(sampler).__name__}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    unet = build_unet(cfg.unet, cfg.seed)
    ema = build_unet(cfg.unet, cfg.seed)
    ema.load_state_dict(unet.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(cfg.seed)
    step, losses, wall = 0, [], 0.0
    new = _config_dict(cfg)
    segments = [{"start": 0, "end": cfg.steps, "lr": cfg.lr, "warmup": cfg.warmup}]
    state_json = out / "state.json"
    if state_json.exists():
        meta = json.loads(state_json.read_text())
        saved = _with_defaults(meta["config"])
        segments = meta.get("segments") or [{"start": 0, "end": saved["steps"], "lr": saved["lr"], "warmup": saved["warmup"]}]
        if saved != new:
            differ = sorted(k for k in new if new[k] != saved.get(k))
            if not extend or not set(differ) <= set(SCHEDULE_FIELDS):
                raise ValueError(f"{out} holds a run with another config (fields {differ} differ); use a new out_dir, "
                                 f"delete it, or pass extend=True when only {list(SCHEDULE_FIELDS)} change")
            if meta["step"] < saved["steps"]:
                raise ValueError(f"{out} is unfinished (step {meta['step']} of {saved['steps']}): resume it with its own "
                                 "config before extending it")
            if cfg.steps <= meta["step"]:
                raise ValueError(f"extend needs steps > {meta['step']} (the run's step); got steps={cfg.steps}")
            segments = segments + [{"start": meta["step"], "end": cfg.steps, "lr": cfg.lr, "warmup": cfg.warmup,
                                   "snr_weight_max": cfg.snr_weight_max}]
        tensors = load_file(out / "state.safetensors")
        unet.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
        for i, p in enumerate(unet.parameters()):
            opt.state[p] = {"step": torch.tensor(float(meta["step"])),
                            "exp_avg": tensors[f"adam.{i}.exp_avg"], "exp_avg_sq": tensors[f"adam.{i}.exp_avg_sq"]}
        gen.set_state(tensors["generator"])
        step, losses, wall = meta["step"], meta["losses"], meta["wall_s"]
        log(f"resumed {out} at step {step}" + (f" (extending to {cfg.steps})" if len(segments) > 1 and step == segments[-1]["start"] else ""))

    def save() -> None:
        tensors = {f"model.{k}": v.contiguous() for k, v in unet.state_dict().items()}
        tensors.update({f"ema.{k}": v.contiguous() for k, v in ema.state_dict().items()})
        for i, p in enumerate(unet.parameters()):
            st = opt.state.get(p)
            if st:
                tensors[f"adam.{i}.exp_avg"] = st["exp_avg"].contiguous()
                tensors[f"adam.{i}.exp_avg_sq"] = st["exp_avg_sq"].contiguous()
        tensors["generator"] = gen.get_state()
        save_file(tensors, out / "state.safetensors")
        ema.save_pretrained(out / "model", safe_serialization=True)
        describe_model_folder(out / "model", cfg.prediction_type)
        state_json.write_text(json.dumps({"config": asdict(cfg), "step": step, "losses": losses, "segments": segments,
                                          "wall_s": wall0 + time.time() - t_start}))

    unet.train()
    wall0, t_start = wall, time.time()
    window: list[float] = []
    while step < cfg.steps:
        if time_limit_s is not None and time.time() - t_start > time_limit_s:
            log(f"time limit reached at step {step}")
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(step, segments)
        x0 = sampler(cfg.batch_size, gen)
        loss = diffusion_loss(unet, x0, cfg.prediction_type, gen, cfg.snr_weight_max)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            decay = min(cfg.ema_decay, (1 + step) / (10 + step))
            for pe, p in zip(ema.parameters(), unet.parameters()):
                pe.lerp_(p, 1 - decay)
        step += 1
        window.append(loss.item())
        if step % log_every == 0 or step == cfg.steps:
            losses.append([step, sum(window) / len(window)])
            window = []
            log(f"step {step}/{cfg.steps}  loss {losses[-1][1]:.4f}  ({time.time() - t_start:.0f} s)")
        if step % cfg.checkpoint_every == 0:
            save()
    save()
    return {"steps": step, "final_loss": losses[-1][1] if losses else float("nan"), "wall_s": wall0 + time.time() - t_start,
            "params": sum(p.numel() for p in unet.parameters()), "out_dir": str(out)}
