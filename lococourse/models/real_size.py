"""The paper's hub checkpoints at their real size — with seeded RANDOM weights.

LOCO Edit (Chen et al., NeurIPS 2024) runs on six hub checkpoints: three DDPM
UNets (CelebA-HQ, LSUN-church, LSUN-bedroom, 256 px), Stable Diffusion 2.1-base,
DeepFloyd IF stage I (M) and LCM-Dreamshaper-v7. The Hugging Face hub is not
reachable from this project's machines, so this module rebuilds each model's
*architecture* from configs transcribed into ``configs/<org>--<name>/`` (see
``configs/SOURCES.md`` for where every field came from, and which were inferred)
and fills it with seeded **random** weights.

RANDOM WEIGHTS: nothing built here is a trained model. Every module returned
carries ``random_weights = True`` and every dict returned has the key
``"random_weights": True``. Use these builds to measure shapes, parameter
counts, memory, Jacobian cost and speed at real size — never image quality.

Only torch, diffusers, transformers and the standard library are imported.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

CONFIG_ROOT = Path(__file__).resolve().parent / "configs"

# hub name -> folder under configs/
REAL_ARCHITECTURES: dict[str, str] = {
    "google/ddpm-ema-celebahq-256": "google--ddpm-ema-celebahq-256",
    "google/ddpm-ema-church-256": "google--ddpm-ema-church-256",
    "google/ddpm-ema-bedroom-256": "google--ddpm-ema-bedroom-256",
    "stabilityai/stable-diffusion-2-1-base": "stabilityai--stable-diffusion-2-1-base",
    "DeepFloyd/IF-I-M-v1.0": "DeepFloyd--IF-I-M-v1.0",
    "SimianLuo/LCM_Dreamshaper_v7": "SimianLuo--LCM_Dreamshaper_v7",
}

COMPONENTS = ("unet", "vae", "text_encoder", "scheduler")

# IF's T5-v1.1-XXL encoder has ~4.76e9 parameters: too big for a CPU box. The
# reduced encoder keeps the output width d_model = 4096 (what the UNet's
# ``encoder_hid_dim`` consumes) and shrinks depth / heads / feed-forward only.
REDUCED_T5_OVERRIDES = {"num_layers": 2, "num_heads": 8, "d_ff": 2048}

TOKEN_ID_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id")


# ----------------------------------------------------------------------------- configs
def _check_name(name: str) -> str:
    """Return the config folder of ``name``; ValueError listing the allowed names."""
    if name not in REAL_ARCHITECTURES:
        allowed = ", ".join(sorted(REAL_ARCHITECTURES))
        raise ValueError(f"unknown real architecture {name!r}; allowed: {allowed}")
    return REAL_ARCHITECTURES[name]


def has_component(name: str, component: str) -> bool:
    """Whether the checkpoint ``name`` has ``component`` (pixel-space models have no VAE)."""
    if component not in COMPONENTS:
        raise ValueError(f"unknown component {component!r}; allowed: {', '.join(COMPONENTS)}")
    return (CONFIG_ROOT / _check_name(name) / f"{component}.json").is_file()


def real_config(name: str, component: str) -> dict:
    """A fresh copy of the transcribed config of ``component`` of checkpoint ``name``."""
    if not has_component(name, component):
        present = [c for c in COMPONENTS if has_component(name, c)]
        raise ValueError(f"{name!r} has no {component!r}; its components are: {', '.join(present)}")
    path = CONFIG_ROOT / _check_name(name) / f"{component}.json"
    return copy.deepcopy(json.loads(path.read_text()))


def _diffusers_class(config: dict):
    """The diffusers class named by a config's ``_class_name``."""
    import diffusers

    return getattr(diffusers, config["_class_name"])


def _check_dtype(dtype) -> None:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch.dtype, got {dtype!r}")


def _mark(module: torch.nn.Module, name: str, component: str) -> torch.nn.Module:
    """Tag a built module as random-weight, real-size ``name``/``component``."""
    module.random_weights = True
    module.real_size_name = name
    module.real_size_component = component
    return module


