"""Model registry: names → sources, in one place.

Two kinds of model:

* **course** models, trained by our recipes (``synthetic``) and shipped inside the package
  as diffusers folders with safetensors weights (``lococourse/assets/models/<name>/``); always
  available offline.  They are discovered from their ``card.json``.
* **hub** checkpoints the paper uses, loaded from the Hugging Face hub through diffusers.  Without a
  network (or with ``HF_HUB_OFFLINE=1``) and without a local copy in the Hugging Face cache, loading
  fails *at once* with :class:`ModelNotAvailableError` saying what is missing and how to get it.

A local diffusers folder (a path) loads too.  Weights load through safetensors only, and are checked
before use: against the model card's ``weights_bytes`` / ``weights_sha256`` when the folder has a card, and
for finite values after loading.  What the UNet predicts (ε, v or x₀) is never guessed: it comes from the
card, a ``scheduler_config.json``, the weights file's metadata (written by :func:`~lococourse.models.train.train`)
or the caller (``prediction_type=``); a folder that says nothing is refused with a message saying so, since
reading an x₀- or v-model as ε gives saturated images.
"""
from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from lococourse.core.checks import file_sha256
from lococourse.models.adapters import PREDICTION_TYPES, UNetEps, UNetPMP
from lococourse.models.t2i import FAMILIES, T2IPipeline, check_device_dtype
from lococourse.models.tiny import TINY_MODELS, tiny_pipeline
from lococourse.models.train import PREDICTION_TYPE_KEY

__all__ = ["ModelSpec", "ModelNotAvailableError", "ModelIntegrityError", "HUB_MODELS", "course_models", "all_models",
           "get_spec", "availability", "load_unet", "load_model", "LoadedModel", "ASSETS", "PREDICTION_TYPES",
           "prediction_type_of", "check_weights", "check_available", "how_to_get", "t2i_image_shape", "t2i_latent_shape", "t2i_model_names", "load_t2i", "load_card",
           "WEIGHTS", "PREDICTION_TYPE_KEY"]

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "models"
HUB_HOST = "huggingface.co"
#: The weights file of a diffusers model folder (safetensors only).
WEIGHTS = "diffusion_pytorch_model.safetensors"


class ModelNotAvailableError(OSError):
    """A registered model cannot be loaded here; the message says what is missing and how to get it."""


class ModelIntegrityError(ModelNotAvailableError):
    """A model folder whose files are not what its card says (corrupted, truncated or replaced weights)."""


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
              notes="CelebA-HQ faces; edit t = 0.6 (G.1)", extra={"prediction_type": "epsilon"}),
    ModelSpec("ddpm-church-256", "google/ddpm-ema-church-256", "hub", "unet2d", 256, edit_t=0.6,
              notes="LSUN church; edit t = 0.6 (G.1)", extra={"prediction_type": "epsilon"}),
    ModelSpec("ddpm-bedroom-256", "google/ddpm-ema-bedroom-256", "hub", "unet2d", 256, edit_t=0.6,
              notes="LSUN bedroom; the G.1 settings of the other LSUN model", extra={"prediction_type": "epsilon"}),
    ModelSpec("sd-2.1-base", "stabilityai/stable-diffusion-2-1-base", "hub", "sd", 512, 3, (4, 64, 64), 0.7,
              (-5.0, 5.0), (-10.0, 10.0), "unet", "Stable Diffusion 2.1 base; edit t = 0.7 (G.3)"),
    ModelSpec("deepfloyd-if-i-m", "DeepFloyd/IF-I-M-v1.0", "hub", "if", 64, 3, None, 0.75,
              (-15.0, 15.0), (-50.0, 50.0), "unet", "DeepFloyd IF stage I (64 px, learned variance); edit t = 0.75"),
    ModelSpec("lcm-dreamshaper-v7", "SimianLuo/LCM_Dreamshaper_v7", "hub", "lcm", 768, 3, (4, 96, 96), None,
              (-5.0, 5.0), (-10.0, 10.0), "unet", "Latent Consistency Model, 4 steps, edit at the second step"),
]}


def read_card(path: Path) -> dict:
    """A card.json as a dict; a file that is not a JSON object is refused with its name."""
    try:
        c = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ModelNotAvailableError(f"model card {path} cannot be read ({e}); it must be a JSON object "
                                     "(reinstall the model or retrain it)") from e
    if not isinstance(c, dict):
        raise ModelNotAvailableError(f"model card {path} holds a JSON {type(c).__name__}, not an object")
    return c


