"""T-LOCO Edit: unsupervised and text-supervised editing in text-to-image diffusion models (§3.3; Appendix
E.2–E.3, Algorithms 3 and 4, eqs. 11–12; settings of Appendix G.3).

Three families, one interface (:class:`T2IModel`: a pipeline plus its prompts):

* ``"sd"``  — Stable Diffusion: latent z_t (4 × h × w); the PMP decodes ẑ₀ with the VAE, so the Jacobian
  maps latents to pixels and masks live in pixel space (:class:`~lococourse.models.adapters.GuidedPMP` with
  ``vae``).  DDIM on the scheduler's "leading" grid (the paper: 100 steps), CFG scale s (eq. 3).
* ``"if"``  — DeepFloyd IF stage I: pixels; the learned-variance half of the UNet's channels is split
  off (:class:`~lococourse.models.adapters.GuidedPMP` without ``vae``).  Its dynamic thresholding is not used.
* ``"lcm"`` — Latent Consistency Model: latent; guidance enters through the UNet's w-embedding
  (``timestep_cond``) instead of CFG, sampling is LCM's 4-step multistep consistency sampling (fresh
  seeded noise between steps), the PMP is the consistency function c_out·x̂₀ + c_skip·z_t decoded by
  the VAE (:class:`LCMPMP`), and the edit happens at the second step (G.3).

PMPs: ``pmp_source(t)`` is f^o (eq. 11); ``pmp_edit(t)`` is f^e (eq. 12) = f^o with the extra guidance
term m(ε(c_e) − ε(∅)) (for LCM: added to the w-guided ε(c_o); our reading of eq. 12 for a model without
CFG).  All PMPs here return float32 whatever the network dtype, so the power method and projections run
in float32; they never form a d × d matrix (projections use V̄ of shape d × r').

Algorithms (both: x_T seeded; x_t = DDIM(x_T, 1 → t) with the source prompt; one edit at t; the rest of
the sampling with the source prompt only; λ = 0 gives exactly the plain sample):

* :func:`t_loco_unsupervised` — Algorithm 3: top-r SVD of ∂P_Ω f^o/∂x_t (v = Ṽ[:, k]), nullspace
  projection from the top-r' of ∂P_{Ω^c} f^o/∂x_t, normalise, x_t + λ v_p.
* :func:`t_loco_text` — Algorithm 4: d = P_Ω(f^e(x_t) − f^o(x_t)) (held fixed), v = J_eᵀ d in one VJP,
  the same nullspace projection from f^o on Ω^c, normalise, x_t + λ v_p.

Speed/memory options for real sizes: ``device``/``dtype`` of :meth:`T2IPipeline.to` (fp16/bf16 opt-in,
CUDA only), ``chunk`` (at most this many JVP/VJP directions per batched call), ``jacobian_pool``
(avg-pool the decoded output by this factor before masking: the Jacobian's output and the power
method's U shrink by its square; the decoder itself still runs at full resolution), ``forward_mode``
of the Jacobian operator (default "transpose": J·V by double backward, no forward-mode trace; "jvp" or
"linearize" where an op lacks a double backward).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from lococourse.core.checks import check_device
from lococourse.models.adapters import (
    Decoder,
    GuidedEps,
    GuidedPMP,
    UNetEps,
    UNetPMP,
    alphas_cumprod_of,
    check_embeds,
    check_image,
    config_value,
)
from lococourse.models.ddim import ddim_grid, ddim_sample

FAMILIES = ("sd", "if", "lcm")

#: Per family: CFG scale s (LCM: the w of its embedding), sampling steps, edit time (LCM: edit step index),
#: λ ranges (Appendix G.3; the guidance scales are the diffusers pipelines' defaults).
FAMILY_DEFAULTS = {
    "sd": dict(guidance_scale=7.5, num_steps=100, edit_t=0.7, strength=(-5.0, 5.0), text_strength=(-10.0, 10.0)),
    "if": dict(guidance_scale=7.0, num_steps=100, edit_t=0.75, strength=(-15.0, 15.0), text_strength=(-50.0, 50.0)),
    "lcm": dict(guidance_scale=8.0, num_steps=4, edit_step=1, strength=(-5.0, 5.0), text_strength=(-10.0, 10.0)),
}

HALF = (torch.float16, torch.bfloat16)


def _check_family(family) -> str:
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; T-LOCO supports {', '.join(repr(f) for f in FAMILIES)} "
                         "(Stable Diffusion, DeepFloyd IF stage I, Latent Consistency Model)")
    return family


def check_device_dtype(device, dtype) -> tuple[torch.device, torch.dtype]:
    """Half precision (fp16/bf16) is opt-in and CUDA-only; anything else runs in float32 (or float64).  The device
    must exist here (``cuda`` on a machine without CUDA is refused at once, not by an AssertionError inside torch)."""
    device = check_device(device)
    if dtype not in (torch.float32, torch.float64, *HALF):
        raise ValueError(f"dtype must be torch.float32, torch.float64, torch.float16 or torch.bfloat16; got {dtype}")
    if dtype in HALF and device.type != "cuda":
        raise ValueError(f"dtype={dtype} is opt-in on CUDA only; on {device.type!r} use torch.float32 "
                         "(half-precision UNet/VAE calls on a CPU are slow or unsupported)")
    return device, dtype


def guidance_scale_embedding(w: float, dim: int, dtype=torch.float32) -> torch.Tensor:
    """LCM's w-embedding of the guidance scale (the pipeline's ``get_guidance_scale_embedding(w − 1)``): (1, dim)."""
    w = torch.tensor([float(w) - 1.0]) * 1000.0
    half = dim // 2
    freq = torch.exp(torch.arange(half, dtype=dtype) * -(math.log(10000.0) / (half - 1)))
    emb = w.to(dtype)[:, None] * freq[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=1)
    return F.pad(emb, (0, 1)) if dim % 2 == 1 else emb


# ---------------------------------------------------------------------------------------- LCM adapters
class LCMEps(UNetEps):
    """An LCM UNet as an ε-model: ε̃ = ε(x, k, c_o; w) [+ m (ε(x, k, c_e; w) − ε(x, k, ∅; w))].

    Guidance is the UNet's w-embedding (``timestep_cond``, shape (1, time_cond_proj_dim)); the optional
    edit term is eq. 12's, at the same w.  All prompts run in one batched UNet call.
    """

    def __init__(self, unet: nn.Module, cond: torch.Tensor, w_embedding: torch.Tensor, *, uncond=None, edit=None,
                 edit_scale: float = 0.0, schedule=None, jvp_safe: bool = True):
        super().__init__(unet, "epsilon", schedule, jvp_safe=jvp_safe)
        if config_value(unet, "time_cond_proj_dim") is None:
            raise ValueError("an LCM UNet needs time_cond_proj_dim in its config (the w-embedding of the guidance scale)")
        if edit is not None and uncond is None:
            raise ValueError("the edit term m(ε(c_e) − ε(∅)) needs the null prompt's embeddings (uncond=...)")
        self.cond = check_embeds(cond, "cond", unet)
        self.uncond = None if uncond is None else check_embeds(uncond, "uncond", unet, self.cond)
        self.edit = None if edit is None else check_embeds(edit, "edit", unet, self.cond)
        self.w_embedding, self.edit_scale = w_embedding.detach(), float(edit_scale)

    def raw(self, x: torch.Tensor, timestep) -> torch.Tensor:
        k = self._timestep(timestep)
        embeds = [self.cond] + ([self.uncond, self.edit] if self.edit is not None else [])
        b, n = x.shape[0], len(embeds)
        hidden = torch.cat([e.to(self.dtype).expand(b, *e.shape[1:]) for e in embeds])  # (n·B, L, D)
        w = self.w_embedding.to(self.dtype).expand(n * b, -1)
        out = self._call_unet(torch.cat([x] * n), k, encoder_hidden_states=hidden, timestep_cond=w).chunk(n)
        return out[0] if self.edit is None else out[0] + self.edit_scale * (out[2] - out[1])


def lcm_scalings(timestep: int, timestep_scaling: float = 10.0, sigma_data: float = 0.5) -> tuple[float, float]:
    """(c_skip, c_out) of LCM's boundary condition at an integer timestep (diffusers' LCMScheduler)."""
    s = timestep * timestep_scaling
    return sigma_data ** 2 / (s ** 2 + sigma_data ** 2), s / (s ** 2 + sigma_data ** 2) ** 0.5


class LCMPMP(UNetPMP):
    """LCM's PMP at time t: z_t ↦ Decoder(c_out·ẑ₀ + c_skip·z_t), ẑ₀ by eq. 2 from the w-guided ε (:class:`LCMEps`)."""

    def __init__(self, unet, vae, t, cond, w_embedding, *, uncond=None, edit=None, edit_scale: float = 0.0,
                 schedule=None, timestep_scaling: float = 10.0, jvp_safe: bool = True):
        eps = LCMEps(unet, cond, w_embedding, uncond=uncond, edit=edit, edit_scale=edit_scale, schedule=schedule,
                     jvp_safe=jvp_safe)
        self._init_denoiser(eps, t, None)
        self.c_skip, self.c_out = lcm_scalings(self.timestep, timestep_scaling)
        self.decoder = Decoder(vae, self.shape, jvp_safe)
        self.vae, self.out_shape = vae, self.decoder.image_shape
        self.name = f"LCM consistency PMP{' + edit' if edit is not None else ''}"

    def __call__(self, z_t: torch.Tensor) -> torch.Tensor:
        zb, single = check_image(z_t, self.shape, "z_t", "this LCM UNet")
        z0 = self.denoiser.x0(zb, self.timestep)
        x0 = self.decoder.decode(self.c_out * z0 + self.c_skip * zb.to(z0.dtype))
        return x0[0] if single else x0