# ----------------------------------------------------------------------------- builders
def _build(name, component, make, seed, dtype, device):
    """Seed, build ``make()`` on ``device`` in float32, cast to ``dtype``, eval, tag."""
    _check_dtype(dtype)
    torch.manual_seed(seed)
    with torch.device(device or "cpu"):
        module = make()
    if dtype != torch.float32:
        module = module.to(dtype)
    return _mark(module.eval(), name, component)


def build_real_unet(name: str, seed: int = 0, dtype=torch.float32, device=None):
    """The real-size UNet of hub checkpoint ``name`` with seeded RANDOM weights.

    ``device="meta"`` builds the structure without allocating any weights.
    The module has ``random_weights = True``: it is not the trained checkpoint.
    """
    config = real_config(name, "unet")
    cls = _diffusers_class(config)
    return _build(name, "unet", lambda: cls.from_config(config), seed, dtype, device)


def build_real_vae(name: str, seed: int = 0, dtype=torch.float32, device=None):
    """The real-size AutoencoderKL of ``name`` (latent models only), seeded RANDOM weights.

    Raises ValueError for the pixel-space checkpoints (DDPMs, DeepFloyd IF).
    The module has ``random_weights = True``: it is not the trained checkpoint.
    """
    config = real_config(name, "vae")
    cls = _diffusers_class(config)
    return _build(name, "vae", lambda: cls.from_config(config), seed, dtype, device)


def text_encoder_config(name: str, reduced_text_encoder: bool = False, vocab_size: int | None = None,
                        token_ids: dict | None = None):
    """The transformers config object of ``name``'s text encoder (optionally reduced).

    ``reduced_text_encoder`` applies ``REDUCED_T5_OVERRIDES`` (T5 only: keeps
    d_model = 4096, the width the IF UNet consumes). ``vocab_size`` replaces the
    hub vocabulary size, for a hand-made vocabulary; ``token_ids`` its special
    ids (keys ``bos_token_id``, ``eos_token_id``, ``pad_token_id``).
    """
    from transformers import CLIPTextConfig, T5Config

    raw = real_config(name, "text_encoder")
    raw = {k: v for k, v in raw.items() if k not in ("architectures", "torch_dtype", "transformers_version")}
    if vocab_size is not None:
        if not isinstance(vocab_size, int) or vocab_size < 8:
            raise ValueError(f"vocab_size must be an int >= 8, got {vocab_size!r}")
        raw["vocab_size"] = vocab_size
    for key, value in (token_ids or {}).items():
        if key not in TOKEN_ID_KEYS:
            raise ValueError(f"unknown token id {key!r}; allowed: {', '.join(TOKEN_ID_KEYS)}")
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < raw["vocab_size"]:
            raise ValueError(f"{key} must be an integer in 0..{raw['vocab_size'] - 1}, got {value!r}")
        raw[key] = value
    if raw["model_type"] == "t5":
        if reduced_text_encoder:
            raw.update(REDUCED_T5_OVERRIDES)
        return T5Config(**raw)
    if reduced_text_encoder:
        raise ValueError(f"reduced_text_encoder is only defined for the T5 encoder of DeepFloyd IF, not {name!r}")
    return CLIPTextConfig(**raw)


def build_real_text_encoder(
    name: str,
    seed: int = 0,
    dtype=torch.float32,
    device=None,
    reduced_text_encoder: bool = False,
    vocab_size: int | None = None,
    token_ids: dict | None = None,
):
    """The text encoder of ``name`` (CLIPTextModel or T5EncoderModel), seeded RANDOM weights.

    For DeepFloyd IF the full T5-v1.1-XXL encoder (~4.76e9 parameters, ~19 GB in
    float32) does not fit a CPU box: pass ``reduced_text_encoder=True`` for a
    2-layer encoder with the same output width (4096). Raises ValueError for the
    unconditional DDPMs. ``vocab_size``/``token_ids``: see :func:`text_encoder_config`.
    The module has ``random_weights = True``.
    """
    from transformers import CLIPTextModel, T5EncoderModel

    config = text_encoder_config(name, reduced_text_encoder, vocab_size, token_ids)
    cls = T5EncoderModel if config.model_type == "t5" else CLIPTextModel
    module = _build(name, "text_encoder", lambda: cls(config), seed, dtype, device)
    module.reduced_text_encoder = bool(reduced_text_encoder)
    return module


