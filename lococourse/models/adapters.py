"""Adapters: learned diffusers models behind the PMP interface (and the ε-model interface of DDIM).

A posterior-mean predictor (PMP) is a callable on a batch (B, *S_in) → (B, *S_out) with
attributes ``t``, ``shape`` (S_in) and ``name``.  A learned denoiser gives one by eq. 2,

    x̂₀ = f_θ,t(x_t) = (x_t − √(1−ᾱ) ε_θ(x_t, t)) / √ᾱ                                  (eq. 2)

and by its equivalents for the other parameterisations diffusers uses:

    v-prediction:  x̂₀ = √ᾱ x_t − √(1−ᾱ) v_θ,   ε̂ = √ᾱ v_θ + √(1−ᾱ) x_t
    sample:        x̂₀ = x_θ,                    ε̂ = (x_t − √ᾱ x_θ)/√(1−ᾱ)

* :class:`UNetPMP` — a pixel-space UNet (``UNet2DModel``, or ``UNet2DConditionModel`` with fixed
  conditioning), eq. 2.
* :class:`LatentPMP` — a latent UNet whose x̂₀ is decoded by the VAE, x̂₀ = Decoder(ẑ₀) (Appendix
  D.1, eq. 9): the input (and so every edit direction) lives in latent space, the output (and so
  every mask) in pixel space.
* :class:`GuidedPMP` — classifier-free guidance for text-to-image UNets, ε̃ = ε(∅) + s(ε(c) − ε(∅))
  (eq. 3, giving f^o of eq. 11), with an optional edit-prompt term weighted by m (eq. 12), and an
  optional VAE decoder for latent models (Appendix E.2–E.3).

Time: the PMP at t ∈ (0, 1] calls the UNet at the integer timestep k = round(t·T) − 1 (``t = (k+1)/T``,
see :mod:`lococourse.core.schedule`) and uses ᾱ_k of the same table, so that ε_θ and ᾱ agree; ``pmp.t``
is that snapped time (k+1)/T.  The ε-model classes :class:`UNetEps` and :class:`GuidedEps` are
callables ``(x, timestep) → ε̂`` for :mod:`lococourse.models.ddim`.

All adapters are plain torch code without Python branches on tensor values, so torch.func
transforms (jvp, vjp, vmap, linearize) go through them; attention runs through the jvp-safe
processor of :mod:`lococourse.models.attention` during each call (``jvp_safe=False`` keeps the model's
own).  Freeze the networks (``requires_grad_(False)``) and put them in ``eval()`` mode.
"""
from __future__ import annotations

import contextlib
import math
from typing import Sequence

import torch
from torch import nn

from lococourse.core.checks import check_finite
from lococourse.core.schedule import SCHEDULE, DDPMSchedule, check_t
from lococourse.models.attention import jvp_safe_attention

__all__ = [
    "PREDICTION_TYPES", "alphas_cumprod_of", "UNetEps", "GuidedEps", "UNetPMP", "LatentPMP", "GuidedPMP",
]

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


# ---------------------------------------------------------------------------------------- schedule
def alphas_cumprod_of(schedule) -> torch.Tensor:
    """ᾱ_k for k = 0 … T−1 as float64, from a :class:`DDPMSchedule`, a diffusers scheduler, or a 1-D tensor."""
    if isinstance(schedule, DDPMSchedule):
        return schedule.alphas_cumprod
    table = getattr(schedule, "alphas_cumprod", schedule)
    if not torch.is_tensor(table):
        try:
            table = torch.as_tensor(table)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError("schedule must be a DDPMSchedule, a diffusers scheduler or a 1-D tensor of alphas_cumprod; "
                            f"got {type(schedule).__name__}") from None
    table = table.detach().to("cpu", torch.float64)
    if table.dim() != 1 or table.numel() < 1:
        raise ValueError(f"alphas_cumprod must be a non-empty 1-D table; got shape {tuple(table.shape)}")
    if not torch.isfinite(table).all() or (table <= 0).any() or (table > 1).any():
        raise ValueError("alphas_cumprod must lie in (0, 1]; got values from "
                         f"{float(table.min()):.3g} to {float(table.max()):.3g}")
    return table


def _prediction_type(prediction_type: str | None, schedule) -> str:
    """The given parameterisation, else the one in a diffusers scheduler's config, else "epsilon"."""
    if prediction_type is None:
        config = getattr(schedule, "config", None)
        prediction_type = getattr(config, "prediction_type", None) or "epsilon"
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}; got {prediction_type!r}")
    return prediction_type


