"""Course mode: **fast** (CPU, the shipped course models, small sizes) or **full** (GPU + network: the paper's hub checkpoints).

The mode is chosen automatically — ``full`` when ``torch.cuda.is_available()`` *and* the Hugging Face
hub is reachable (the registry's probe, with a short timeout) — and overridden by one setting:

* the environment variable ``LOCOCOURSE_MODE=fast|full`` (read when the mode is first needed), or
* :func:`set_mode` (``"fast"``, ``"full"`` or ``"auto"`` to go back to the automatic choice).

Every notebook prints :func:`describe_mode` once at the top so a reader knows what it ran on.

**Stand-ins** (``LOCOCOURSE_STANDINS=1``): full mode without a GPU or the hub.  The full-mode cells of
notebooks 05, 06 and 08 then run on *real-architecture stand-ins with seeded RANDOM weights*
(:func:`lococourse.models.real_size.standin_model` / :func:`~lococourse.models.real_size.standin_t2i`): the
paper's networks at their real size, so that every line a Colab GPU user runs is executed on this machine —
shapes, dtypes, memory and the Jacobian paths are real, the images are meaningless.  On a CPU they run with
the small settings of :data:`STANDIN_SETTINGS` (fewer DDIM steps, one power iteration), which the cells print.
The one command that runs them (minutes to an hour on a 2-core CPU)::

    LOCOCOURSE_STANDINS=1 python -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider --nbval-cell-timeout=14400 \
        notebooks/05_figure2_course_models.ipynb notebooks/06_loco_edit.ipynb notebooks/08_t_loco.ipynb
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from lococourse.models import registry

__all__ = ["MODES", "ENV_VAR", "STANDINS_ENV", "ModeInfo", "detect_mode", "get_mode", "mode_info", "set_mode",
           "describe_mode", "device", "standins", "FullModeSettings", "PAPER_SETTINGS", "STANDIN_SETTINGS",
           "full_mode_settings", "full_mode_model", "full_mode_t2i"]

MODES = ("fast", "full")
ENV_VAR = "LOCOCOURSE_MODE"
#: Set to 1 to run the full-mode cells on real-architecture stand-ins with RANDOM weights (see the module docstring).
STANDINS_ENV = "LOCOCOURSE_STANDINS"
_AUTO = "auto"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")

_override: str | None = None  # set by set_mode(); None → environment variable, then detection
_cache: "ModeInfo | None" = None


@dataclass(frozen=True)
class ModeInfo:
    """The mode in use and why."""

    mode: str  # "fast" | "full"
    source: str  # "set_mode()" | "LOCOCOURSE_MODE" | "auto"
    cuda: bool
    device_name: str  # "cpu" or the GPU's name
    hub_reachable: bool | None  # None: not probed (mode forced, or no GPU so full was impossible)
    hub_note: str = ""
    standins: bool = False  # full mode on real-architecture stand-ins with RANDOM weights (LOCOCOURSE_STANDINS=1)


def _check_mode(value: str, where: str) -> str:
    v = str(value).strip().lower()
    if v not in MODES + (_AUTO,):
        raise ValueError(f"{where} must be one of 'fast', 'full' or 'auto'; got {value!r}. "
                         "'fast' runs on the CPU with the shipped course models, 'full' needs a GPU and the "
                         "Hugging Face hub for the paper's checkpoints, 'auto' picks one from this machine.")
    return v


def _gpu() -> tuple[bool, str]:
    import torch

    if torch.cuda.is_available():
        return True, torch.cuda.get_device_name(0)
    return False, "cpu"


def detect_mode(timeout: float = 2.0) -> ModeInfo:
    """The automatic choice: ``full`` with a CUDA GPU and a reachable hub, else ``fast``.

    The hub is probed only when a GPU is present (otherwise full mode is impossible anyway), and then
    with ``timeout`` seconds at most: this never hangs.
    """

    cuda, name = _gpu()
    if not cuda:
        return ModeInfo("fast", _AUTO, cuda, name, None, "no CUDA GPU, hub not probed")
    ok, why = registry.hub_reachable(timeout=timeout)
    return ModeInfo("full" if ok else "fast", _AUTO, cuda, name, ok, why)


def standins() -> bool:
    """Whether ``$LOCOCOURSE_STANDINS`` asks for real-architecture stand-ins (1/true/yes/on; 0/false/no/off/unset: no)."""
    raw = os.environ.get(STANDINS_ENV, "")
    v = raw.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError(f"the environment variable {STANDINS_ENV} must be 1 (run the full-mode cells on real-architecture "
                     f"stand-ins with random weights) or 0 / unset; got {raw!r}")


def mode_info() -> ModeInfo:
    """The mode in use: :func:`set_mode`, else ``$LOCOCOURSE_STANDINS`` (full on stand-ins), else
    ``$LOCOCOURSE_MODE``, else :func:`detect_mode` (cached)."""
    global _cache
    if _cache is not None:
        return _cache
    if _override is None and standins():
        env = os.environ.get(ENV_VAR, "").strip()
        if env and _check_mode(env, f"the environment variable {ENV_VAR}") == "fast":
            raise ValueError(f"{STANDINS_ENV}=1 runs the full-mode cells on stand-ins, but {ENV_VAR}=fast asks for "
                             f"fast mode; unset one of them")
        cuda, name = _gpu()
        _cache = ModeInfo("full", STANDINS_ENV, cuda, name, None, "stand-ins with random weights", standins=True)
        return _cache
    if _override is not None and _override != _AUTO:
        cuda, name = _gpu()
        _cache = ModeInfo(_override, "set_mode()", cuda, name, None)
    elif _override is None and os.environ.get(ENV_VAR, "").strip():
        env = _check_mode(os.environ[ENV_VAR], f"the environment variable {ENV_VAR}")
        if env == _AUTO:
            _cache = detect_mode()
        else:
            cuda, name = _gpu()
            _cache = ModeInfo(env, ENV_VAR, cuda, name, None)
    else:
        _cache = detect_mode()
    return _cache


def get_mode() -> str:
    """``"fast"`` or ``"full"``."""
    return mode_info().mode


def set_mode(mode: str) -> str:
    """Force ``"fast"`` or ``"full"`` for this process (``"auto"``: back to the environment / detection)."""
    global _override, _cache
    _override = _check_mode(mode, "the mode")
    _cache = None
    return get_mode()


def _reset() -> None:
    """Forget the override and the cached choice (for tests)."""
    global _override, _cache
    _override, _cache = None, None


def describe_mode() -> str:
    """One line for the top of each notebook: the mode, what it uses, and how it was chosen."""
    m = mode_info()
    if m.standins:
        what = ("the paper's architectures as stand-ins with seeded RANDOM weights (not the trained checkpoints: "
                "images are meaningless; shapes, memory and code paths are real)")
    else:
        what = ("CPU-sized problems and the shipped course models" if m.mode == "fast"
                else "the paper's hub checkpoints on the GPU")
    how = {"set_mode()": "set by set_mode()", ENV_VAR: f"set by {ENV_VAR}",
           STANDINS_ENV: f"set by {STANDINS_ENV}=1"}.get(m.source, "chosen automatically")
    dev = f"GPU {m.device_name}" if m.cuda else "no GPU"
    warn = ""
    if m.mode == "full" and not m.cuda:
        warn = " — warning: full mode without a CUDA GPU will be slow"
    return f"lococourse mode: {m.mode} ({what}; {how}; {dev}){warn}"


def device():
    """The torch device for learned models: the GPU when there is one, else the CPU (the analytic MoLRG code stays on the CPU)."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ---------------------------------------------------------------------------------------- full-mode models