def build_real_scheduler(name: str):
    """The diffusers scheduler of ``name`` from its transcribed config (no weights)."""
    config = real_config(name, "scheduler")
    return _diffusers_class(config).from_config(config)


# ----------------------------------------------------------------------------- summary
def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _meta_count(name: str, component: str, **kw) -> int | None:
    """Parameter count of ``component`` built on the meta device (no weights allocated)."""
    if not has_component(name, component):
        return None
    builders = {"unet": build_real_unet, "vae": build_real_vae, "text_encoder": build_real_text_encoder}
    return _count(builders[component](name, device="meta", **kw))


def latent_scale(name: str) -> int:
    """Pixels per UNet sample along one side: 2**(#VAE levels - 1), or 1 without a VAE."""
    if not has_component(name, "vae"):
        return 1
    return 2 ** (len(real_config(name, "vae")["block_out_channels"]) - 1)


def real_size_summary(name: str) -> dict:
    """Parameter counts and shapes of ``name``'s components, from configs on the meta device.

    No weights are allocated. ``random_weights: True`` says what any build of
    these architectures carries: random, not trained, weights.
    """
    _check_name(name)
    unet = real_config(name, "unet")
    counts = {c: _meta_count(name, c) for c in ("unet", "vae", "text_encoder")}
    summary = {
        "name": name,
        "random_weights": True,
        "unet_class": unet["_class_name"],
        "params": counts,
        "unet_sample_size": unet["sample_size"],
        "unet_in_channels": unet["in_channels"],
        "unet_out_channels": unet["out_channels"],
        "latent_scale": latent_scale(name),
        "image_size": unet["sample_size"] * latent_scale(name),
        "float32_bytes": {c: (4 * n if n is not None else None) for c, n in counts.items()},
    }
    if name == "DeepFloyd/IF-I-M-v1.0":
        summary["params"]["text_encoder_reduced"] = _meta_count(name, "text_encoder", reduced_text_encoder=True)
    return summary


# ----------------------------------------------------------------------------- stand-ins
# The registry's names (lococourse.models.registry.HUB_MODELS) of the paper's checkpoints whose
# architecture a random-weight stand-in can replace: pixel DDPMs -> LoadedModel, text-to-image -> T2IPipeline.
def _standin_names(families) -> dict[str, str]:
    from lococourse.models.registry import HUB_MODELS

    return {n: s.source for n, s in HUB_MODELS.items() if s.family in families and s.source in REAL_ARCHITECTURES}


def _standin_spec(name: str, families, what: str):
    """The registry spec of ``name`` for a stand-in of kind ``what``; ValueError naming the allowed names."""
    from lococourse.models.registry import HUB_MODELS

    allowed = _standin_names(families)
    if name not in allowed:
        raise ValueError(f"{what} has no stand-in named {name!r}; allowed (registry names): {', '.join(sorted(allowed))}")
    return HUB_MODELS[name]


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer; got {seed!r}")
    return seed


def _standin_notes(spec) -> str:
    return (f"RANDOM WEIGHTS: a stand-in with the architecture of {spec.source} and seeded random weights, "
            f"not the trained checkpoint (shapes, memory and speed are real; images are not). {spec.notes}")


