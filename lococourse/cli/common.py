"""What every subcommand shares: one error style, checks that run before any model work, and outputs that are
written all together or not at all.

* **Errors**: ``lococourse <cmd>: error: <what> <value>; <what is allowed>`` on stderr, exit status 2, no
  traceback (``--debug`` shows it).  An interrupt (Ctrl-C) exits 130 and leaves no output behind.
* **Outputs** (:class:`Outputs`): checked before the model is loaded — never an input, never inside a model
  folder (nor the package's model store or the Hugging Face cache), refused if they exist unless
  ``--overwrite``, their folder writable — then written to temporary files beside their targets and renamed
  into place together at the end, with Ctrl-C held off while the renames run: all of them, or none.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from lococourse.core.checks import MAX_SEED, MAX_STRENGTH
from lococourse.data.images import ImageError, read_image
from lococourse.data.images import write_png as write_array_png
from lococourse.editing.direction import DirectionError
from lococourse.models.ddim import ddim_grid
from lococourse.models.registry import ASSETS

__all__ = ["CLIError", "Outputs", "run_command", "progress", "number", "integer", "check_strength_arg",
           "check_seed_arg", "check_t_arg", "check_tol_arg", "check_max_iter_arg", "read_png", "write_png",
           "is_model_folder", "model_folder_of", "INTERRUPTED"]

#: Exit status of a command stopped by Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130

#: Files that make a folder a model folder (diffusers, transformers, lococourse's course models, the hub cache).
MODEL_MARKERS = ("card.json", "model_index.json", "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
                 "model.safetensors", "pytorch_model.bin", "scheduler_config.json")


class CLIError(ValueError):
    """A bad command line: printed as ``lococourse <cmd>: error: <message>``, exit status 2."""


# ---------------------------------------------------------------------------------------- running a command
def run_command(name: str, fn: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """``fn(args)`` with the one error style: bad input → exit 2, Ctrl-C → 130, a bug → 1; ``--debug`` re-raises."""
    debug = bool(getattr(args, "debug", False))
    try:
        return int(fn(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"lococourse {name}: interrupted; no output was written", file=sys.stderr)
        return INTERRUPTED
    except (ValueError, TypeError, OSError, ImageError, DirectionError) as e:
        if debug:
            raise
        print(f"lococourse {name}: error: {_message(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 — never a traceback unasked; --debug shows it
        if debug:
            raise
        print(f"lococourse {name}: error: unexpected {type(e).__name__}: {e} (this is a bug in lococourse; "
              "rerun with --debug for the traceback and report it)", file=sys.stderr)
        return 1


def _message(e: BaseException) -> str:
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        return f"{e.filename}: {e.strerror}"
    return str(e) or type(e).__name__


def progress(args, msg: str) -> None:
    """A time-stamped progress line on stderr (``--quiet`` silences it)."""
    if not getattr(args, "quiet", False):
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def note(path_or_what, text: str) -> None:
    """A conversion made on an input, said once on stderr."""
    print(f"lococourse: note: {path_or_what}: {text}", file=sys.stderr)


# ---------------------------------------------------------------------------------------- argument types
def number(s: str) -> float:
    """argparse type: a decimal number (range checks come later, with the model in hand)."""
    try:
        return float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a number; give a decimal number such as 0.5") from None


def integer(s: str) -> int:
    """argparse type: a whole number."""
    try:
        return int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not an integer; give a whole number such as 3") from None


def check_strength_arg(lam: float, flag: str = "--strength") -> float:
    if not math.isfinite(lam) or abs(lam) > MAX_STRENGTH:
        raise CLIError(f"{flag} {lam:g} is not allowed; λ must be a finite number with |λ| ≤ {MAX_STRENGTH:g} "
                       "(directions are unit vectors, ‖x_t‖ ≈ √d; the paper uses |λ| ≤ 50)")
    return float(lam)


def check_seed_arg(seed: int | None, flag: str = "--seed") -> int | None:
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise CLIError(f"{flag} {seed} is out of range; a seed is an integer in 0 … 2⁶⁴ − 1 = {MAX_SEED}")
    return seed


def check_t_arg(t: float, flag: str = "--t") -> float:
    """t in (0, 1] whose nearest time on the paper's 100-step DDIM grid is not the clean end (t = 0)."""
    if not math.isfinite(t) or not 0 < t <= 1:
        raise CLIError(f"{flag} {t:g} is out of range; t must lie in (0, 1]")
    grid = ddim_grid()
    if grid.snap(t) == 0:
        first = float(grid.t[1])
        raise CLIError(f"{flag} {t:g} is too small: it snaps to t = 0 (the clean image) on the 100-step DDIM grid; "
                       f"t must be at least {first / 2:.4g} (the first grid time is {first:g})")
    return float(t)