def _timestep_of_t(t, num_train_timesteps: int) -> int:
    """k = round(t·T) − 1 (at least 0) for one t ∈ (0, 1]: the integer timestep with t = (k+1)/T."""
    if torch.as_tensor(t).numel() != 1:
        raise ValueError(f"t must be one number in (0, 1]; got {torch.as_tensor(t).tolist()}")
    check_t(t)
    return max(int(round(float(t) * num_train_timesteps)) - 1, 0)


# ---------------------------------------------------------------------------------------- helpers
def config_value(module: nn.Module, key: str, default=None):
    return getattr(getattr(module, "config", None), key, default)


def _module_dtype(module: nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


def _check_inference_mode(module: nn.Module, what: str) -> None:
    """Refuse a module that would drop out at random: a PMP must be a deterministic function."""
    active = [name for name, m in module.named_modules()
              if isinstance(m, nn.modules.dropout._DropoutNd) and m.training and m.p > 0]
    if active:
        raise ValueError(f"the {what} is in training mode with active dropout (e.g. {active[0]}, p = "
                         f"{module.get_submodule(active[0]).p}); call .eval() so that the PMP is deterministic")


def _unet_shape(unet: nn.Module, shape: Sequence[int] | None) -> tuple[int, int, int]:
    """(C, H, W) of the UNet's input: ``shape`` if given, else in_channels and sample_size from its config."""
    in_ch = config_value(unet, "in_channels")
    if shape is not None:
        shape = tuple(int(s) for s in shape)
        if len(shape) != 3:
            raise ValueError(f"shape must be (C, H, W); got {shape}")
        if in_ch is not None and shape[0] != in_ch:
            raise ValueError(f"shape has C = {shape[0]} channels but the UNet takes in_channels = {in_ch}")
        return shape
    size = config_value(unet, "sample_size")
    if in_ch is None or size is None:
        raise ValueError("the UNet's config gives no in_channels/sample_size; pass shape=(C, H, W)")
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    return int(in_ch), int(h), int(w)


def check_image(x, shape: tuple[int, ...], name: str, what: str) -> tuple[torch.Tensor, bool]:
    """View x of shape (C, H, W) or (B, C, H, W) as a batch; clear errors for wrong channels, size, NaN."""
    if not torch.is_tensor(x):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(x).__name__}")
    c, *hw = shape
    if x.dim() not in (len(shape), len(shape) + 1):
        raise ValueError(f"{name} must be a batch (B, {', '.join(map(str, shape))}) or one image {shape} "
                         f"for {what}; got shape {tuple(x.shape)}")
    single = x.dim() == len(shape)
    xb = x.unsqueeze(0) if single else x
    if xb.shape[1] != c:
        raise ValueError(f"{name} has {xb.shape[1]} channels but {what} takes {c} "
                         f"(expected shape (B, {', '.join(map(str, shape))}); got {tuple(x.shape)})")
    if tuple(xb.shape[2:]) != tuple(hw):
        raise ValueError(f"{name} has size {'×'.join(map(str, xb.shape[2:]))} but {what} expects "
                         f"{'×'.join(map(str, hw))} (expected shape (B, {', '.join(map(str, shape))}); got "
                         f"{tuple(x.shape)}); pass shape=(C, H, W) to run the model at another size")
    check_finite(xb, name)
    return xb, single


def _maybe_jvp_safe(model: nn.Module, on: bool):
    return jvp_safe_attention(model) if on else contextlib.nullcontext(model)