class _Float32PMP:
    """A PMP whose output is float32 (networks may run in fp16/bf16; the linear algebra does not)."""

    def __init__(self, f):
        self.f = f
        for a in ("t", "shape", "out_shape", "name", "timestep"):
            setattr(self, a, getattr(f, a, None))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.f(x).float()

    def __repr__(self) -> str:
        return f"<float32 {self.f!r}>"


# ---------------------------------------------------------------------------------------- samplers
class _DDIMSampler:
    """DDIM on the scheduler's leading grid: x_t = DDIM(x_T, 1 → t), x₀ = DDIM(x_t, t → 0) (η = 0)."""

    def __init__(self, eps_model, scheduler, num_steps: int):

        self.eps, self.grid = eps_model, ddim_grid(num_steps, scheduler)

    def snap(self, t) -> float:
        return self.grid.snap(t)

    def to_t(self, x_T, t):

        return ddim_sample(self.eps, x_T, 1.0, t, grid=self.grid)

    def finish(self, x_t, t):

        return ddim_sample(self.eps, x_t, t, 0.0, grid=self.grid)


class _LCMSampler:
    """LCM multistep sampling (diffusers' LCMScheduler.step): at timestep k_i, z ↦ c_out ẑ₀ + c_skip z, then
    re-noised to k_{i+1} with the i-th seeded noise (not after the last step).  Times t_i = (k_i + 1)/T."""

    def __init__(self, eps_model, scheduler, num_steps: int, noises: torch.Tensor):

        scheduler.set_timesteps(num_steps)
        self.eps, self.timesteps = eps_model, [int(k) for k in scheduler.timesteps]
        self.alphas = alphas_cumprod_of(scheduler).tolist()
        self.T = len(self.alphas)
        self.scaling = float(getattr(scheduler.config, "timestep_scaling", 10.0))
        self.noises = noises  # (num_steps − 1, 1, *S)
        self.t = [(k + 1) / self.T for k in self.timesteps]

    def index(self, t) -> int:
        if t >= 1.0:
            return 0
        return min(range(len(self.t)), key=lambda i: abs(self.t[i] - float(t)))

    def snap(self, t) -> float:
        return self.t[self.index(t)]

    def _run(self, x, start: int, stop: int):
        for i in range(start, stop):
            k = self.timesteps[i]
            a = self.alphas[k]
            eps = self.eps(x, k)
            z0 = (x - math.sqrt(1 - a) * eps) / math.sqrt(a)
            c_skip, c_out = lcm_scalings(k, self.scaling)
            x = c_out * z0 + c_skip * x
            if i < len(self.timesteps) - 1:
                a_next = self.alphas[self.timesteps[i + 1]]
                x = math.sqrt(a_next) * x + math.sqrt(1 - a_next) * self.noises[i].to(x)
        return x

    @torch.no_grad()
    def to_t(self, x_T, t):
        return self._run(x_T, 0, self.index(t))

    @torch.no_grad()
    def finish(self, x_t, t):
        return self._run(x_t, self.index(t), len(self.timesteps))