def check_tol_arg(tol: float, flag: str = "--tol") -> float:
    if not math.isfinite(tol) or not 0 < tol < 1:
        raise CLIError(f"{flag} {tol:g} is not allowed; the power-method tolerance must be a number in (0, 1), "
                       "e.g. 1e-3")
    return float(tol)


def check_max_iter_arg(n: int, flag: str = "--max-iter") -> int:
    if not 1 <= n <= 100_000:
        raise CLIError(f"{flag} {n} is not allowed; the power method needs 1 … 100000 iterations")
    return n


def check_count_arg(n: int, flag: str, low: int = 1, high: int | None = None, what: str = "") -> int:
    if n < low or (high is not None and n > high):
        rng = f"{low} … {high}" if high is not None else f"≥ {low}"
        raise CLIError(f"{flag} {n} is out of range; {what or flag} must be an integer {rng}")
    return n


# ---------------------------------------------------------------------------------------- images
def read_png(path: str, shape, *, flag: str = "--image"):
    """An image file as a (C, H, W) float32 tensor in [-1, 1]; refuses another size; says what it converted."""
    c, h, w = shape
    if not str(path).strip():
        raise CLIError(f"{flag} '' is empty; give an image file (PNG) of {w}×{h} pixels")
    try:
        arr, notes = read_image(path, channels=c)
    except ImageError as e:
        raise CLIError(f"{flag}: {e}") from e
    except FileNotFoundError as e:
        raise CLIError(f"{flag} {path} does not exist; give an image file (PNG) of {w}×{h} pixels") from e
    if arr.shape[:2] != (h, w):
        raise CLIError(f"{flag} {path} is {arr.shape[1]}×{arr.shape[0]} pixels; the model makes {w}×{h} images: "
                       f"resize it to {w}×{h} first")
    for n in notes:
        note(path, n)
    x = torch.from_numpy(arr.astype(np.float32) * 2.0 - 1.0)  # (H, W, C) in [-1, 1]
    return x.permute(2, 0, 1).contiguous()


def png_array(x):
    """A (C, H, W) image in [-1, 1] as an (H, W, C) uint8 array (values clamped to [-1, 1] for the file only)."""
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"the image to write holds {int((~torch.isfinite(x)).sum())} NaN or infinite values; nothing "
                         "was written (λ too large for this model?)")
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()


def write_png(x, path: Path) -> Path:
    """A (C, H, W) image in [-1, 1] as a PNG, written atomically."""
    return write_array_png(png_array(x), path)