@dataclass(frozen=True)
class FullModeSettings:
    """How a full-mode cell runs the paper's models: DDIM steps, power-method size and iterations, points."""

    label: str
    ddim_steps: int  # DDIM grid (the paper: 100 steps over T = 1000)
    r: int  # top-r of the masked Jacobian (Algorithm 1 step 4)
    r_null: int  # r′ of the nullspace projection (step 5)
    max_iter: int  # power-method iterations at most (Algorithm 2)
    tol: float
    n_points: int  # trajectories / images per measurement
    t2i_steps: dict  # sampling steps per T-LOCO family
    jacobian_pool: int  # T-LOCO: average-pool the decoded output before masking (1 = none)

    def describe(self) -> str:
        return (f"{self.label}: {self.ddim_steps} DDIM steps, r = {self.r}, r′ = {self.r_null}, at most "
                f"{self.max_iter} power iteration(s), {self.n_points} point(s)")


#: The paper's settings (Appendix G), for its checkpoints on a GPU.
PAPER_SETTINGS = FullModeSettings("the paper's settings (Appendix G)", 100, 5, 5, 50, 1e-4, 2,
                                  {"sd": 100, "if": 100, "lcm": 4}, 1)
#: Stand-ins on a CPU: the same code with far fewer DDIM steps and a single power iteration, so a real-size
#: network (113M–866M parameters, 30–120 s per forward pass on a shared 2-core CPU) finishes in minutes.
STANDIN_SETTINGS = FullModeSettings("stand-in settings (REDUCED to fit a CPU: not the paper's)", 5, 1, 1, 1, 1e-3, 1,
                                    {"sd": 4, "if": 4, "lcm": 4}, 8)


def full_mode_settings() -> FullModeSettings:
    """:data:`STANDIN_SETTINGS` when running on stand-ins, else :data:`PAPER_SETTINGS`."""
    return STANDIN_SETTINGS if mode_info().standins else PAPER_SETTINGS


def full_mode_model(name: str = "ddpm-celebahq-256"):
    """The paper's pixel DDPM ``name`` for a full-mode cell: a stand-in with RANDOM weights under
    ``LOCOCOURSE_STANDINS=1``, else the checkpoint from the local Hugging Face cache / the hub (on the GPU when
    there is one; :class:`~lococourse.models.registry.ModelNotAvailableError` when it cannot be had)."""
    if mode_info().standins:
        from lococourse.models.real_size import standin_model

        return standin_model(name)
    model = registry.load_model(name)
    model.unet.to(device())
    return model


def full_mode_t2i(name: str, family: str | None = None):
    """A T-LOCO pipeline for a full-mode cell: :func:`~lococourse.models.real_size.standin_t2i` (RANDOM weights,
    :data:`STANDIN_SETTINGS`' steps) under ``LOCOCOURSE_STANDINS=1``, else the checkpoint on the GPU in float16."""
    if mode_info().standins:
        from lococourse.models.real_size import standin_t2i

        spec = registry.get_spec(name)
        family = family or spec.family
        # latent families recompute their UNet/VAE blocks: a 512 px Jacobian with every activation stored does
        # not fit 24 GB (lococourse.models.recompute; T-LOCO's stand-in settings use forward_mode="jvp")
        return standin_t2i(name, num_steps=STANDIN_SETTINGS.t2i_steps[family], recompute=family in ("sd", "lcm"))
    import torch

    return registry.load_t2i(name, device="cuda", dtype=torch.float16)