# ---------------------------------------------------------------------------------------- ε-models
class UNetEps:
    """A diffusers UNet as an ε-model ``(x, timestep) → ε̂`` at diffusers' integer timesteps.

    Reads any parameterisation (``prediction_type``: "epsilon", "v_prediction", "sample"; by
    default the one in ``schedule``'s config if ``schedule`` is a diffusers scheduler, else
    "epsilon"); drops the learned-variance half of the output channels when out_channels =
    2·in_channels (guided-diffusion, DeepFloyd IF); calls the UNet on a contiguous input in its own
    dtype.  ``unet_kwargs`` (e.g. ``encoder_hidden_states``, ``class_labels``) go to every call.
    """

    def __init__(self, unet: nn.Module, prediction_type: str | None = None, schedule=SCHEDULE, *,
                 jvp_safe: bool = True, **unet_kwargs):
        if not isinstance(unet, nn.Module):
            raise TypeError(f"unet must be a torch.nn.Module (a diffusers UNet); got {type(unet).__name__}")
        _check_inference_mode(unet, "UNet")
        self.unet, self.jvp_safe, self.unet_kwargs = unet, jvp_safe, unet_kwargs
        self.alphas_cumprod = alphas_cumprod_of(schedule)
        self._alphas = self.alphas_cumprod.tolist()  # Python floats: no tensor reads while torch.func traces
        self.num_train_timesteps = len(self.alphas_cumprod)
        self.prediction_type = _prediction_type(prediction_type, schedule)
        self.in_channels = config_value(unet, "in_channels")
        out = config_value(unet, "out_channels", self.in_channels)
        if self.in_channels is not None and out not in (self.in_channels, 2 * self.in_channels):
            raise ValueError(f"the UNet has out_channels = {out}; expected in_channels = {self.in_channels} "
                             f"or 2·in_channels = {2 * self.in_channels} (a learned variance in the second half)")
        self.learned_variance = self.in_channels is not None and out == 2 * self.in_channels
        self.dtype = _module_dtype(unet)

    # ---------------------------------------------------------------- the network
    def _timestep(self, timestep) -> int:
        k = int(timestep)
        if k != timestep or not 0 <= k < self.num_train_timesteps:
            raise ValueError(f"timestep must be an integer in 0..{self.num_train_timesteps - 1}; got {timestep!r}")
        return k

    def _call_unet(self, x: torch.Tensor, k: int, **kwargs) -> torch.Tensor:
        """The UNet's raw output (learned variance dropped), shape of x, in the UNet's dtype."""
        with _maybe_jvp_safe(self.unet, self.jvp_safe):
            out = self.unet(x.to(self.dtype).contiguous(), k, **kwargs).sample
        return out[:, : x.shape[1]] if self.learned_variance else out

    def raw(self, x: torch.Tensor, timestep) -> torch.Tensor:
        """The network output (ε, v or x₀ by ``prediction_type``) at x, timestep."""
        return self._call_unet(x, self._timestep(timestep), **self.unet_kwargs)

    # ---------------------------------------------------------------- conversions
    def _coefficients(self, timestep) -> tuple[float, float]:
        a = self._alphas[self._timestep(timestep)]
        return math.sqrt(a), math.sqrt(1.0 - a)

    def eps_and_x0(self, x: torch.Tensor, timestep) -> tuple[torch.Tensor, torch.Tensor]:
        """(ε̂, x̂₀) at x, timestep: eq. 2 and its v-prediction / sample equivalents."""
        out = self.raw(x, timestep)
        sa, sb = self._coefficients(timestep)  # √ᾱ, √(1−ᾱ)
        x = x.to(out.dtype)
        if self.prediction_type == "epsilon":
            return out, (x - sb * out) / sa
        if self.prediction_type == "v_prediction":
            return sa * out + sb * x, sa * x - sb * out
        return (x - sa * out) / sb, out  # "sample"

    def __call__(self, x: torch.Tensor, timestep) -> torch.Tensor:
        """ε̂(x, timestep): the ε-model protocol of :mod:`lococourse.models.ddim`."""
        return self.eps_and_x0(x, timestep)[0]

    def x0(self, x: torch.Tensor, timestep) -> torch.Tensor:
        """x̂₀(x, timestep) (eq. 2)."""
        return self.eps_and_x0(x, timestep)[1]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {type(self.unet).__name__} [{self.prediction_type}]>"


def check_embeds(e, name: str, unet: nn.Module, ref: torch.Tensor | None = None) -> torch.Tensor:
    """Prompt embeddings (1 or B, L, D) with D what the UNet takes; every set of the same (L, D)."""
    if not torch.is_tensor(e):
        raise TypeError(f"{name} must be a tensor of prompt embeddings (1 or B, L, D); got {type(e).__name__}")
    if e.dim() != 3:
        raise ValueError(f"{name} must have shape (1 or B, L, D); got {tuple(e.shape)}")
    check_finite(e, name)
    dim = config_value(unet, "encoder_hid_dim") or config_value(unet, "cross_attention_dim")
    if isinstance(dim, int) and e.shape[-1] != dim:
        raise ValueError(f"{name} has embedding size D = {e.shape[-1]} but the UNet takes {dim}")
    if ref is not None and e.shape[1:] != ref.shape[1:]:
        raise ValueError(f"{name} has shape {tuple(e.shape)}, not matching the prompt embeddings' (L, D) = "
                         f"{tuple(ref.shape[1:])}; pad the prompts to the same length")
    return e.detach()


