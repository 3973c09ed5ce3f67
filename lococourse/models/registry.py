"""Model registry: names → sources, in one place.

Two kinds of model:

* **course** models, trained by our recipes (``synthetic``) and shipped inside the package
  as diffusers folders with safetensors weights (``lococourse/assets/models/<name>/``); always
  available offline.  They are discovered from their ``card.json``.
* **hub** checkpoints the paper uses, loaded from the Hugging Face hub through diffusers.  Without a
  network (or with ``HF_HUB_OFFLINE=1``) and without a local copy in the Hugging Face cache, loading
  fails *at once* with :class:`ModelNotAvailableError` saying what is missing and how to get it.

A local diffusers folder (a path) loads too.  Weights load through safetensors only.
"""
from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from lococourse.models.adapters import UNetEps, UNetPMP
from lococourse.models.t2i import FAMILIES, T2IPipeline, check_device_dtype
from lococourse.models.tiny import TINY_MODELS, tiny_pipeline

__all__ = ["ModelSpec", "ModelNotAvailableError", "HUB_MODELS", "course_models", "all_models", "get_spec",
           "availability", "load_unet", "load_model", "LoadedModel", "ASSETS"]

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "models"
HUB_HOST = "huggingface.co"
#: The weights file of a diffusers model folder (safetensors only).
WEIGHTS = "diffusion_pytorch_model.safetensors"


class ModelNotAvailableError(OSError):
    """A registered model cannot be loaded here; the message says what is missing and how to get it."""


@dataclass(frozen=True)
class ModelSpec:
    """What the paper (or our recipe) uses a model for, and where it loads from."""

    name: str
    source: str  # hub repo id, or a folder
    kind: str  # "course" | "hub" | "local"
    family: str  # "unet2d" (pixel DDPM) | "sd" (latent, text) | "if" (pixel, text, learned variance) | "lcm"
    resolution: int  # image side in pixels
    channels: int = 3
    latent_shape: tuple | None = None  # (C, H, W) of the latent for latent models
    edit_t: float | None = None  # the paper's edit time (Appendix G)
    strength: tuple = (-15.0, 15.0)  # λ range the paper uses for unsupervised edits
    text_strength: tuple | None = None  # λ range for text-supervised edits (Appendix G.3)
    subfolder: str | None = None  # where the UNet lives inside the repo
    notes: str = ""
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


#: The paper's checkpoints (Appendix G): resolution, edit time t and λ range per model.
HUB_MODELS: dict[str, ModelSpec] = {s.name: s for s in [
    ModelSpec("ddpm-celebahq-256", "google/ddpm-ema-celebahq-256", "hub", "unet2d", 256, edit_t=0.6,
              notes="CelebA-HQ faces; edit t = 0.6 (G.1)"),
    ModelSpec("ddpm-church-256", "google/ddpm-ema-church-256", "hub", "unet2d", 256, edit_t=0.6,
              notes="LSUN church; edit t = 0.6 (G.1)"),
    ModelSpec("ddpm-bedroom-256", "google/ddpm-ema-bedroom-256", "hub", "unet2d", 256, edit_t=0.6,
              notes="LSUN bedroom; the G.1 settings of the other LSUN model"),
    ModelSpec("sd-2.1-base", "stabilityai/stable-diffusion-2-1-base", "hub", "sd", 512, 3, (4, 64, 64), 0.7,
              (-5.0, 5.0), (-10.0, 10.0), "unet", "Stable Diffusion 2.1 base; edit t = 0.7 (G.3)"),
    ModelSpec("deepfloyd-if-i-m", "DeepFloyd/IF-I-M-v1.0", "hub", "if", 64, 3, None, 0.75,
              (-15.0, 15.0), (-50.0, 50.0), "unet", "DeepFloyd IF stage I (64 px, learned variance); edit t = 0.75"),
    ModelSpec("lcm-dreamshaper-v7", "SimianLuo/LCM_Dreamshaper_v7", "hub", "lcm", 512, 3, (4, 64, 64), None,
              (-5.0, 5.0), (-10.0, 10.0), "unet", "Latent Consistency Model, 4 steps, edit at the second step"),
]}


def course_models() -> dict[str, ModelSpec]:
    """The course models shipped in ``lococourse/assets/models``, read from their model cards."""
    out = {}
    for card in sorted(ASSETS.glob("*/card.json")):
        c = json.loads(card.read_text())
        name = c.get("name", card.parent.name)
        shape = c.get("shape") or [c.get("channels", 3), c.get("resolution"), c.get("resolution")]
        data = c.get("data", "")
        notes = data.get("generator", "") if isinstance(data, dict) else str(data)
        out[name] = ModelSpec(
            name=name, source=str(card.parent), kind="course", family="unet2d", resolution=int(shape[-1]),
            channels=int(shape[0]), edit_t=c.get("edit_t", 0.6 if "faces" in name else None),
            strength=tuple(c.get("strength", (-15.0, 15.0))), notes=notes,
            extra={k: c[k] for k in ("prediction_type", "params", "steps", "min_rank_ratio", "argmin_t") if k in c},
        )
    return out


