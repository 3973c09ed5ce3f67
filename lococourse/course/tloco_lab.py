"""Notebook 08's runs of T-LOCO (Algorithms 3 and 4), for three kinds of pipeline, chosen by the course mode:

* ``"tiny"``    — fast mode: tiny random-weight pipelines of the three families (16–32 px), offline;
* ``"paper"``   — full mode with a GPU and the checkpoints: the paper's SD-2.1-base, DeepFloyd IF-I-M and LCM
  (:func:`lococourse.course.mode.full_mode_t2i`), with the paper's settings (Appendix G.3);
* ``"standin"`` — ``LOCOCOURSE_STANDINS=1``: the same three architectures at their real size with seeded
  RANDOM weights (:func:`lococourse.models.real_size.standin_t2i`), with the reduced settings of
  :data:`lococourse.course.mode.STANDIN_SETTINGS` so that the full-mode code runs on a CPU.

:func:`run_tloco` runs both algorithms per family, checks what they guarantee whatever the weights (λ = 0 is
plain sampling, v_p is a unit vector orthogonal to V̄, d vanishes outside Ω) while the family's pipeline is in
memory, and keeps the pipelines only when asked (real-size pipelines hold 2–6 GB each).
Pure compute; the figure is :func:`lococourse.course.viz_edit.plot_tloco_grid`.
"""
from __future__ import annotations

import contextlib
import gc
import os
import time
from dataclasses import dataclass, field

import torch

from lococourse.course.mode import STANDIN_SETTINGS, full_mode_t2i, mode_info
from lococourse.editing import tloco
from lococourse.editing.masks import rectangle
from lococourse.models import registry
from lococourse.models.t2i import FAMILIES, FAMILY_DEFAULTS
from lococourse.models.tiny import tiny_pipeline

__all__ = ["HUB", "SOURCE", "EDIT", "FAMILIES_ENV", "standin_families", "TINY_SOURCE", "TINY_EDIT", "KINDS", "TLocoSetup", "tloco_setup", "eyes_band", "load_pipeline", "FamilyChecks",
           "TLocoRun", "run_tloco"]

#: The paper's checkpoints per family (registry names).
HUB = {"sd": "sd-2.1-base", "if": "deepfloyd-if-i-m", "lcm": "lcm-dreamshaper-v7"}
SOURCE, EDIT = "a photo of a man", "a photo of a man wearing glasses"
#: The tiny pipelines read 14 characters of a prompt (one token per character, 16 with BOS/EOS): shorter prompts
#: that still differ, so that the edit prompt is not cut back to the source prompt.
TINY_SOURCE, TINY_EDIT = "a man", "a man in glasses"
KINDS = ("tiny", "paper", "standin")
#: Memory (GB) a real-size Algorithm 4 needs on a CPU in float32.  Without recomputation SD-2.1-base's J_eᵀd did not fit
#: 24 GB (CFG batch 3 of stored UNet activations plus the 512² VAE decoder's, ≈ 21 GB with the weights); the stand-ins
#: now recompute their blocks (lococourse.models.recompute), and the slow test measured a 11.8 GB peak — the same 20 GB
#: floor as its skip in tests/models/test_real_size_end_to_end.py.  A stand-in run skips that variant, and says so,
#: on a machine with less memory.
STANDIN_TEXT_NEEDS_GB = {"sd": 20.0}
#: A stand-in run stops its own process (``lococourse.models.real_size.memory_guard``) above this resident memory
#: (at most 85 % of the machine's): on a shared machine that is better than the kernel's OOM killer picking another
#: process.  Without recomputation SD-2.1-base's Algorithm 3 peaked near 20 GB on a CPU; with it, 11 GB.
STANDIN_MEMORY_LIMIT_GB = 21.0
#: Which families a stand-in run covers (comma-separated, default all three): a real-size run of all three takes
#: about two hours on a 2-core CPU, and SD's and LCM's peaks (12 and 18 GB) do not fit one 24 GB machine side by
#: side — so the families can be run one at a time, e.g. ``LOCOCOURSE_STANDIN_FAMILIES=lcm``.
FAMILIES_ENV = "LOCOCOURSE_STANDIN_FAMILIES"


@dataclass(frozen=True)
class TLocoSetup:
    """Which pipelines notebook 08 runs, with what settings, and why."""

    kind: str  # "tiny" | "paper" | "standin"
    why: str
    settings: dict  # r_null, max_iter, tol, jacobian_pool for both algorithms
    r: int  # Algorithm 3's top-r
    strengths: dict  # family → ((unsupervised λs), (text λs)), λ = 0 first
    families: tuple = FAMILIES  # the families run_tloco runs by default

    @property
    def prompts(self) -> tuple[str, str]:
        """(source, edit) prompts: the notebook's, shortened for the tiny pipelines' 14-character prompts."""
        return (TINY_SOURCE, TINY_EDIT) if self.kind == "tiny" else (SOURCE, EDIT)

    @property
    def random_weights(self) -> bool:
        return self.kind != "paper"

    def describe(self) -> str:
        what = {"tiny": "TINY RANDOM-WEIGHT pipelines (16–32 px): the images are patterns from random weights, not photos",
                "paper": "THE PAPER'S CHECKPOINTS on the GPU (Appendix G.3 settings)",
                "standin": "REAL-SIZE STAND-INS with seeded RANDOM weights (SD-2.1-base, IF-I-M, LCM architectures): "
                           "not the trained checkpoints, the images mean nothing; settings REDUCED to fit a CPU"}[self.kind]
        return f"{what} — {self.why}; settings {self.settings}, r = {self.r}"


