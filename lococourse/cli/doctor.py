"""``lococourse doctor``: what this environment can run, and for each problem what to do.

A report, not a gate: it always exits 0.  Each check is a :class:`Check` with a status —

* ``ok``: fine;
* ``info``: worth knowing, nothing to fix (e.g. no GPU: the course runs in fast mode);
* ``warn``: something the course needs (or full mode needs) is missing; ``advice`` says how to fix it.

Checks: Python / torch / diffusers versions, the GPU, whether the Hugging Face hub is reachable (the
registry's probe with a short timeout, in a thread so it can never hang), the course mode, the course
models shipped with the package, the paper's checkpoints in the local cache, and ipywidgets +
jupyterlab_widgets with the JupyterLab widget extension enabled.
"""
from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from lococourse.course.mode import ENV_VAR, describe_mode, mode_info
from lococourse.models import registry

__all__ = ["Check", "collect", "format_report", "add_arguments", "run", "REQUIRED_COURSE_MODELS", "INSTALL", "INSTALL_GPU"]

#: The course models notebooks 01–05 rely on (shipped in lococourse/assets/models).
REQUIRED_COURSE_MODELS = ("faces16", "faces32", "molrg_d48", "molrg_d192")
WIDGET_EXTENSION = "@jupyter-widgets/jupyterlab-manager"
HUB_TIMEOUT_S = 2.0

#: The README's install line (its first command without `&& jupyter lab`): CPU torch from PyTorch's CPU index.
INSTALL = ('pip install --no-deps "torch==2.13.0" --extra-index-url https://download.pytorch.org/whl/cpu && '
           'pip install "torch==2.13.0" -e ".[dev]"')
#: The same on a Linux machine with an NVIDIA GPU (PyPI's torch is the CUDA build there).
INSTALL_GPU = 'pip install "torch==2.13.0" -e ".[dev]"'
_REINSTALL = f"{INSTALL}  (from the repository root; with an NVIDIA GPU on Linux: {INSTALL_GPU})"


@dataclass
class Check:
    name: str
    status: str  # "ok" | "info" | "warn"
    detail: str
    advice: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------- probes (monkeypatchable)
def _version(dist: str) -> str | None:
    """Installed version of a distribution, or None."""
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _gpu() -> tuple[bool, str]:
    """(CUDA available, device name or why not)."""
    try:
        import torch
    except ImportError as e:  # torch missing is reported by the version check
        return False, f"torch not importable ({e})"
    if torch.cuda.is_available():
        return True, torch.cuda.get_device_name(0)
    return False, "torch.cuda.is_available() is False"


def _hub_probe(timeout: float = HUB_TIMEOUT_S) -> tuple[bool, str]:
    """The registry's hub probe, bounded by ``timeout`` + 1 s even if DNS resolution stalls."""

    result: list[tuple[bool, str]] = []
    th = threading.Thread(target=lambda: result.append(registry.hub_reachable(timeout=timeout)), daemon=True)
    th.start()
    th.join(timeout + 1.0)
    if not result:
        return False, f"no answer from the hub within {timeout + 1.0:.0f} s"
    return result[0]


def _labextension_dirs() -> list[Path]:
    """Folders where the JupyterLab widget extension is installed (prebuilt labextension)."""
    from jupyter_core.paths import jupyter_path

    return [Path(p) / WIDGET_EXTENSION for p in jupyter_path("labextensions")
            if (Path(p) / WIDGET_EXTENSION / "package.json").exists()]


def _disabled_extensions() -> set[str]:
    """Extensions disabled in any labconfig/page_config.json (``jupyter labextension disable``)."""
    from jupyter_core.paths import jupyter_config_path

    out: set[str] = set()
    for p in jupyter_config_path():
        f = Path(p) / "labconfig" / "page_config.json"
        if f.exists():
            try:
                dis = json.loads(f.read_text()).get("disabledExtensions", {})
            except (OSError, ValueError):
                continue
            out |= {k for k, v in (dis.items() if isinstance(dis, dict) else ((k, True) for k in dis)) if v}
    return out