class GuidedEps(UNetEps):
    """Classifier-free guidance for a text-conditioned UNet as an ε-model ``(x, timestep) → ε̃``:

        ε̃ = ε(∅) + s (ε(c) − ε(∅)) [+ m (ε(c_e) − ε(∅))]                    (eq. 3; eq. 12's edit term)

    with ``uncond`` = embeddings of the null prompt ∅ (c_n), ``cond`` of the prompt c (c_o), ``edit`` of the
    edit prompt c_e, s = ``guidance_scale``, m = ``edit_scale``.  Embeddings have shape (1 or B, L, D);
    all prompts run in one batched UNet call.  The weights sum to one, so combining the raw outputs
    (ε, v or x₀) and then converting equals combining the ε's.
    """

    def __init__(self, unet: nn.Module, cond: torch.Tensor, uncond: torch.Tensor, guidance_scale: float, *,
                 edit: torch.Tensor | None = None, edit_scale: float = 0.0, prediction_type: str | None = None,
                 schedule=SCHEDULE, jvp_safe: bool = True):
        super().__init__(unet, prediction_type, schedule, jvp_safe=jvp_safe)
        for value, nm in ((guidance_scale, "guidance_scale"), (edit_scale, "edit_scale")):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{nm} must be a finite number; got {value!r}")
        if edit is None and edit_scale != 0:
            raise ValueError(f"edit_scale = {edit_scale} needs edit prompt embeddings (edit=...); got edit=None")
        self.cond = check_embeds(cond, "cond", unet)
        self.uncond = check_embeds(uncond, "uncond", unet, self.cond)
        self.edit = None if edit is None else check_embeds(edit, "edit", unet, self.cond)
        self.guidance_scale, self.edit_scale = float(guidance_scale), float(edit_scale)

    def raw(self, x: torch.Tensor, timestep) -> torch.Tensor:
        """The guided combination of the network outputs for ∅, c (and c_e)."""
        k = self._timestep(timestep)
        embeds = [self.uncond, self.cond] + ([self.edit] if self.edit is not None else [])
        b = x.shape[0]
        for e, nm in zip(embeds, ("uncond", "cond", "edit")):
            if e.shape[0] not in (1, b):
                raise ValueError(f"{nm} has batch size {e.shape[0]}; expected 1 or the image batch size {b}")
        n = len(embeds)
        hidden = torch.cat([e.to(self.dtype).expand(b, *e.shape[1:]) for e in embeds])  # (n·B, L, D)
        out = self._call_unet(torch.cat([x] * n), k, encoder_hidden_states=hidden).chunk(n)
        guided = out[0] + self.guidance_scale * (out[1] - out[0])
        if self.edit is not None:
            guided = guided + self.edit_scale * (out[2] - out[0])
        return guided


# ---------------------------------------------------------------------------------------- PMPs
class UNetPMP:
    """The PMP x_t ↦ x̂₀ = (x_t − √(1−ᾱ) ε_θ(x_t, t))/√ᾱ of a diffusers UNet at time t (eq. 2).

    Args:
        unet: a diffusers UNet (``UNet2DModel``; ``UNet2DConditionModel`` with ``encoder_hidden_states``
            in ``unet_kwargs``), frozen and in eval mode.
        t: the time in (0, 1]; the UNet runs at timestep k = round(t·T) − 1 and ``self.t`` = (k+1)/T.
        prediction_type: "epsilon" | "v_prediction" | "sample"; None reads it from ``schedule`` if
            that is a diffusers scheduler, else "epsilon".
        schedule: :data:`lococourse.core.schedule.SCHEDULE` (default), another :class:`DDPMSchedule`, a
            diffusers scheduler (its ``alphas_cumprod``) or a 1-D tensor of ᾱ_k.
        shape: (C, H, W) of the input; default in_channels × sample_size² from the UNet's config.
        jvp_safe: run attention through :class:`~lococourse.models.attention.JvpSafeAttnProcessor`.

    Called on (B, C, H, W) (or one image (C, H, W)) it returns x̂₀ of the same shape, in the UNet's dtype.
    """

    def __init__(self, unet: nn.Module, t, prediction_type: str | None = None, schedule=SCHEDULE, *,
                 shape: Sequence[int] | None = None, jvp_safe: bool = True, **unet_kwargs):
        self._init_denoiser(UNetEps(unet, prediction_type, schedule, jvp_safe=jvp_safe, **unet_kwargs), t, shape)
        self.name = f"{type(unet).__name__} PMP [{self.denoiser.prediction_type}]"

    def _init_denoiser(self, denoiser: UNetEps, t, shape) -> None:
        self.denoiser, self.unet = denoiser, denoiser.unet
        self.timestep = _timestep_of_t(t, denoiser.num_train_timesteps)
        self.t = (self.timestep + 1) / denoiser.num_train_timesteps
        self.alpha_bar = float(denoiser.alphas_cumprod[self.timestep])
        self.shape = _unet_shape(self.unet, shape)
        self.out_shape = self.shape
        self.dtype = denoiser.dtype

    def _x0(self, x: torch.Tensor, name: str = "x_t") -> tuple[torch.Tensor, bool]:
        xb, single = check_image(x, self.shape, name, f"this {type(self.unet).__name__}")
        return self.denoiser.x0(xb, self.timestep), single

    def __call__(self, x_t: torch.Tensor) -> torch.Tensor:
        """x̂₀ = f_θ,t(x_t) (eq. 2), (B, C, H, W) → (B, C, H, W)."""
        x0, single = self._x0(x_t)
        return x0[0] if single else x0

    def eps(self, x_t: torch.Tensor) -> torch.Tensor:
        """ε̂_θ(x_t, t) (the guided ε̃ for :class:`GuidedPMP`)."""
        xb, single = check_image(x_t, self.shape, "x_t", f"this {type(self.unet).__name__}")
        e = self.denoiser(xb, self.timestep)
        return e[0] if single else e

    def __repr__(self) -> str:
        return f"<{self.name} at t={self.t:g} (timestep {self.timestep})>"