def course_models() -> dict[str, ModelSpec]:
    """The course models shipped in ``lococourse/assets/models``, read from their model cards."""
    out = {}
    for card in sorted(ASSETS.glob("*/card.json")):
        c = read_card(card)
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
    return read_card(path / "card.json")


def all_models() -> dict[str, ModelSpec]:
    return {**course_models(), **HUB_MODELS}


def get_spec(name_or_path: str) -> ModelSpec:
    """The spec of a registered name, or of a local diffusers folder given by path."""
    models = all_models()
    if not isinstance(name_or_path, (str, Path)):
        raise TypeError(f"model must be a registered name or a folder path (a str); got {name_or_path!r}")
    if isinstance(name_or_path, str) and name_or_path in models:
        return models[name_or_path]
    if not str(name_or_path).strip():
        raise ValueError(f"model name {str(name_or_path)!r} is empty; give a registered model "
                         f"({', '.join(sorted(models))}) or the path of a local diffusers folder")
    p = Path(name_or_path)
    if p.is_dir():
        cfg = p / "config.json" if (p / "config.json").exists() else p / "unet" / "config.json"
        if not cfg.exists():
            raise ModelNotAvailableError(f"{p} is a folder but holds no diffusers config.json (nor unet/config.json)")
        try:
            c = json.loads(cfg.read_text())
            size = c.get("sample_size", 0)
            size = int(size[0] if isinstance(size, (list, tuple)) else size)
            channels = int(c.get("in_channels", 3))
        except (OSError, UnicodeDecodeError, ValueError, TypeError, AttributeError, IndexError) as e:
            raise ModelNotAvailableError(f"{cfg} is not a diffusers UNet config ({type(e).__name__}: {e})") from e
        if size < 1 or channels < 1:
            raise ModelNotAvailableError(f"{cfg} gives sample_size {size} and in_channels {channels}; both must be ≥ 1")
        extra = {}
        if (p / "card.json").exists():  # a folder exported by a recipe (or a copied course model): trust its card
            card = read_card(p / "card.json")
            extra = {k: card[k] for k in ("prediction_type",) if k in card}
        return ModelSpec(p.name, str(p), "local", "unet2d", size, channels,
                         subfolder="unet" if cfg.parent.name == "unet" else None, extra=extra)
    if p.exists():
        raise ValueError(f"model {str(name_or_path)!r} is a file, not a model folder; give a registered model "
                         f"({', '.join(sorted(models))}) or the path of a local diffusers folder")
    raise ValueError(f"unknown model {str(name_or_path)!r}; registered models: {', '.join(sorted(models))} "
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


def how_to_get(spec: ModelSpec) -> str:
    """How to get a hub checkpoint onto this machine (``hf download``: huggingface_hub's current command line)."""
    return (f"To use it, run on a machine with network access: `hf download {spec.source}` "
            f"(or `python -c \"from diffusers import DiffusionPipeline; DiffusionPipeline.from_pretrained('{spec.source}')\"`), "
            "then load it here from the Hugging Face cache or pass the downloaded folder as the model path.")


def _weights_file(spec: ModelSpec) -> Path:
    return Path(spec.source) / (spec.subfolder or "") / WEIGHTS


def check_weights(spec: ModelSpec) -> None:
    """Refuse a local or course model folder whose weights are not what its card says (size and SHA-256).

    Folders without a card, or cards without ``weights_sha256``, are checked for existence only; hub
    checkpoints are checked by huggingface_hub's own download.  A mismatch raises :class:`ModelIntegrityError`.
    """
    if spec.kind == "hub":
        return
    w = _weights_file(spec)
    if not w.is_file():
        raise ModelNotAvailableError(f"model {spec.name!r}: no weights file {w} (lococourse loads safetensors only)")
    card_path = Path(spec.source) / "card.json"
    if not card_path.exists():
        return
    card = read_card(card_path)
    size, want = card.get("weights_bytes"), card.get("weights_sha256")
    if size is not None and w.stat().st_size != size:
        raise ModelIntegrityError(f"model {spec.name!r}: weights {w} have {w.stat().st_size:,} bytes but its card "
                                  f"says {size:,}; the file is truncated or was replaced. Reinstall lococourse "
                                  "(or rerun the model's recipe) to restore it")
    if want is not None:
        got = file_sha256(w)
        if got != want:
            raise ModelIntegrityError(f"model {spec.name!r}: weights {w} have sha256 {got[:16]}… but its card says "
                                      f"{str(want)[:16]}…; the file is corrupted or was changed. Reinstall lococourse "
                                      "(or rerun the model's recipe) to restore it")


def _weights_metadata(spec: ModelSpec) -> dict:
    """The safetensors metadata of a local weights file ({} when there is none or it cannot be read)."""
    from safetensors import safe_open

    w = _weights_file(spec)
    if spec.kind == "hub" or not w.is_file():
        return {}
    try:
        with safe_open(str(w), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except Exception:  # noqa: BLE001 — a broken file is reported by the loader, with its name
        return {}


def prediction_type_of(spec: ModelSpec, prediction_type: str | None = None) -> str:
    """What the model's UNet predicts: what its card, its ``scheduler_config.json`` or its weights file says,
    else ``prediction_type`` (the caller's); a contradiction, or a model that says nothing, is refused."""
    if prediction_type is not None and prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type {prediction_type!r} is not one of {', '.join(PREDICTION_TYPES)}")
    stated, where = None, ""
    if "prediction_type" in spec.extra:
        stated, where = spec.extra["prediction_type"], ("its model card" if spec.kind != "hub" else "the registry")
    elif spec.kind != "hub":
        for cand in (Path(spec.source) / "scheduler_config.json", Path(spec.source) / "scheduler" / "scheduler_config.json"):
            if cand.exists():
                try:
                    cfg = json.loads(cand.read_text())
                except (OSError, UnicodeDecodeError, ValueError) as e:
                    raise ModelNotAvailableError(f"{cand} cannot be read ({e}); it must be a JSON object") from e
                if isinstance(cfg, dict) and "prediction_type" in cfg:
                    stated, where = cfg["prediction_type"], str(cand)
                    break
        meta = {} if stated is not None else _weights_metadata(spec)
        if PREDICTION_TYPE_KEY in meta:
            stated, where = meta[PREDICTION_TYPE_KEY], f"the metadata of {_weights_file(spec)}"
    if stated is not None and stated not in PREDICTION_TYPES:
        raise ModelNotAvailableError(f"model {spec.name!r}: {where} gives prediction_type {stated!r}; it must be one of "
                                     f"{', '.join(PREDICTION_TYPES)}")
    if prediction_type is not None:
        if stated is not None and stated != prediction_type:
            raise ValueError(f"prediction_type {prediction_type!r} contradicts {where}, which says {stated!r}; "
                             "leave it out (the model says what it predicts)")
        return prediction_type
    if stated is None:
        raise ValueError(
            f"model folder {spec.source} does not say what its UNet predicts (no card.json with prediction_type, no "
            f"scheduler_config.json, no '{PREDICTION_TYPE_KEY}' in its weights' metadata); give it: "
            f"prediction_type one of {', '.join(PREDICTION_TYPES)} (command line: --prediction-type). "
            "Reading an x₀- or v-model as ε gives saturated images")
    return stated


def check_available(spec: ModelSpec) -> None:
    """Raise :class:`ModelNotAvailableError` at once (a cache look-up, at most a short network probe) when a hub
    checkpoint is neither in the local Hugging Face cache nor downloadable; course and local models: their folder."""
    if spec.kind != "hub":
        if not Path(spec.source).is_dir():
            raise ModelNotAvailableError(f"model {spec.name!r}: its folder {spec.source} does not exist")
        return
    if cached_config(spec):
        return
    ok, why = hub_reachable()
    if not ok:
        raise ModelNotAvailableError(
            f"model {spec.name!r} ({spec.source}) is not available: it is not in the local Hugging Face "
            f"cache and {why}. {how_to_get(spec)}")


def load_unet(name_or_path: str, torch_dtype=None):
    """Load the UNet of a registered model or local folder (safetensors only), frozen and in eval mode.

    The weights are checked against the folder's card (:func:`check_weights`) before loading and for finite
    values after; a file that cannot be read is reported with its name."""
    from diffusers import UNet2DConditionModel, UNet2DModel

    spec = get_spec(name_or_path)
    if torch_dtype is not None and torch_dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        raise ValueError(f"torch_dtype must be torch.float32, torch.float64, torch.float16 or torch.bfloat16; "
                         f"got {torch_dtype!r}")
    check_weights(spec)
    cls = UNet2DModel if spec.family == "unet2d" else UNet2DConditionModel
    kw = {"use_safetensors": True, "low_cpu_mem_usage": False}
    if torch_dtype is not None:
        kw["torch_dtype"] = torch_dtype
    if spec.subfolder:
        kw["subfolder"] = spec.subfolder
    if spec.kind == "hub":
        check_available(spec)
        if cached_config(spec):
            kw["local_files_only"] = True
    try:
        unet = cls.from_pretrained(spec.source, **kw)
    except (OSError, EnvironmentError, ValueError, RuntimeError) as e:
        where = "" if spec.kind == "hub" else f" (weights file {_weights_file(spec)})"
        raise ModelNotAvailableError(f"could not load model {spec.name!r} from {spec.source}{where}: {e}. "
                                     f"{how_to_get(spec) if spec.kind == 'hub' else ''}".rstrip()) from e
    bad = [n for n, p in unet.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        raise ModelIntegrityError(f"model {spec.name!r} from {spec.source}: {len(bad)} weight tensors hold NaN or inf "
                                  f"(first: {bad[0]}); the weights are corrupted")
    unet.requires_grad_(False).eval()
    return unet


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


def load_model(name_or_path: str, torch_dtype=None, *, prediction_type: str | None = None) -> LoadedModel:
    """Load a registered pixel-space model (course, hub ``unet2d`` or a local folder) by name, on the CPU.

    ``prediction_type`` (``"epsilon"``, ``"v_prediction"`` or ``"sample"``) is needed only for a folder that does
    not say what its UNet predicts (see :func:`prediction_type_of`).  ``torch_dtype``: float32 (default) or
    float64; half precision is refused here (the CPU's fp16 kernels are slow or missing, and the SVDs of the
    course need float32)."""
    spec = get_spec(name_or_path)
    if spec.family != "unet2d":
        raise ValueError(f"model {spec.name!r} is a {spec.family!r} text-to-image model; "
                         "load_model() handles unconditional pixel-space models (family 'unet2d')")
    if torch_dtype in (torch.float16, torch.bfloat16):
        raise ValueError(f"torch_dtype {torch_dtype} is not supported by load_model (it runs on the CPU); use "
                         "torch.float32 (half precision is for text-to-image pipelines on CUDA: "
                         "load_t2i(name, device='cuda', dtype=torch.float16))")
    ptype = prediction_type_of(spec, prediction_type)  # before the weights: a model that says nothing loads nothing
    unet = load_unet(name_or_path, torch_dtype)
    return LoadedModel(spec, unet, ptype)


def t2i_model_names() -> list[str]:
    """The text-to-image models T-LOCO takes by name: the offline tiny pipelines and the registry's sd/if/lcm."""
    return [*TINY_MODELS, *(n for n, s in HUB_MODELS.items() if s.family in FAMILIES)]


def t2i_image_shape(name: str) -> tuple[int, int, int]:
    """(3, H, W) of a text-to-image model's decoded images, without loading it (for checking a mask first)."""
    if name in TINY_MODELS:  # tests/models/test_registry.py checks these against the built pipelines
        return (3, 8, 8) if TINY_MODELS[name] == "if" else (3, 16, 16)
    spec = get_spec(name)
    return (spec.channels, spec.resolution, spec.resolution)


def t2i_latent_shape(name: str) -> tuple[int, int, int]:
    """(C, h, w) of a text-to-image model's x_t (where its directions live), without loading it."""
    if name in TINY_MODELS:  # checked against the built pipelines as above
        return (3, 8, 8) if TINY_MODELS[name] == "if" else (4, 8, 8)
    spec = get_spec(name)
    return tuple(spec.latent_shape) if spec.latent_shape else (spec.channels, spec.resolution, spec.resolution)


# ---------------------------------------------------------------------------------------- text-to-image pipelines (T-LOCO)
def load_t2i(name: str, *, device="cpu", dtype: torch.dtype = torch.float32, seed: int = 0,
             num_steps: int | None = None) -> T2IPipeline:
    """A pipeline by name: ``tiny-sd``/``tiny-if``/``tiny-lcm`` (random weights, offline), or a registry hub
    model of family sd/if/lcm (``sd-2.1-base``, ``deepfloyd-if-i-m``, ``lcm-dreamshaper-v7``), loaded from the
    local Hugging Face cache or the hub; unavailable → :class:`~lococourse.models.registry.ModelNotAvailableError`."""
    check_device_dtype(device, dtype)
    names = t2i_model_names()
    if not isinstance(name, str) or (name not in names and name not in all_models()):
        raise ValueError(f"unknown text-to-image model {name!r}; T-LOCO takes one of {', '.join(names)}")
    if name in TINY_MODELS:
        pipe = tiny_pipeline(name, seed, num_steps=num_steps)
        return pipe if (torch.device(device), dtype) == (pipe.device, pipe.dtype) else pipe.to(device, dtype)

    spec = get_spec(name)
    if spec.family not in FAMILIES:
        raise ValueError(f"model {spec.name!r} has family {spec.family!r}; T-LOCO needs a text-to-image model of family "
                         f"{', '.join(FAMILIES)}: one of {', '.join(names)}")
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