# ---------------------------------------------------------------------------------------- checks
def _check_python() -> Check:
    v = sys.version_info
    s = f"{v.major}.{v.minor}.{v.micro} ({sys.executable})"
    if v < (3, 10):
        return Check("python", "warn", s, "lococourse needs Python ≥ 3.10: create a new environment with a newer Python.")
    return Check("python", "ok", s)


def _check_package(dist: str, why: str, fix: str) -> Check:
    v = _version(dist)
    if v is None:
        return Check(dist, "warn", f"not installed ({why})", fix)
    return Check(dist, "ok", v)


def _check_gpu() -> Check:
    ok, what = _gpu()
    if ok:
        return Check("gpu", "ok", f"CUDA available: {what}")
    return Check("gpu", "info", f"no CUDA GPU ({what}); the course runs in fast mode on the CPU",
                 "Nothing to fix for the course. For full mode (the paper's checkpoints) use a machine with an NVIDIA "
                 "GPU and a CUDA build of torch (on Colab: Runtime → Change runtime type → GPU).")


def _check_hub() -> Check:
    ok, why = _hub_probe()
    if ok:
        return Check("hub", "ok", "huggingface.co reachable")
    if "HF_HUB_OFFLINE" in why:
        advice = ("HF_HUB_OFFLINE is set, so the paper's checkpoints load only from the local cache. "
                  "Unset it (`unset HF_HUB_OFFLINE`) to download them; the course models need no network.")
    else:
        advice = ("The course models need no network (fast mode). For the paper's checkpoints, connect this machine "
                  "or download them elsewhere with `hf download <repo>` (huggingface_hub's command line) and copy the Hugging Face cache "
                  "(~/.cache/huggingface) here.")
    return Check("hub", "info", f"not reachable: {why}", advice)


def _check_mode(gpu_ok: bool, hub_ok: bool) -> Check:

    try:
        m = mode_info()
    except ValueError as e:
        return Check("mode", "warn", str(e), f"set {ENV_VAR} to 'fast' or 'full' (or unset it for the automatic choice).")
    line = describe_mode()
    if m.mode == "full" and not (gpu_ok and hub_ok):
        missing = " and ".join(w for w, ok in (("a GPU", gpu_ok), ("the hub", hub_ok)) if not ok)
        return Check("mode", "warn", line, f"full mode is forced but {missing} is missing here: unset {ENV_VAR} "
                     "or set it to 'fast' unless the paper's checkpoints are in the local cache.")
    return Check("mode", "ok", line)


def _check_course_models() -> list[Check]:

    try:
        models = registry.course_models()
    except (OSError, ValueError) as e:
        return [Check("course models", "warn", f"cannot read the model cards: {e}", f"reinstall lococourse: {_REINSTALL}")]
    out = []
    missing = [n for n in REQUIRED_COURSE_MODELS if n not in models]
    broken = [n for n, s in models.items() if not (Path(s.source) / "diffusion_pytorch_model.safetensors").exists()]
    if missing or broken:
        what = "; ".join(x for x in (f"missing: {', '.join(missing)}" if missing else "",
                                     f"without weights: {', '.join(broken)}" if broken else "") if x)
        out.append(Check("course models", "warn", what,
                         "The weights ship inside the package (lococourse/assets/models). If you cloned the repository "
                         f"with Git LFS pointers or a partial checkout, fetch the full files and reinstall: {_REINSTALL}. "
                         "To retrain one: python -m synthetic.<name>."))
    else:
        out.append(Check("course models", "ok", f"{len(models)} present: {', '.join(sorted(models))}"))
    return out