class Decoder:
    """ẑ₀ ↦ x̂₀ = Decoder(ẑ₀/scaling_factor + shift_factor) of a diffusers VAE (eq. 9), and its encoder."""

    def __init__(self, vae: nn.Module | None, latent_shape: tuple[int, int, int], jvp_safe: bool):
        if vae is None:
            raise ValueError("a latent PMP needs the VAE whose decoder maps ẑ₀ to pixels (x̂₀ = Decoder(ẑ₀), "
                             "eq. 9 of the paper); got vae=None")
        if not hasattr(vae, "decode"):
            raise TypeError(f"vae must be a diffusers autoencoder with .decode (e.g. AutoencoderKL); got {type(vae).__name__}")
        _check_inference_mode(vae, "VAE")
        lat = config_value(vae, "latent_channels")
        if lat is not None and lat != latent_shape[0]:
            raise ValueError(f"the VAE has latent_channels = {lat} but the UNet takes {latent_shape[0]} channels")
        self.vae, self.jvp_safe = vae, jvp_safe
        self.scaling_factor = float(config_value(vae, "scaling_factor", 1.0) or 1.0)
        shift = config_value(vae, "shift_factor", None)
        self.shift_factor = 0.0 if shift is None else float(shift)
        factor = 2 ** (len(config_value(vae, "block_out_channels", (0,))) - 1)
        c_out = config_value(vae, "out_channels", 3)
        self.image_shape = (int(c_out), latent_shape[1] * factor, latent_shape[2] * factor)
        self.dtype = _module_dtype(vae)

    def decode(self, z0: torch.Tensor) -> torch.Tensor:
        with _maybe_jvp_safe(self.vae, self.jvp_safe):
            z = (z0.to(self.dtype) / self.scaling_factor + self.shift_factor).contiguous()
            return self.vae.decode(z).sample

    def encode(self, x0: torch.Tensor) -> torch.Tensor:
        with _maybe_jvp_safe(self.vae, self.jvp_safe):
            z = self.vae.encode(x0.to(self.dtype).contiguous()).latent_dist.mode()
        return (z - self.shift_factor) * self.scaling_factor