def load_card(name_or_path: str | Path) -> dict:
    """The model card (card.json) of a course model by name, or of a model folder by path."""
    path = Path(name_or_path)
    if not (path / "card.json").exists():
        if str(name_or_path) not in course_models():
            raise ValueError(f"no course model named {str(name_or_path)!r} and no card.json in that folder; "
                             f"course models: {', '.join(sorted(course_models()))}")
        path = ASSETS / str(name_or_path)
    return json.loads((path / "card.json").read_text())


def all_models() -> dict[str, ModelSpec]:
    return {**course_models(), **HUB_MODELS}


def get_spec(name_or_path: str) -> ModelSpec:
    """The spec of a registered name, or of a local diffusers folder given by path."""
    models = all_models()
    if name_or_path in models:
        return models[name_or_path]
    p = Path(name_or_path)
    if p.is_dir():
        cfg = p / "config.json" if (p / "config.json").exists() else p / "unet" / "config.json"
        if not cfg.exists():
            raise ModelNotAvailableError(f"{p} is a folder but holds no diffusers config.json (nor unet/config.json)")
        c = json.loads(cfg.read_text())
        size = c.get("sample_size", 0)
        size = size[0] if isinstance(size, (list, tuple)) else size
        extra = {}
        if (p / "card.json").exists():  # a folder exported by a recipe (or a copied course model): trust its card
            card = json.loads((p / "card.json").read_text())
            extra = {k: card[k] for k in ("prediction_type",) if k in card}
        return ModelSpec(p.name, str(p), "local", "unet2d", int(size), int(c.get("in_channels", 3)),
                         subfolder="unet" if cfg.parent.name == "unet" else None, extra=extra)
    raise ValueError(f"unknown model {name_or_path!r}; registered models: {', '.join(sorted(models))} "
                     "(or give the path of a local diffusers folder)")


def cached_config(spec: ModelSpec) -> str | None:
    """Path of the model's config in the local Hugging Face cache, or None (no network is used)."""
    from huggingface_hub import try_to_load_from_cache

    fname = f"{spec.subfolder}/config.json" if spec.subfolder else "config.json"
    hit = try_to_load_from_cache(spec.source, fname)
    return hit if isinstance(hit, str) else None


def hub_reachable(timeout: float = 3.0) -> tuple[bool, str]:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False, "HF_HUB_OFFLINE is set"
    try:
        socket.create_connection((HUB_HOST, 443), timeout=timeout).close()
        return True, ""
    except OSError as e:
        return False, f"{HUB_HOST} is unreachable ({type(e).__name__}: {e})"


def availability(spec: ModelSpec, probe_network: bool = False) -> tuple[bool, str]:
    """(available now, where it would load from / why not).  Never waits on a network unless asked."""
    if spec.kind in ("course", "local"):
        ok = Path(spec.source).is_dir()
        return ok, spec.source if ok else f"missing folder {spec.source}"
    cached = cached_config(spec)
    if cached:
        return True, f"Hugging Face cache ({Path(cached).parent})"
    if probe_network:
        ok, why = hub_reachable()
        return (True, f"hub: {spec.source}") if ok else (False, f"not in the local cache and {why}")
    return False, "not in the local Hugging Face cache (needs a download from the hub)"


def _how_to_get(spec: ModelSpec) -> str:
    return (f"To use it, run on a machine with network access: `huggingface-cli download {spec.source}` "
            f"(or `python -c \"from diffusers import DiffusionPipeline; DiffusionPipeline.from_pretrained('{spec.source}')\"`), "
            "then load it here from the Hugging Face cache or pass the downloaded folder as the model path.")


def load_unet(name_or_path: str, torch_dtype=None):
    """Load the UNet of a registered model or local folder (safetensors only), frozen and in eval mode."""
    from diffusers import UNet2DConditionModel, UNet2DModel

    spec = get_spec(name_or_path)
    cls = UNet2DModel if spec.family == "unet2d" else UNet2DConditionModel
    kw = {"use_safetensors": True, "low_cpu_mem_usage": False}
    if torch_dtype is not None:
        kw["torch_dtype"] = torch_dtype
    if spec.subfolder:
        kw["subfolder"] = spec.subfolder
    if spec.kind == "hub":
        if cached_config(spec):
            kw["local_files_only"] = True
        else:
            ok, why = hub_reachable()
            if not ok:
                raise ModelNotAvailableError(
                    f"model {spec.name!r} ({spec.source}) is not available: it is not in the local Hugging Face "
                    f"cache and {why}. {_how_to_get(spec)}")
    try:
        unet = cls.from_pretrained(spec.source, **kw)
    except (OSError, EnvironmentError) as e:
        raise ModelNotAvailableError(f"could not load model {spec.name!r} from {spec.source}: {e}. "
                                     f"{_how_to_get(spec) if spec.kind == 'hub' else ''}") from e
    unet.requires_grad_(False).eval()
    return unet