def _strengths(family: str, short: bool) -> tuple:
    d = FAMILY_DEFAULTS[family]
    if short:  # one edit per variant: a real-size decode per λ costs minutes on a CPU
        return (0.0, d["strength"][1]), (0.0, d["text_strength"][1])
    return (0.0, *d["strength"]), (0.0, *d["text_strength"])


def standin_families(value: str | None = None) -> tuple:
    """The families of a stand-in run: ``value`` (default ``$LOCOCOURSE_STANDIN_FAMILIES``), comma-separated names
    from :data:`~lococourse.models.t2i.FAMILIES`; unset or empty: all of them, in their usual order."""
    raw = os.environ.get(FAMILIES_ENV, "") if value is None else value
    names = [n.strip().lower() for n in raw.split(",") if n.strip()]
    bad = [n for n in names if n not in FAMILIES]
    if bad:
        raise ValueError(f"{FAMILIES_ENV} must list families from {', '.join(FAMILIES)} (comma-separated); got {raw!r}")
    return tuple(f for f in FAMILIES if f in names) if names else FAMILIES


def tloco_setup() -> TLocoSetup:
    """The setup the course mode asks for: stand-ins under ``LOCOCOURSE_STANDINS=1``; the paper's checkpoints in
    full mode when CUDA is there and all three are in the local cache; the tiny pipelines otherwise."""
    m = mode_info()
    if m.standins:
        s = STANDIN_SETTINGS
        # forward_mode="jvp", one direction per call: the only knobs with which a real-size SD linearisation fits 24 GB
        # (the double-backward default also keeps the backward's graph; measured in tests/models/test_real_size_end_to_end.py)
        settings = dict(r_null=s.r_null, max_iter=s.max_iter, tol=s.tol, jacobian_pool=s.jacobian_pool, chunk=1,
                        forward_mode="jvp")
        fams = standin_families()
        which = "" if fams == FAMILIES else f"; families {', '.join(fams)} only ({FAMILIES_ENV})"
        return TLocoSetup("standin", f"set by LOCOCOURSE_STANDINS=1; {s.describe()}{which}", settings, s.r,
                          {f: _strengths(f, True) for f in FAMILIES}, fams)
    available = {f: registry.availability(registry.HUB_MODELS[n])[0] for f, n in HUB.items()}
    if m.mode == "full" and torch.cuda.is_available() and all(available.values()):
        return TLocoSetup("paper", "full mode, CUDA and all three checkpoints in the local cache",
                          dict(r_null=5, max_iter=30, tol=1e-3, jacobian_pool=1), 5,
                          {f: _strengths(f, False) for f in FAMILIES})
    missing = [HUB[f] for f, ok in available.items() if not ok]
    why = (f"{m.mode} mode" + ("" if torch.cuda.is_available() else ", no CUDA")
           + (f", not in the local cache: {', '.join(missing)}" if missing else ""))
    return TLocoSetup("tiny", why, dict(r_null=2, max_iter=3, tol=1e-3, jacobian_pool=1), 3,
                      {f: _strengths(f, False) for f in FAMILIES})