class LatentPMP(UNetPMP):
    """The latent PMP z_t ↦ x̂₀ = Decoder((z_t − √(1−ᾱ) ε_θ(z_t, t))/√ᾱ)  (Appendix D.1, eq. 9).

    The input z_t (shape ``shape`` = latent (C, h, w)) is where edits live; the output (shape
    ``out_shape`` = image (3, H, W)) is where masks live (Appendix E.2).  Latents are unscaled by
    ``vae.config.scaling_factor`` (and shifted by ``shift_factor`` where the VAE has one) before
    decoding, as diffusers pipelines do.  Other arguments as for :class:`UNetPMP`.
    """

    def __init__(self, unet: nn.Module, vae: nn.Module | None, t, prediction_type: str | None = None,
                 schedule=SCHEDULE, *, shape: Sequence[int] | None = None, jvp_safe: bool = True, **unet_kwargs):
        super().__init__(unet, t, prediction_type, schedule, shape=shape, jvp_safe=jvp_safe, **unet_kwargs)
        self.decoder = Decoder(vae, self.shape, jvp_safe)
        self.vae, self.out_shape = vae, self.decoder.image_shape
        self.name = f"{type(unet).__name__} + {type(vae).__name__} decoder latent PMP [{self.denoiser.prediction_type}]"

    def latent_x0(self, z_t: torch.Tensor) -> torch.Tensor:
        """ẑ₀ (eq. 2 in latent space), before decoding."""
        z0, single = self._x0(z_t, "z_t")
        return z0[0] if single else z0

    def __call__(self, z_t: torch.Tensor) -> torch.Tensor:
        """x̂₀ = Decoder(ẑ₀) (eq. 9): (B, C, h, w) latents → (B, 3, H, W) images."""
        z0, single = self._x0(z_t, "z_t")
        x0 = self.decoder.decode(z0)
        return x0[0] if single else x0

    def decode(self, z0: torch.Tensor) -> torch.Tensor:
        """Decoder(z₀) for a batch of clean latents."""
        return self.decoder.decode(z0)

    def encode(self, x0: torch.Tensor) -> torch.Tensor:
        """z₀ = scaling_factor · (Encoder(x₀).mode − shift): the latent of an image, for DDIM inversion."""
        return self.decoder.encode(x0)


class GuidedPMP(UNetPMP):
    """The PMP of a text-to-image UNet under classifier-free guidance (eq. 3 in eq. 2):

        f^o(x_t) = (x_t − √(1−ᾱ) ε̃)/√ᾱ,   ε̃ = ε(x_t, t, ∅) + s (ε(x_t, t, c_o) − ε(x_t, t, ∅))   (eq. 11)
        f^e(x_t) = f^o(x_t) − √(1−ᾱ)/√ᾱ · m (ε(x_t, t, c_e) − ε(x_t, t, ∅))                          (eq. 12)

    f^e is f^o with the edit prompt as a second guidance term of weight m = ``edit_scale`` in ε̃.
    (Eq. 12 as printed adds m(ε_e − ε_n)/α_t, the same map with m rescaled by −√(1−ᾱ): m_printed =
    −√(1−ᾱ)·m.)  With ``vae`` given, ẑ₀ is decoded as in :class:`LatentPMP` (Appendix E.2–E.3:
    Stable Diffusion); without it the UNet is a pixel model (DeepFloyd IF).

    Args: ``cond``, ``uncond``, ``edit`` are prompt embeddings (1 or B, L, D) of c_o, the null prompt
    ∅ = c_n and c_e; ``guidance_scale`` is s; the rest as for :class:`UNetPMP`.
    """

    def __init__(self, unet: nn.Module, t, cond: torch.Tensor, uncond: torch.Tensor, guidance_scale: float, *,
                 edit: torch.Tensor | None = None, edit_scale: float = 0.0, vae: nn.Module | None = None,
                 prediction_type: str | None = None, schedule=SCHEDULE, shape: Sequence[int] | None = None,
                 jvp_safe: bool = True):
        denoiser = GuidedEps(unet, cond, uncond, guidance_scale, edit=edit, edit_scale=edit_scale,
                             prediction_type=prediction_type, schedule=schedule, jvp_safe=jvp_safe)
        self._init_denoiser(denoiser, t, shape)
        self.guidance_scale, self.edit_scale = denoiser.guidance_scale, denoiser.edit_scale
        self.decoder = None if vae is None else Decoder(vae, self.shape, jvp_safe)
        self.vae = vae
        if self.decoder is not None:
            self.out_shape = self.decoder.image_shape
        edit_txt = f", edit m={self.edit_scale:g}" if edit is not None else ""
        vae_txt = f" + {type(vae).__name__} decoder" if vae is not None else ""
        self.name = (f"{type(unet).__name__}{vae_txt} guided PMP [s={self.guidance_scale:g}{edit_txt}, "
                     f"{denoiser.prediction_type}]")

    def __call__(self, x_t: torch.Tensor) -> torch.Tensor:
        """f^o (or f^e with an edit prompt), decoded to pixels when a VAE is given."""
        x0, single = self._x0(x_t)
        if self.decoder is not None:
            x0 = self.decoder.decode(x0)
        return x0[0] if single else x0