def _prediction_type_of(spec: ModelSpec, unet) -> str:
    """The model's parameterisation: the course card, else a scheduler config beside the weights, else ε."""
    if "prediction_type" in spec.extra:
        return spec.extra["prediction_type"]
    for cand in (Path(spec.source) / "scheduler_config.json", Path(spec.source) / "scheduler" / "scheduler_config.json"):
        if cand.exists():
            return json.loads(cand.read_text()).get("prediction_type", "epsilon")
    return "epsilon"


@dataclass
class LoadedModel:
    """A loaded pixel-space model with what the course needs of it: its PMP at any t and its ε-model."""

    spec: ModelSpec
    unet: object
    prediction_type: str

    @property
    def name(self) -> str:
        """The registered name (a :class:`~lococourse.core.interfaces.DiffusionModel` has one)."""
        return self.spec.name

    @property
    def shape(self) -> tuple[int, int, int]:
        c = self.unet.config
        size = c.sample_size if isinstance(c.sample_size, int) else c.sample_size[0]
        return (c.in_channels, size, size)

    def pmp(self, t):
        """The PMP x_t ↦ x̂₀ at time t (eq. 2)."""

        return UNetPMP(self.unet, t, self.prediction_type)

    def eps_model(self):
        """The ε-model (x, timestep) ↦ ε̂ for DDIM."""

        return UNetEps(self.unet, self.prediction_type)


def load_model(name_or_path: str, torch_dtype=None) -> LoadedModel:
    """Load a registered pixel-space model (course, hub ``unet2d`` or a local folder) by name."""
    spec = get_spec(name_or_path)
    if spec.family != "unet2d":
        raise ValueError(f"model {spec.name!r} is a {spec.family!r} text-to-image model; "
                         "load_model() handles unconditional pixel-space models (family 'unet2d')")
    unet = load_unet(name_or_path, torch_dtype)
    return LoadedModel(spec, unet, _prediction_type_of(spec, unet))


# ---------------------------------------------------------------------------------------- text-to-image pipelines (T-LOCO)
def load_t2i(name: str, *, device="cpu", dtype: torch.dtype = torch.float32, seed: int = 0,
             num_steps: int | None = None) -> T2IPipeline:
    """A pipeline by name: ``tiny-sd``/``tiny-if``/``tiny-lcm`` (random weights, offline), or a registry hub
    model of family sd/if/lcm (``sd-2.1-base``, ``deepfloyd-if-i-m``, ``lcm-dreamshaper-v7``), loaded from the
    local Hugging Face cache or the hub; unavailable → :class:`~lococourse.models.registry.ModelNotAvailableError`."""
    check_device_dtype(device, dtype)

    if name in TINY_MODELS:
        pipe = tiny_pipeline(name, seed, num_steps=num_steps)
        return pipe if (torch.device(device), dtype) == (pipe.device, pipe.dtype) else pipe.to(device, dtype)

    spec = get_spec(name)
    if spec.family not in FAMILIES:
        raise ValueError(f"model {spec.name!r} has family {spec.family!r}; T-LOCO needs a text-to-image model of family "
                         f"{', '.join(FAMILIES)} (e.g. sd-2.1-base, deepfloyd-if-i-m, lcm-dreamshaper-v7, or tiny-sd)")
    unet = load_unet(name, torch_dtype=dtype)  # raises ModelNotAvailableError when neither cached nor reachable
    return _load_rest(spec, unet, device, dtype, num_steps)


def _load_rest(spec, unet, device, dtype, num_steps):  # pragma: no cover - needs the hub checkpoints
    from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, LCMScheduler
    from transformers import AutoTokenizer, CLIPTextModel, T5EncoderModel


    kw = {"local_files_only": True} if cached_config(spec) else {}
    vae = None if spec.family == "if" else AutoencoderKL.from_pretrained(
        spec.source, subfolder="vae", use_safetensors=True, torch_dtype=dtype, **kw).requires_grad_(False).eval()
    enc_cls = T5EncoderModel if spec.family == "if" else CLIPTextModel
    enc = enc_cls.from_pretrained(spec.source, subfolder="text_encoder", use_safetensors=True, torch_dtype=dtype,
                                  **kw).requires_grad_(False).eval()
    tok = AutoTokenizer.from_pretrained(spec.source, subfolder="tokenizer", **kw)
    sched_cls = {"sd": DDIMScheduler, "if": DDPMScheduler, "lcm": LCMScheduler}[spec.family]
    sched = sched_cls.from_pretrained(spec.source, subfolder="scheduler", **kw)
    pipe = T2IPipeline(spec.family, unet, vae, enc, tok, sched, name=spec.name, num_steps=num_steps,
                       max_length=77)
    return pipe.to(device, dtype)