def eyes_band(out_shape) -> torch.Tensor:
    """Ω of notebook 08: a band over the eyes of the decoded (C, H, W) image (columns W/4 … 3W/4, rows H/4 … H/2)."""
    _, h, w = tuple(out_shape)
    return rectangle((h, w), w // 4, h // 4, 3 * w // 4, h // 2 + 1)


def load_pipeline(setup: TLocoSetup, family: str):
    """The family's pipeline for this setup (tiny: seed 0; stand-in / paper: :func:`full_mode_t2i`)."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}; got {family!r}")
    if setup.kind == "tiny":
        return tiny_pipeline(family, seed=0)
    return full_mode_t2i(HUB[family], family)


@dataclass
class FamilyChecks:
    """What T-LOCO guarantees whatever the weights, for one family and both variants."""

    family: str
    lambda0_is_plain: dict  # variant → λ = 0 reproduces plain sampling with the source prompt
    edit_changes: dict  # variant → the largest λ changes the image
    unit: dict  # variant → ‖v_p‖ = 1
    d_outside_mask_zero: bool | None  # Algorithm 4: d = P_Ω(…) vanishes outside Ω (None: Algorithm 4 not run)
    orthogonal_to_Vbar: bool | None  # Algorithm 4: V̄ᵀ v_p = 0 (True when r′ = 0; None: not run)

    @property
    def all_hold(self) -> bool:
        """Every check of the variants that ran holds."""
        return (all(self.lambda0_is_plain.values()) and all(self.edit_changes.values()) and all(self.unit.values())
                and self.d_outside_mask_zero is not False and self.orthogonal_to_Vbar is not False)


@dataclass
class TLocoRun:
    setup: TLocoSetup
    results: dict  # "family variant" → (family, TEditResult)
    masks: dict  # family → (H, W) Ω of the decoded image
    checks: dict  # family → FamilyChecks
    models: dict = field(default_factory=dict)  # family → T2IModel, when kept
    seconds: dict = field(default_factory=dict)  # family → wall time of both algorithms and the checks
    skipped: dict = field(default_factory=dict)  # "family variant" → why it was not run


def _checks(family, m, unsup, text) -> FamilyChecks:
    plain = tloco.sample(m, seed=0)
    lam0, changes, unit = {}, {}, {}
    for kind, res in (("unsupervised", unsup), ("text", text)):
        if res is None:
            continue
        lam0[kind] = bool(torch.allclose(res.edited[0].float(), plain.float(), atol=1e-3))
        changes[kind] = bool((res.edited[-1].float() - plain.float()).abs().max() > 1e-3)
        unit[kind] = abs(float(res.direction.v.float().norm()) - 1) < 1e-4
    if text is None:
        return FamilyChecks(family, lam0, changes, unit, None, None)
    td = text.text
    mask = td.direction.mask.to(td.d.device)
    outside_zero = bool((td.d[~mask] == 0).all())
    ortho = True if td.Vbar is None else float((td.Vbar.T @ text.direction.v.reshape(-1).to(td.Vbar)).abs().max()) < 1e-4
    return FamilyChecks(family, lam0, changes, unit, outside_zero, ortho)


def _memory_gb() -> float:
    """This machine's physical memory in GB."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9


def run_tloco(setup: TLocoSetup | None = None, families=None, source: str | None = None, edit: str | None = None,
              keep_models: bool | None = None, progress=print) -> TLocoRun:
    """Algorithms 3 and 4 for each family, with the checks; keeps the pipelines when ``keep_models``
    (default: only the tiny ones — real-size pipelines are freed after their family has run).
    ``source``/``edit`` default to ``setup.prompts``, ``families`` to ``setup.families``."""
    setup = tloco_setup() if setup is None else setup
    families = setup.families if families is None else tuple(families)
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise ValueError(f"families must be among {FAMILIES}; got {unknown}")
    source = setup.prompts[0] if source is None else source
    edit = setup.prompts[1] if edit is None else edit
    keep = setup.kind == "tiny" if keep_models is None else bool(keep_models)
    results, masks, checks, models, seconds, skipped = {}, {}, {}, {}, {}, {}
    guard = contextlib.nullcontext()
    if setup.kind == "standin":
        from lococourse.models.real_size import memory_guard

        guard = memory_guard(min(STANDIN_MEMORY_LIMIT_GB, 0.85 * _memory_gb()), "a T-LOCO stand-in run")
    with guard:
        _run_families(setup, families, source, edit, keep, progress, results, masks, checks, models, seconds, skipped)
    return TLocoRun(setup, results, masks, checks, models, seconds, skipped)


def _run_families(setup, families, source, edit, keep, progress, results, masks, checks, models, seconds, skipped):
    for fam in families:
        t0 = time.perf_counter()
        if progress and setup.kind != "tiny":
            progress(f"{fam}: loading the {setup.kind} pipeline ({HUB[fam]})")
        pipe = load_pipeline(setup, fam)
        m = pipe.with_prompts(source, edit)
        if setup.kind == "standin":
            pipe.text_encoder = None  # the prompts are encoded; T-LOCO never encodes again: free its 0.5–1.4 GB
        masks[fam] = eyes_band(m.out_shape)
        lam_u, lam_t = setup.strengths[fam]
        if progress and setup.kind != "tiny":
            progress(f"{fam}: Algorithm 3 (unsupervised)")
        unsup = tloco.t_loco_unsupervised(m, masks[fam], None, lam_u, seed=0, r=setup.r, **setup.settings)
        need = STANDIN_TEXT_NEEDS_GB.get(fam) if setup.kind == "standin" else None
        results[f"{fam} unsupervised"] = (fam, unsup)
        if need is not None and _memory_gb() < need:
            text = None
            skipped[f"{fam} text"] = (f"Algorithm 4 at real size needs about {need:.0f} GB; this machine has "
                                      f"{_memory_gb():.0f} GB")
            if progress:
                progress(f"{fam}: Algorithm 4 skipped — {skipped[f'{fam} text']}")
        else:
            if progress and setup.kind != "tiny":
                progress(f"{fam}: Algorithm 4 (text-supervised)")
            text = tloco.t_loco_text(m, masks[fam], None, lam_t, seed=0, **setup.settings)
            results[f"{fam} text"] = (fam, text)
        checks[fam] = _checks(fam, m, unsup, text)
        if keep:
            models[fam] = m
        else:
            del m, pipe
            gc.collect()
        seconds[fam] = time.perf_counter() - t0
        if progress and setup.kind != "tiny":
            progress(f"{fam}: done in {seconds[fam]:.0f} s")