def standin_model(name: str, seed: int = 0):
    """A :class:`~lococourse.models.registry.LoadedModel` of a 256² DDPM architecture with seeded RANDOM weights.

    ``name`` is a registry name of family ``unet2d`` (``ddpm-celebahq-256``, ``ddpm-church-256``,
    ``ddpm-bedroom-256``).  The UNet is the real-size ``UNet2DModel`` of the hub checkpoint's config,
    frozen and in eval mode; its ε-model uses the package's linear-β schedule, which is the checkpoint's
    scheduler config (β from 1e-4 to 0.02 over 1000 steps).  The global RNG is left untouched.

    RANDOM WEIGHTS: the model has ``random_weights = True``, its spec's ``extra["random_weights"]`` is True
    and its notes say so; it keeps the registry name (so its edit time and λ range are the paper's).
    """
    import dataclasses

    from lococourse.models.registry import LoadedModel

    spec = _standin_spec(name, ("unet2d",), "standin_model")
    seed = _check_seed(seed)
    with torch.random.fork_rng(devices=[]):
        unet = build_real_unet(spec.source, seed).requires_grad_(False)
    prediction_type = real_config(spec.source, "scheduler").get("prediction_type", "epsilon")
    spec = dataclasses.replace(spec, notes=_standin_notes(spec),
                               extra={**spec.extra, "random_weights": True, "standin_seed": seed})
    model = LoadedModel(spec, unet, prediction_type)
    model.random_weights = True
    return model


#: The hand-made tokenizer's length: CLIP's max_position_embeddings (77), which IF's pipeline also pads to.
STANDIN_MAX_LENGTH = 77


def standin_t2i(name: str, seed: int = 0, num_steps: int | None = None, recompute: bool = False):
    """A :class:`~lococourse.models.t2i.T2IPipeline` of a text-to-image architecture with seeded RANDOM weights.

    ``name`` is a registry name of family sd/if/lcm (``sd-2.1-base``, ``deepfloyd-if-i-m``,
    ``lcm-dreamshaper-v7``).  UNet, VAE (latent families) and text encoder have the real architecture of
    the hub checkpoint's configs; differences, all forced by building offline:

    * the tokenizer is hand-made (:func:`~lococourse.models.tiny.tiny_tokenizer`: one token per byte,
      514 tokens, prompts padded to 77), so the text encoder's vocabulary (embedding table) has 514 rows
      instead of the hub's; every layer after the embedding is the real one;
    * DeepFloyd IF's T5-v1.1-XXL encoder (~4.76e9 parameters, ~19 GB in float32) is replaced by the
      reduced encoder (``REDUCED_T5_OVERRIDES``: 2 layers, same output width 4096 that the UNet consumes).

    Schedulers: DDIM (sd), DDPM (if), LCM (lcm) from the transcribed scheduler configs, as
    :func:`~lococourse.models.registry.load_t2i` loads them.  ``num_steps``: sampling steps (default the
    family's: 100 DDIM steps, 4 LCM steps).  ``recompute``: :meth:`~lococourse.models.t2i.T2IPipeline.enable_recompute`
    (what SD-2.1-base and LCM need to fit T-LOCO's Jacobians in 24 GB on a CPU).  The global RNG is left untouched.

    RANDOM WEIGHTS: the pipeline and each of its networks have ``random_weights = True``.
    """
    if not isinstance(recompute, bool):
        raise ValueError(f"recompute must be True or False; got {recompute!r}")
    from diffusers import DDIMScheduler, DDPMScheduler, LCMScheduler

    from lococourse.models.t2i import T2IPipeline
    from lococourse.models.tiny import tiny_tokenizer

    spec = _standin_spec(name, ("sd", "if", "lcm"), "standin_t2i")
    seed = _check_seed(seed)
    source, family = spec.source, spec.family
    tokenizer = tiny_tokenizer(max_length=STANDIN_MAX_LENGTH)
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    with torch.random.fork_rng(devices=[]):
        text = build_real_text_encoder(source, seed, reduced_text_encoder=family == "if", vocab_size=len(tokenizer),
                                       token_ids=ids)
        unet = build_real_unet(source, seed)
        vae = build_real_vae(source, seed) if has_component(source, "vae") else None
    for module in (text, unet, vae):
        if module is not None:
            module.requires_grad_(False)
    sched_cls = {"sd": DDIMScheduler, "if": DDPMScheduler, "lcm": LCMScheduler}[family]
    scheduler = sched_cls.from_config(real_config(source, "scheduler"))
    pipe = T2IPipeline(family, unet, vae, text, tokenizer, scheduler, name=name, num_steps=num_steps,
                       max_length=STANDIN_MAX_LENGTH)
    pipe.random_weights = True
    pipe.notes = _standin_notes(spec)
    return pipe.enable_recompute() if recompute else pipe