# ---------------------------------------------------------------------------------------- pipeline
@dataclass
class T2IPipeline:
    """The networks of one text-to-image model: UNet, VAE (None for IF), text encoder, tokenizer, scheduler.

    ``guidance_scale`` (s; LCM: w) and ``num_steps`` default to :data:`FAMILY_DEFAULTS`.
    """

    family: str
    unet: nn.Module
    vae: nn.Module | None
    text_encoder: nn.Module
    tokenizer: object
    scheduler: object
    name: str = ""
    guidance_scale: float | None = None
    num_steps: int | None = None
    max_length: int | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32

    def __post_init__(self):
        _check_family(self.family)
        defaults = FAMILY_DEFAULTS[self.family]
        self.guidance_scale = float(defaults["guidance_scale"] if self.guidance_scale is None else self.guidance_scale)
        self.num_steps = int(defaults["num_steps"] if self.num_steps is None else self.num_steps)
        self.max_length = int(self.max_length or getattr(self.tokenizer, "model_max_length", 77))
        if self.family in ("sd", "lcm") and self.vae is None:
            raise ValueError(f"a {self.family!r} pipeline is a latent model: it needs its VAE (vae=None given)")
        if self.family == "if" and self.vae is not None:
            raise ValueError("an 'if' (DeepFloyd IF stage I) pipeline works in pixels: pass vae=None")
        if self.family == "lcm" and config_value(self.unet, "time_cond_proj_dim") is None:
            raise ValueError("an 'lcm' UNet needs time_cond_proj_dim (the w-embedding); this UNet has none")
        self.device, self.dtype = check_device_dtype(self.device, self.dtype)
        self._lcm_w = None

    # ---------------------------------------------------------------- memory
    def enable_recompute(self) -> "T2IPipeline":
        """Recompute the UNet's and the VAE's blocks in each backward pass instead of storing their activations
        (:mod:`lococourse.models.recompute`; in place).  Same J·v and Jᵀ·u to float rounding; what the Jacobian of
        a real-size PMP stores shrinks to the blocks' inputs (SD-2.1-base: ≈ 13.5 GB → ≈ 1.7 GB).  T-LOCO then
        runs its Jacobians with ``forward_mode="jvp"`` (the only mode recomputation supports)."""
        from lococourse.models.recompute import enable_recompute

        for m in (self.unet, self.vae):
            if m is not None:
                enable_recompute(m)
        return self

    def disable_recompute(self) -> "T2IPipeline":
        """Store every activation again (the default; in place)."""
        from lococourse.models.recompute import disable_recompute

        for m in (self.unet, self.vae):
            if m is not None:
                disable_recompute(m)
        return self

    @property
    def recompute(self) -> bool:
        """Whether :meth:`enable_recompute` is on (for the UNet)."""
        from lococourse.models.recompute import is_recompute_enabled

        return is_recompute_enabled(self.unet)

    def to(self, device="cpu", dtype: torch.dtype = torch.float32) -> "T2IPipeline":
        """Move the networks (in place): fp16/bf16 only on CUDA (a clear error otherwise)."""
        device, dtype = check_device_dtype(device, dtype)
        for m in (self.unet, self.vae, self.text_encoder):
            if m is not None:
                m.to(device=device, dtype=dtype)
        self.device, self.dtype = device, dtype
        return self

    # ---------------------------------------------------------------- shapes
    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of x_t / z_t: where directions live."""
        c = self.unet.config
        size = c.sample_size if isinstance(c.sample_size, int) else c.sample_size[0]
        return (int(c.in_channels), int(size), int(size))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(3, H, W) of the decoded output: where masks live."""
        if self.vae is None:
            return self.latent_shape
        f = 2 ** (len(self.vae.config.block_out_channels) - 1)
        c, h, w = self.latent_shape
        return (int(self.vae.config.out_channels), h * f, w * f)

    # ---------------------------------------------------------------- prompts and noise
    @torch.no_grad()
    def encode(self, prompt, *, name: str = "prompt", allow_empty: bool = False) -> torch.Tensor:
        """Prompt embeddings (1, L, D) (L = ``max_length``, padded); an empty prompt only where allowed (∅)."""
        if not isinstance(prompt, str):
            raise TypeError(f"{name} must be a string; got {type(prompt).__name__}")
        if not allow_empty and not prompt.strip():
            raise ValueError(f"{name} must be a non-empty text prompt; got {prompt!r}")
        tok = self.tokenizer(prompt, padding="max_length", max_length=self.max_length, truncation=True,
                             return_tensors="pt")
        kw = {"attention_mask": tok.attention_mask.to(self.device)} if self.family == "if" else {}
        return self.text_encoder(tok.input_ids.to(self.device), **kw)[0].float()

    def noise(self, seed: int) -> torch.Tensor:
        """x_T ~ N(0, I) of shape (1, *latent_shape) from ``torch.Generator().manual_seed(seed)`` (float32)."""
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer; got {seed!r}")
        g = torch.Generator().manual_seed(seed)
        return torch.randn(1, *self.latent_shape, generator=g).to(self.device)

    def with_prompts(self, prompt: str, edit_prompt: str | None = None, *, edit_scale: float | None = None,
                     guidance_scale: float | None = None) -> "T2IModel":
        """The :class:`T2IModel` of a source prompt c_o (and optionally an edit prompt c_e, weight m)."""
        return T2IModel(self, prompt, edit_prompt, edit_scale=edit_scale, guidance_scale=guidance_scale)

    def w_embedding(self, guidance_scale: float) -> torch.Tensor:
        return guidance_scale_embedding(guidance_scale, self.unet.config.time_cond_proj_dim).to(self.device)