def _check_hub_cache() -> Check:

    try:
        cached = [n for n, s in registry.HUB_MODELS.items() if registry.availability(s, probe_network=False)[0]]
    except Exception as e:  # noqa: BLE001 — a report: any failure of the cache lookup is shown, not raised
        return Check("hub checkpoints", "info", f"could not read the Hugging Face cache ({type(e).__name__}: {e})")
    detail = f"{len(cached)} of {len(registry.HUB_MODELS)} of the paper's checkpoints in the local cache" + \
        (f": {', '.join(cached)}" if cached else "")
    return Check("hub checkpoints", "ok" if cached else "info", detail,
                 "" if cached else "Only needed for full mode: they download on first use when the hub is reachable "
                 "(`lococourse models` lists them).")


def _check_widgets() -> list[Check]:
    out = [_check_package("ipywidgets", "the notebooks' sliders need it", "pip install ipywidgets"),
           _check_package("jupyterlab_widgets", "JupyterLab's widget extension ships in it", "pip install jupyterlab_widgets")]
    if _version("jupyterlab") is None:
        out.append(Check("jupyterlab", "warn", "not installed", 'pip install jupyterlab  (or pip install -e ".[dev]")'))
        return out
    out.append(Check("jupyterlab", "ok", _version("jupyterlab")))
    dirs = _labextension_dirs()
    if not dirs:
        out.append(Check("widget extension", "warn", f"{WIDGET_EXTENSION} not found in any labextensions folder",
                         "pip install --force-reinstall jupyterlab_widgets (in the environment that runs JupyterLab), "
                         "then restart JupyterLab; `jupyter labextension list` should show it enabled."))
    elif WIDGET_EXTENSION in _disabled_extensions():
        out.append(Check("widget extension", "warn", f"{WIDGET_EXTENSION} installed but disabled",
                         f"jupyter labextension enable {WIDGET_EXTENSION}, then reload JupyterLab."))
    else:
        out.append(Check("widget extension", "ok", f"{WIDGET_EXTENSION} enabled ({dirs[0]})"))
    return out


def collect() -> list[Check]:
    """All checks, in report order."""
    checks = [_check_python(),
              _check_package("torch", "all computation", 'pip install --no-deps "torch==2.13.0" --extra-index-url '
                             "https://download.pytorch.org/whl/cpu (CPU), or without the index URL (CUDA build, Linux)"),
              _check_package("diffusers", "UNets, schedulers, hub checkpoints", "pip install diffusers"),
              _check_package("lococourse", "the course package", _REINSTALL)]
    gpu = _check_gpu()
    hub = _check_hub()
    checks += [gpu, hub, _check_mode(gpu.status == "ok", hub.status == "ok")]
    checks += _check_course_models()
    checks.append(_check_hub_cache())
    checks += _check_widgets()
    return checks


def summary(checks: list[Check]) -> dict:
    warn = [c.name for c in checks if c.status == "warn"]
    return {"ok": not warn, "warnings": warn,
            "counts": {s: sum(c.status == s for c in checks) for s in ("ok", "info", "warn")}}


def format_report(checks: list[Check]) -> str:
    mark = {"ok": "ok  ", "info": "info", "warn": "WARN"}
    w = max(len(c.name) for c in checks)
    lines = ["lococourse doctor"]
    for c in checks:
        lines.append(f"  [{mark[c.status]}] {c.name:<{w}}  {c.detail}")
        if c.advice and c.status != "ok":
            lines.append(f"  {'':6} {'':<{w}}  → {c.advice}")
    s = summary(checks)
    lines.append("all good: the course runs here." if s["ok"] else
                 f"{len(s['warnings'])} warning(s): {', '.join(s['warnings'])} — see the advice above.")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    checks = collect()
    if getattr(args, "json", False):
        print(json.dumps({"checks": [c.as_dict() for c in checks], "summary": summary(checks)}, indent=2,
                         ensure_ascii=False))
    else:
        print(format_report(checks))
    return 0  # a report: warnings never fail the command