# ----------------------------------------------------------------------------- measuring
#: This process's status file (Linux): VmRSS / VmHWM (the peak), reset through clear_refs ("5").
_PROC = Path("/proc/self")


def _status_kb(key: str) -> int | None:
    try:
        for line in (_PROC / "status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset this process's peak resident set size (Linux ``/proc/self/clear_refs`` ← 5); False where impossible."""
    try:
        (_PROC / "clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_gb() -> float:
    """This process's peak resident set size in GB (10⁹ bytes) since the last :func:`reset_peak_rss`
    (Linux VmHWM; elsewhere the lifetime peak from ``resource.getrusage``)."""
    kb = _status_kb("VmHWM")
    if kb is None:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
    return kb * 1e3 / 1e9


def rss_gb() -> float | None:
    """This process's current resident set size in GB, or None where /proc is missing."""
    kb = _status_kb("VmRSS")
    return None if kb is None else kb * 1e3 / 1e9


def measure(fn, *args, **kwargs) -> tuple[object, dict]:
    """Run ``fn(*args, **kwargs)``; return (its result, {"seconds", "peak_rss_gb", "rss_before_gb", "peak_reset"}).

    ``peak_rss_gb`` is the whole process's peak resident memory during the call (weights already loaded
    included: what must fit in the machine's RAM); ``peak_reset`` says whether the peak could be reset
    before the call (if not, it is the process's lifetime peak, an upper bound).
    """
    import time

    before = rss_gb()
    reset = reset_peak_rss()
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    seconds = time.perf_counter() - t0
    return out, {"seconds": seconds, "peak_rss_gb": peak_rss_gb(), "rss_before_gb": before, "peak_reset": reset}


#: Exit status of a process stopped by :class:`memory_guard`.
MEMORY_GUARD_EXIT = 86


class memory_guard:
    """Stop this process (exit status ``MEMORY_GUARD_EXIT``) if its resident memory exceeds ``limit_gb``.

    A watchdog thread polls /proc/self/status every ``interval`` seconds; on a breach it writes what it saw to
    stderr and calls ``os._exit`` — a torch op deep in a backward pass cannot be interrupted any other way, and on
    a machine shared with other work it is better to stop here than to wait for the kernel's OOM killer, which may
    pick another process.  ``label`` says in the message what was running.  Linux only (a no-op elsewhere).
    """

    def __init__(self, limit_gb: float, label: str = "", interval: float = 0.05):
        if not limit_gb > 0:
            raise ValueError(f"limit_gb must be positive; got {limit_gb!r}")
        self.limit_gb, self.label, self.interval = float(limit_gb), label, interval
        self._stop = None

    def __enter__(self):
        import threading

        if rss_gb() is None:
            return self
        self._stop = threading.Event()
        threading.Thread(target=self._watch, daemon=True).start()
        return self

    def _watch(self):
        import os
        import sys

        while not self._stop.wait(self.interval):
            now = rss_gb()
            if now is not None and now > self.limit_gb:
                sys.stderr.write(f"\nmemory_guard: resident memory {now:.2f} GB exceeds the limit {self.limit_gb:.2f} GB"
                                 f"{f' during {self.label}' if self.label else ''}; stopping the process (exit "
                                 f"{MEMORY_GUARD_EXIT})\n")
                sys.stderr.flush()
                os._exit(MEMORY_GUARD_EXIT)

    def __exit__(self, *exc):
        if self._stop is not None:
            self._stop.set()
        return False