class T2IModel:
    """A pipeline with its prompts: ``pmp_source(t)`` (f^o, eq. 11), ``pmp_edit(t)`` (f^e, eq. 12, weight m),
    ``eps_model()`` (the source prompt's guided ε for DDIM), ``pmp(t)`` = ``pmp_source(t)``.

    ``shape`` is the input (latent for sd/lcm, pixels for if), ``out_shape`` the PMP's pixel output.
    ``edit_scale`` m defaults to the guidance scale s (our choice; the paper gives no value).
    """

    def __init__(self, pipe: T2IPipeline, prompt: str, edit_prompt: str | None = None, *,
                 edit_scale: float | None = None, guidance_scale: float | None = None):
        self.pipe, self.family, self.name = pipe, pipe.family, pipe.name
        self.prompt, self.edit_prompt = prompt, edit_prompt
        self.guidance_scale = float(pipe.guidance_scale if guidance_scale is None else guidance_scale)
        self.edit_scale = float(self.guidance_scale if edit_scale is None else edit_scale)
        for v, nm in ((self.guidance_scale, "guidance_scale"), (self.edit_scale, "edit_scale")):
            if not math.isfinite(v):
                raise ValueError(f"{nm} must be a finite number; got {v}")
        self.cond = pipe.encode(prompt, name="prompt")
        self.uncond = pipe.encode("", name="null prompt", allow_empty=True)
        self.edit = None if edit_prompt is None else pipe.encode(edit_prompt, name="edit_prompt")
        self.shape, self.out_shape = pipe.latent_shape, pipe.image_shape

    def _w(self):
        return self.pipe.w_embedding(self.guidance_scale)

    def eps_model(self):
        """The guided ε-model (x, timestep) ↦ ε̃ with the source prompt only (what DDIM/LCM sampling uses)."""
        p = self.pipe
        if self.family == "lcm":
            return LCMEps(p.unet, self.cond, self._w(), schedule=p.scheduler)
        return GuidedEps(p.unet, self.cond, self.uncond, self.guidance_scale, schedule=p.scheduler)

    def _pmp(self, t, edit: bool):
        p, kw = self.pipe, {}
        if edit:
            if self.edit is None:
                raise ValueError("pmp_edit needs an edit prompt c_e: make the model with with_prompts(prompt, edit_prompt)")
            kw = dict(edit=self.edit, edit_scale=self.edit_scale)
        if self.family == "lcm":
            f = LCMPMP(p.unet, p.vae, t, self.cond, self._w(), uncond=self.uncond, schedule=p.scheduler,
                       timestep_scaling=float(getattr(p.scheduler.config, "timestep_scaling", 10.0)), **kw)
        else:
            f = GuidedPMP(p.unet, t, self.cond, self.uncond, self.guidance_scale, vae=p.vae, schedule=p.scheduler, **kw)
        return _Float32PMP(f)

    def pmp_source(self, t):
        """f^o at t (eq. 11; LCM: the w-guided consistency function), decoded to pixels for latent families."""
        return self._pmp(t, False)

    def pmp_edit(self, t):
        """f^e at t (eq. 12): f^o with the edit prompt's guidance term of weight m = ``edit_scale``."""
        return self._pmp(t, True)

    pmp = pmp_source

    def sampler(self, seed: int):
        """The family's sampler with the source prompt (LCM: with the seed's inter-step noises)."""
        p = self.pipe
        if self.family == "lcm":
            g = torch.Generator().manual_seed(seed)
            torch.randn(1, *self.shape, generator=g)  # x_T comes first from the same generator
            noises = torch.randn(p.num_steps - 1, 1, *self.shape, generator=g)
            return _LCMSampler(self.eps_model(), p.scheduler, p.num_steps, noises)
        return _DDIMSampler(self.eps_model(), p.scheduler, p.num_steps)

    @torch.no_grad()
    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        """Pixels of clean samples (B, *shape) → (B, *out_shape), float32."""
        if self.pipe.vae is None:
            return x0.float()
        vae = self.pipe.vae
        return Decoder(vae, self.shape, True).decode(x0).float()

    def default_t(self) -> float:
        d = FAMILY_DEFAULTS[self.family]
        if self.family == "lcm":
            return self.sampler(0).t[d["edit_step"]]
        return d["edit_t"]

    def __repr__(self) -> str:
        e = f", edit={self.edit_prompt!r} m={self.edit_scale:g}" if self.edit is not None else ""
        return f"<T2IModel {self.name or self.family} prompt={self.prompt!r}{e} s={self.guidance_scale:g}>"


