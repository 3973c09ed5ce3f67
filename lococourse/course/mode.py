"""Course mode: **fast** (CPU, the shipped course models, small sizes) or **full** (GPU + network: the paper's hub checkpoints).

The mode is chosen automatically — ``full`` when ``torch.cuda.is_available()`` *and* the Hugging Face
hub is reachable (the registry's probe, with a short timeout) — and overridden by one setting:

* the environment variable ``LOCOCOURSE_MODE=fast|full`` (read when the mode is first needed), or
* :func:`set_mode` (``"fast"``, ``"full"`` or ``"auto"`` to go back to the automatic choice).

Every notebook prints :func:`describe_mode` once at the top so a reader knows what it ran on.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from lococourse.models import registry

__all__ = ["MODES", "ENV_VAR", "ModeInfo", "detect_mode", "get_mode", "mode_info", "set_mode", "describe_mode", "device"]

MODES = ("fast", "full")
ENV_VAR = "LOCOCOURSE_MODE"
_AUTO = "auto"

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


def mode_info() -> ModeInfo:
    """The mode in use: :func:`set_mode`, else ``$LOCOCOURSE_MODE``, else :func:`detect_mode` (cached)."""
    global _cache
    if _cache is not None:
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
    what = ("CPU-sized problems and the shipped course models" if m.mode == "fast"
            else "the paper's hub checkpoints on the GPU")
    how = {"set_mode()": "set by set_mode()", ENV_VAR: f"set by {ENV_VAR}"}.get(m.source, "chosen automatically")
    dev = f"GPU {m.device_name}" if m.cuda else "no GPU"
    warn = ""
    if m.mode == "full" and not m.cuda:
        warn = " — warning: full mode without a CUDA GPU will be slow"
    return f"lococourse mode: {m.mode} ({what}; {how}; {dev}){warn}"


def device():
    """The torch device for learned models: the GPU when there is one, else the CPU (the analytic MoLRG code stays on the CPU)."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
