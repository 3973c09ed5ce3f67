"""Recipe ``molrg_d48``: x₀-prediction DDPM on image-shaped MoLRG data, d = 48 = 3×4×4, K = 2, r_k = 6.

The bases are saved with the model (``molrg_bases.safetensors``; rebuild the exact model with
``lococourse.data.molrg_images.load_molrg``) so learned and exact posterior means can be compared on the same x_t.

    python -m synthetic.molrg_d48 [--out DIR] [--work DIR] [--time-limit S]
"""
from __future__ import annotations

from lococourse.data.molrg_images import molrg_image_model, molrg_sampler, save_molrg
from lococourse.models.train import TrainConfig, UNetConfig
from synthetic.common import RecipeConfig, recipe_main

BASES = "molrg_bases.safetensors"


def config(name: str = "molrg_d48", shape: tuple = (3, 4, 4), ranks: tuple = (6, 6), basis_seed: int = 0,
           channels: tuple = (32, 64), steps: int = 3000, batch_size: int = 128, lr: float = 2e-3,
           prediction_type: str = "sample", seed: int = 0) -> RecipeConfig:
    levels = len(channels)
    unet = UNetConfig(sample_size=shape[1], in_channels=shape[0], block_out_channels=tuple(channels),
                      layers_per_block=1, down_block_types=("DownBlock2D",) * levels,
                      up_block_types=("UpBlock2D",) * levels, norm_num_groups=8)
    tc = TrainConfig(unet=unet, prediction_type=prediction_type, steps=steps, batch_size=batch_size, lr=lr,
                     warmup=100, ema_decay=0.995, seed=seed, checkpoint_every=250)
    d = shape[0] * shape[1] * shape[2]
    data = {"generator": "lococourse.data.molrg_images.molrg_image_model", "shape": list(shape), "d": d,
            "ranks": list(ranks), "K": len(ranks), "weights": "uniform", "basis_seed": basis_seed,
            "bases_file": BASES, "exact_min_rank_ratio": min(ranks) / d}
    return RecipeConfig(name=name, train=tc, data=data, rank_points=4)


def bayes_loss(model, n_per_step: int = 200, stride: int = 20, seed: int = 0) -> float:
    """Monte-Carlo estimate of the smallest possible x₀-prediction loss, E_k E‖x₀ − E[x₀|x_t]‖²/d over
    timesteps k = 0, stride, … (the exact posterior mean is the Bayes-optimal x₀-predictor)."""
    import torch

    from lococourse.core.schedule import SCHEDULE

    g = torch.Generator().manual_seed(seed)
    errs = []
    for k in range(0, SCHEDULE.num_steps, stride):
        t = float(SCHEDULE.t_of_timestep(k))
        x0, _ = model.sample(n_per_step, g)
        xt, _ = model.noise(x0, t, g)
        errs.append(float(((model.posterior_mean(xt, t) - x0) ** 2).mean()))
    return sum(errs) / len(errs)


def make_from(cfg: RecipeConfig):
    model = molrg_image_model(cfg.data["shape"], cfg.data["ranks"], seed=cfg.data["basis_seed"])
    if cfg.train.steps > 10:  # skipped for the tiny test configurations
        cfg.data["bayes_optimal_loss"] = bayes_loss(model)
    return cfg, molrg_sampler(model), {"exact": model, "sample_mode": "auto",
                                       "extra_files": {BASES: lambda p: save_molrg(model, p)}}


def make():
    return make_from(config())


if __name__ == "__main__":
    recipe_main(make, module=__spec__.name)