# ---------------------------------------------------------------------------------------- outputs
def is_model_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a model (a diffusers/transformers folder, a course model, a pipeline)."""
    if any((folder / m).exists() for m in MODEL_MARKERS):
        return True
    cfg = folder / "config.json"
    if cfg.is_file():
        try:
            c = json.loads(cfg.read_text())
        except (OSError, UnicodeDecodeError, ValueError):
            return False
        return isinstance(c, dict) and any(k in c for k in ("_class_name", "_diffusers_version", "architectures"))
    return False


def _protected_roots() -> list[Path]:
    roots = [ASSETS.resolve()]
    try:
        from huggingface_hub import constants

        roots.append(Path(constants.HF_HUB_CACHE).resolve())
    except (ImportError, AttributeError):  # pragma: no cover
        pass
    return roots


def model_folder_of(path: Path, model_dirs: Iterable[Path] = ()) -> Path | None:
    """The model folder (or protected model store) that ``path`` would be written inside, or None."""
    rp = Path(os.path.abspath(path)).resolve()
    dirs = [Path(d).resolve() for d in model_dirs] + _protected_roots()
    for d in dirs:
        if rp == d or d in rp.parents:
            return d
    for parent in rp.parents:
        if parent.is_dir() and is_model_folder(parent):
            return parent
    return None


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return Path(os.path.abspath(a)).resolve() == Path(os.path.abspath(b)).resolve()


class Outputs:
    """The files one command writes, checked now and written together later (see the module docstring).

    ``outputs``: (label, path) pairs, e.g. ``("--out", Path("x.png"))``; ``inputs``: (label, path) pairs of
    every file the command reads; ``model_dirs``: folders of the models it uses.
    """

    def __init__(self, outputs: list[tuple[str, Path]], *, overwrite: bool = False,
                 inputs: Iterable[tuple[str, Path | str | None]] = (), model_dirs: Iterable[Path | str] = ()):
        self.outputs = [(label, Path(p)) for label, p in outputs]
        self.inputs = [(label, Path(p)) for label, p in inputs if p is not None and str(p).strip()]
        self.model_dirs = [Path(d) for d in model_dirs]
        self.overwrite = overwrite
        self._staged: dict[Path, Path] = {}
        self._made_dirs: list[Path] = []
        self.committed = False
        self.check()

    @property
    def paths(self) -> list[Path]:
        return [p for _, p in self.outputs]

    def _describe(self, label: str, p: Path) -> str:
        return f"{label} {p}" if label.startswith("--") else f"{p} ({label})"

    def check(self) -> None:
        """Refuse any output that is an input, inside a model folder, existing (unless overwrite), or unwritable."""
        names = ", ".join(str(p) for p in self.paths)
        seen: dict[Path, str] = {}
        for label, p in self.outputs:
            what = self._describe(label, p)
            if not str(p).strip() or p.name in ("", ".", ".."):
                raise CLIError(f"{what} is not a file name; give a new file such as out.png")
            rp = Path(os.path.abspath(p)).resolve()
            if rp in seen:
                raise CLIError(f"{what} is also {seen[rp]}; each output needs its own file")
            seen[rp] = what
            for in_label, q in self.inputs:
                if _same_file(p, q) or (q.is_dir() and (rp == q.resolve() or q.resolve() in rp.parents)):
                    rel = "is" if not q.is_dir() else "lies inside"
                    raise CLIError(f"{what} {rel} the input {in_label} {q}; an output must never overwrite an input — "
                                   "choose another name")
            inside = model_folder_of(p, self.model_dirs)
            if inside is not None:
                raise CLIError(f"{what} lies inside the model folder {inside}; outputs are never written into a model "
                               "folder (it could replace the model's own files) — choose another folder")
            if p.is_dir():
                raise CLIError(f"{what} is a folder; give a file name inside it, e.g. {p / 'out.png'}")
            if p.exists() and not self.overwrite:
                raise CLIError(f"{what} already exists; pass --overwrite to replace {names}, or choose another name")
            self._check_writable(what, p)

    @staticmethod
    def _check_writable(what: str, p: Path) -> None:
        anc = Path(os.path.abspath(p)).parent
        while not anc.exists():
            anc = anc.parent
        if not anc.is_dir():
            raise CLIError(f"{what} cannot be created: {anc} is a file, not a folder")
        try:  # a real probe (os.access says yes to root even on a read-only file system)
            fd, probe = tempfile.mkstemp(prefix=".lococourse-probe-", dir=anc)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise CLIError(f"{what} cannot be written: its folder {anc} is not writable ({e.strerror or e}); "
                           "choose a folder you can write to") from e

    # ---------------------------------------------------------------- writing
    def stage(self, path: Path, write: Callable[[Path], object]) -> None:
        """Write ``path``'s content now, to a temporary file beside it (``write(tmp_path)``)."""
        path = Path(path)
        if path not in self.paths:
            raise ValueError(f"{path} is not one of this command's checked outputs {self.paths}")
        missing = []
        d = path.parent
        while not d.exists():
            missing.append(d)
            d = d.parent
        for d in reversed(missing):
            d.mkdir()
            self._made_dirs.append(d)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        self._staged[path] = Path(tmp)
        write(Path(tmp))
        os.chmod(tmp, 0o644)

    def commit(self) -> list[Path]:
        """Rename every staged file onto its target, with Ctrl-C held until all are in place."""
        unstaged = [p for p in self.paths if p not in self._staged]
        if unstaged:
            raise ValueError(f"outputs {unstaged} were never written")
        with _sigint_held() as got:
            for path in self.paths:
                os.replace(self._staged[path], path)
            self._staged.clear()
            self.committed = True
        if got:
            print("lococourse: note: interrupt received while the outputs were being renamed into place; all of them "
                  "were written", file=sys.stderr)
        return self.paths

    def discard(self) -> None:
        """Remove every temporary file (and the folders this command made), leaving no trace."""
        for tmp in self._staged.values():
            with contextlib.suppress(OSError):
                tmp.unlink()
        self._staged.clear()
        for d in reversed(self._made_dirs):
            with contextlib.suppress(OSError):
                d.rmdir()
        self._made_dirs.clear()

    def __enter__(self) -> "Outputs":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.committed:
            self.discard()


@contextlib.contextmanager
def _sigint_held():
    """Defer SIGINT (Ctrl-C) for the duration (main thread only); yields the list of signals received."""
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return
    old = signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
    try:
        yield got
    finally:
        signal.signal(signal.SIGINT, old)
