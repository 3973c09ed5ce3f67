"""Benchmark: a Table-1-style comparison of editing directions on the procedural-faces model, measured.

    python benchmarks/bench_loco_table.py [--model faces32] [--t 0.6] [--images 20] [--transfers 3]
                                          [--strength auto|L] [--quick] [--workers 2] [--out benchmarks/results/loco_table.md]

The paper's Table 1 asks human raters whether an edit changed "only one major feature" (local-edit
success) and whether a transferred edit "changed the same features" (transfer success).  On the
procedural faces (lococourse.data.faces) both questions have measurable answers: the factor
estimator of lococourse.eval reads the 9 factors off every image, and a factor *changed* when
its estimate moved by more than its threshold τ (set from the estimator's measured noise).

Protocol (every number below is measured in this run):

1. **Thresholds** — lococourse.eval.calibrate_thresholds on the DDIM reconstructions of held-out
   calibration faces (seeds 1000+): known single-factor changes are injected through the renderer
   (with pixel noise), and τ_j = max(0.05, 2 × the 95 % quantile of the estimated change of the
   *other* factors j); 0.05 (5 % of a factor's range) is the smallest change we call a feature change.
   A sensitivity table recomputes both success rates with every τ halved and doubled.
2. **Strength λ** — the course cards carry no edit strength, so a short sweep on the calibration faces
   picks one per part: the smallest λ of the grid √d·(1/32, 1/16, 1/8, 1/4, 1/2) (the paper's λ = 15 at
   256 px is ≈ √d/30) at which LOCO's edit visibly changes the masked part (some factor of the part
   beyond τ) in at least half of the (face, ±λ) cases.  Directions are unit vectors in x_t-space, so a
   large part (the background) needs a larger λ than a small one (the mouth), as the paper's per-edit
   strengths do.  Every method uses the part's λ; a transfer keeps its source part's λ.
   ``--strength L`` fixes one λ for every part instead.
3. **Evaluation faces** — seeds 0 … n−1 (``sample_faces(1, seed)``), each DDIM-inverted through the
   model to t (lococourse.editing.loco.invert, the 100-step grid), with its ground-truth part masks.  The
   reference of every edit is the λ = 0 reconstruction DDIM(x_t, 0) (the model's own reconstruction
   error cancels).
4. **Directions**, per image and part (k = 0, r = 5): ``loco`` (Algorithm 1, r' = 5), ``no_projection``
   (r' = 0), ``eps_unmasked`` (∂ε/∂x_t without mask or projection, Appendix G.2), ``pmp_unmasked``
   (∂x̂₀/∂x_t without mask or projection).  One linearisation of the PMP per image serves every
   method and part (faces_eval.JacobianViews); the unmasked Jacobians' top-r SVDs are computed once
   per image, and for each part the one of their r directions whose image response lies most inside
   the part's mask is used (their most favourable reading).
5. **Edits** at ±λ: local-edit success (faces_eval.local_edit_success: a factor of the masked part
   changed beyond τ and no other part's did), leakage (RMS change outside Ω / inside Ω), SSIM
   outside Ω (Ω pasted back), each against the reconstruction.
6. **Transfer**: each direction is added unchanged to the x_t of the next ``--transfers`` faces
   (cyclically) at the same ±λ; success (faces_eval.transfer_success) when the same factors change in
   the same directions as in the source edit.  A looser column (faces_eval.transfer_main_success) asks
   only that the source edit's main factor change the same way in the target.
6b. **Selection** (row ``loco_select``, ours): per face and part, the one of ``loco_cores`` (band keeping the
   cores of Ω's holes + sampler), its ridge and its ridge + refine whose two ±λ edits of the face have the least mean pixel leakage (RMS change outside Ω / inside Ω
   against the reconstruction; lococourse.editing.select.most_local) — what a user who samples the three
   candidates and keeps the most local-looking edit gets.  It uses no factor estimate; its records and
   transfers are the chosen candidate's, and its learning time is the three candidates' together.
7. **Times**: learning time = the shared linearisation + the power method(s) the method needs for one
   direction (what finding that one direction costs on its own); transfer time = DDIM-Inv of the new
   image + DDIM sampling of one edit, timed one image at a time.

Writes the table (markdown, with settings, thresholds, per-part breakdown) to ``--out`` and the raw
numbers to the same stem with .json; prints the table; an existing output is kept unless ``--overwrite``.
``--rescore JSON`` rebuilds every table from the factor changes recorded in a saved JSON (no model needed).
``--merge BASE.json EXTRA.json`` adds the rows of EXTRA (a run of the same protocol with ``--methods``) to BASE's
table: it refuses unless the two runs' settings, thresholds and λ agree and the rows they share (``loco``, the
paper's row, the upper bound) have the same records, so the new rows are scored against the same baseline.
``--workers N`` edits the faces in N processes (each with ``--threads`` torch threads and its own copy of the model; the thresholds, λ and the inverted faces are
computed once and shared): the records are the same as one process's, in the same order.  ``--quick``: 3 faces, 2 transfers, λ = √d/16,
fewer power iterations (a smoke run; writes loco_table_quick.md).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from lococourse.data.faces import FACTOR_NAMES, FACTOR_PARTS, PARTS
from lococourse.data.images import atomic_write
from lococourse.editing.loco import SAMPLER_STEPS, invert
from lococourse.editing.select import most_local
from lococourse.editing.strength import default_strength_grid
from lococourse.eval.decisions import (
    calibrate_thresholds,
    changed_parts,
    local_edit_success,
    transfer_main_success,
    transfer_part_success,
    transfer_success,
)
from lococourse.eval.faces import (
    METHODS,
    TARGET_CHANGE,
    TARGET_TAU,
    edit_metrics,
    face_directions,
    model_size,
    prepare_faces,
    resample_factors,
    sample_edits,
    target_strengths,
    true_factor_edits,
)
from lococourse.eval.factors import FactorFit, factor_changes
from lococourse.models.registry import load_model

ROOT = Path(__file__).resolve().parents[1]
CALIB_SEEDS = (1000, 1001, 1002, 1003)
#: The table's rows: the paper's recipe exactly as published (λ per part from the calibration sweep: the faithful
#: baseline, unchanged), then every method with λ chosen per direction (``--strength target``, the default), then
#: the upper bound (true single-factor edits through the same pipeline).
PAPER_ROW = "paper_loco"
UPPER_ROW = "upper_bound"
#: The row that keeps, per face and part, the most local of the three ways of step 7 with band, holes' cores and sampler
#: (lococourse.editing.select.most_local: least mean pixel leakage of its ±λ edits); its candidates are rows too.
SELECT_ROW = "loco_select"
SELECT_FROM = ("loco_cores", "loco_cores_ridge", "loco_cores_refine")
#: λ grid of the sweep as fractions of √d (d = 3·S²; the paper's λ = 15 at 256 px is ≈ √d/30).
SWEEP_FRACTIONS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2)


def sweep_grid(size: int) -> list[float]:
    return [round((3 * size * size) ** 0.5 * f, 2) for f in SWEEP_FRACTIONS]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _rows_of(fit: FactorFit | None, idx: list[int]) -> FactorFit | None:
    return None if fit is None else FactorFit(fit.theta[idx], fit.mse[idx], fit.size)


def choose_strength(model, calib, thresholds, args) -> tuple[dict, list]:
    """Per part, the smallest λ of the grid at which LOCO changes the masked part in ≥ half of the
    calibration cases (step 2): a large part (the background) needs a larger unit-direction step than a
    small one (the mouth) to change by the same amount."""
    sweep = []
    dirs = [face_directions(model, calib, i, methods=["loco"], tol=args.tol, max_iter=args.max_iter)
            for i in range(len(calib))]
    for lam in sweep_grid(calib.x0.shape[-1]):
        xs, refs, parts = [], [], []
        for i, fd in enumerate(dirs):
            for (_, part), d in fd.directions.items():
                for s in (-1, 1):
                    xs.append(calib.x_t[i] + s * lam * d.v)
                    refs.append(i)
                    parts.append(part)
        out = sample_edits(model, torch.stack(xs), calib.t, steps=calib.sample_steps)
        ch = factor_changes(calib.recon[refs], out, reference=_rows_of(calib.recon_fit, refs))
        cp = changed_parts(ch, thresholds)
        for part in PARTS:
            idx = [j for j, p in enumerate(parts) if p == part]
            if not idx:
                continue
            visible = [bool(cp[j, PARTS.index(part)]) for j in idx]
            local = [bool(local_edit_success(ch[j], part, thresholds)) for j in idx]
            row = {"strength": lam, "part": part, "visible": sum(visible) / len(idx),
                   "local_success": sum(local) / len(idx), "n": len(idx)}
            sweep.append(row)
            log(f"  λ = {lam:g}, {part}: masked part changed in {row['visible']:.2f} of {row['n']} LOCO edits, "
                f"local success {row['local_success']:.2f}")
    lams = {}
    for part in PARTS:
        rows = [r for r in sweep if r["part"] == part]
        ok = [r["strength"] for r in rows if r["visible"] >= 0.5]
        lams[part] = min(ok) if ok else rows[-1]["strength"]
    return lams, sweep


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    model = load_model(args.model)
    size = model_size(model)
    log(f"model {model.spec.name}: {size}×{size}, prediction type {model.prediction_type}")

    # 1. thresholds from the estimator's noise on held-out model reconstructions
    calib = prepare_faces(model, CALIB_SEEDS[: args.calib], args.t, sample_steps=args.sample_steps)
    thresholds = calibrate_thresholds(calib.recon)
    log(f"thresholds τ: {thresholds.as_dict()}")

    # 2. λ: per part for the paper's row (the calibration sweep, as before); per direction for every method
    log("λ sweep on the calibration faces (LOCO; the paper's row):")
    if args.quick:
        lam = dict.fromkeys(PARTS, sweep_grid(size)[1])
        sweep, how = [], "quick run: λ = √d/16 for every part, no sweep."
    else:
        lam, sweep = choose_strength(model, calib, thresholds, args)
        how = (f"Sweep on the {len(calib)} calibration faces (LOCO), grid √d·(1/32, 1/16, 1/8, 1/4, 1/2): per part, "
               "the smallest λ whose edits change the masked part in ≥ half the cases.")
    mode = args.strength
    grid = default_strength_grid(3 * size * size, args.grid_points)
    if mode == "target":
        unit = "" if args.target_unit == "factor" else " × its threshold τ (the main factor by |Δθ_i|/τ_i)"
        how += (f"  Every other row: λ per direction, by a sweep over √d·2^(−6 … −1) ({len(grid)} points) at which the "
                f"edit at +λ moves its part's main factor by {args.target}{unit} (lococourse.editing.strength, "
                "interpolated).")
    elif mode == "sweep":
        how += "  Every other row uses the same per-part λ."
    else:
        how += f"  Every other row: λ = {float(mode):g} (--strength)."
    log(f"λ per part (paper's row): {lam}")
    methods = list(METHODS) if args.methods is None else [m for m in args.methods if m != SELECT_ROW]
    select = args.methods is None or SELECT_ROW in args.methods
    if select:
        methods += [m for m in SELECT_FROM if m not in methods]
    rows = [PAPER_ROW, *methods, *([SELECT_ROW] if select else []), UPPER_ROW]

    # 3. the evaluation faces
    seeds = list(range(args.images))
    faces = prepare_faces(model, seeds, args.t, sample_steps=args.sample_steps)
    n = len(faces)
    log(f"{n} faces inverted to t = {faces.t:.3f}")
    def result(done: int) -> dict:
        res = {"model": model.spec.name, "size": size, "t": faces.t, "strength": lam, "strength_mode": mode,
               "target_change": args.target if mode == "target" else None,
               "target_unit": args.target_unit if mode == "target" else None, "strength_grid": grid, "strengths": strengths,
               "true_delta": args.true_delta, "rows": rows, "images": done, "sample_steps": args.sample_steps,
               "sampler_steps": args.sampler_steps,
               "transfers_per_direction": args.transfers, "r": 5, "r_null": 5, "index": 0,
               "power_method": {"tol": args.tol, "max_iter": args.max_iter},
               "thresholds": thresholds.as_dict(), "thresholds_how": thresholds.how, "estimator_noise_q95": thresholds.noise,
               "estimator_accuracy_on_reconstructions": thresholds.accuracy, "strength_sweep": sweep, "strength_how": how,
               "skipped_masks": skipped, "wall_s": time.perf_counter() - t_start, "threads": args.threads, "workers": args.workers,
               "times": {m: {"learning_s": learn[m], "transfer_s": transfer_s[m]} for m in rows},
               "records": records, "transfer_records": transfers}
        return res

    records, transfers, skipped = [], [], 0
    learn, transfer_s, strengths = {r: [] for r in rows}, {r: [] for r in rows}, []
    ctx = {"lam": lam, "mode": mode, "grid": grid, "thresholds": thresholds, "methods": methods, "rows": rows,
           "tol": args.tol, "max_iter": args.max_iter, "target": args.target,
           "target_unit": args.target_unit, "transfers": args.transfers,
           "true_delta": args.true_delta, "t": args.t, "sampler_steps": args.sampler_steps}

    def collect(i: int, face: dict, done: int) -> None:
        nonlocal skipped
        records.extend(face["records"])
        transfers.extend(face["transfers"])
        strengths.extend(face["strengths"])
        skipped += face["skipped"]
        for r in rows:
            learn[r] += face["learn"][r]
            transfer_s[r] += face["transfer_s"][r]
        log(f"face {i + 1}/{n} (seed {faces.seeds[i]}): {face['n_edits']} edits in {face['seconds']:.0f} s "
            f"({done}/{n} done, {time.perf_counter() - t_start:.0f} s so far)")
        if args.partial:  # the records so far, rescorable with --rescore if the run is cut short
            partial = Path(args.partial)
            partial.parent.mkdir(parents=True, exist_ok=True)
            tmp = partial.with_suffix(".tmp")
            tmp.write_text(json.dumps(_rounded(result(done)), separators=(",", ":")))
            tmp.replace(partial)

    def needed(i: int) -> dict:
        return {f: ub[f] for f in (i, *[(i + j) % n for j in range(1, args.transfers + 1)])}

    if args.workers == 1:
        ub = {i: upper_bound_edits(model, faces, i, args.true_delta) for i in range(n)}
        log(f"upper bound: true single-factor edits of {n} faces in {time.perf_counter() - t_start:.0f} s so far")
        for i in range(n):
            collect(i, face_rows(model, faces, i, ctx, needed(i)), i + 1)
    else:  # faces in parallel: one process per worker, each with its own model copy and args.threads threads
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                 initargs=(args.model, faces, ctx, args.threads)) as pool:
            ub = dict(zip(range(n), pool.map(_worker_ub, range(n))))
            log(f"upper bound: true single-factor edits of {n} faces in {time.perf_counter() - t_start:.0f} s so far")
            futures = {pool.submit(_worker_face, i, needed(i)): i for i in range(n)}
            for done, fut in enumerate(as_completed(futures), 1):
                collect(futures[fut], fut.result(), done)
        order = {r: k for k, r in enumerate(rows)}
        records.sort(key=lambda r: (r["image"], order[r["method"]]))
        transfers.sort(key=lambda r: (r["image"], order[r["method"]]))
        strengths.sort(key=lambda r: r["image"])

    res = result(n)
    return summarize(res)


def upper_bound_edits(model, faces, i: int, delta: float) -> dict:
    """The upper bound's edits of face ``i``, computed once and shared by its own row and every transfer onto it:
    (factor name, signed δ) → (the true single-factor edit rendered, inverted and resampled through the model, its
    estimated factor changes against the face's reconstruction), for every factor and sign that stays in [0, 1]."""
    imgs, keys = [], []
    for part in PARTS:
        x, fmeta = true_factor_edits(model, faces, i, part, delta)
        imgs += list(x)
        keys += fmeta
    if not keys:
        return {}
    ref = [i] * len(keys)
    ch = factor_changes(faces.recon[ref], torch.stack(imgs), reference=_rows_of(faces.recon_fit, ref))
    return {k: (imgs[j], ch[j]) for j, k in enumerate(keys)}


def face_rows(model, faces, i: int, ctx: dict, ub: dict) -> dict:
    """Steps 4–6 for face ``i``: every row's directions, λ, edits, transfers and the upper bound, scored.
    ``ub``: face → :func:`upper_bound_edits` of that face, for ``i`` and its transfer targets."""
    lam, mode, grid, thresholds = ctx["lam"], ctx["mode"], ctx["grid"], ctx["thresholds"]
    methods, rows, n = ctx["methods"], ctx["rows"], len(faces)
    records, transfers, skipped, strengths = [], [], 0, []
    learn, transfer_s = {r: [] for r in rows}, {r: [] for r in rows}
    t0 = time.perf_counter()
    fd = face_directions(model, faces, i, methods=methods, tol=ctx["tol"], max_iter=ctx["max_iter"],  # 4.
                         sampler_steps=ctx["sampler_steps"])
    skipped += len(fd.skipped)
    if mode == "target":
        tau = thresholds if ctx["target_unit"] == "tau" else None
        chosen = {k: c.strength for k, c in target_strengths(model, faces, i, fd.directions, grid,
                                                              target=ctx["target"], thresholds=tau).items()}
        strengths += [{"image": i, "method": m, "part": p, **fd.directions[(m, p)].extra["strength"]}
                      for (m, p) in fd.directions]
    else:
        chosen = {k: (lam[k[1]] if mode == "sweep" else float(mode)) for k in fd.directions}
    targets = [(i + j) % n for j in range(1, ctx["transfers"] + 1)]
    xs, meta = [], []
    for row in [PAPER_ROW, *methods]:
        for part in PARTS:
            method = "loco" if row == PAPER_ROW else row
            if (method, part) not in fd.directions:
                continue
            d = fd.directions[(method, part)]
            strength = lam[part] if row == PAPER_ROW else chosen[(method, part)]
            learn[row].append(fd.learning_seconds(method, part))
            for s in (-1, 1):
                for img in (i, *targets):
                    xs.append(faces.x_t[img] + s * strength * d.v)
                    meta.append((row, part, s, img, strength))
    out = sample_edits(model, torch.stack(xs), faces.t, steps=faces.sample_steps)  # 5. and 6.
    ref_idx = [m[3] for m in meta]
    ch = factor_changes(faces.recon[ref_idx], out, reference=_rows_of(faces.recon_fit, ref_idx))
    # the upper bound: true single-factor edits of this face and the same change on the targets (cached per face)
    ub_x, ub_ch, ub_meta = [], [], []
    for (name, delta), (img, c) in ub[i].items():
        part = FACTOR_PARTS[name]
        if part in fd.skipped:
            continue
        sign = 1 if delta > 0 else -1
        for tg in (i, *targets):
            if (name, delta) in ub[tg]:  # the factor stays in [0, 1] on the target (no clipping)
                ub_x.append(ub[tg][(name, delta)][0])
                ub_ch.append(ub[tg][(name, delta)][1])
                ub_meta.append((UPPER_ROW, part, sign, tg, f"{name}{delta:+.2f}"))
    if ub_x:
        out = torch.cat([out, torch.stack(ub_x)])
        ch = torch.cat([ch, torch.stack(ub_ch)])
        meta += ub_meta
    src = {}
    for j, (row, part, s, img, strength) in enumerate(meta):
        key = (row, part, s, strength) if row == UPPER_ROW else (row, part, s)
        if img == i:
            mask = faces.masks[part][i]
            rec = {"image": i, "method": row, "part": part, "sign": s,
                   "strength": strength if not isinstance(strength, str) else None,
                   "edit": strength if isinstance(strength, str) else None,
                   "local_success": bool(local_edit_success(ch[j], part, thresholds)),
                   "parts_changed": [p for p, c in zip(PARTS, changed_parts(ch[j], thresholds).tolist()) if c],
                   "changes": [round(float(v), 4) for v in ch[j]], **edit_metrics(faces.recon[i], out[j], mask)}
            records.append(rec)
            src[key] = ch[j]
    for j, (row, part, s, img, strength) in enumerate(meta):
        key = (row, part, s, strength) if row == UPPER_ROW else (row, part, s)
        if img != i and key in src:
            transfers.append({"image": i, "target": img, "method": row, "part": part, "sign": s,
                              "edit": strength if isinstance(strength, str) else None,
                              "success": bool(transfer_success(src[key], ch[j], thresholds)),
                              "changes": [round(float(v), 4) for v in ch[j]]})
    if SELECT_ROW in rows:  # the most local candidate per part, by the pixel leakage of its ±λ edits of this face
        for part in PARTS:
            if any((m, part) not in fd.directions for m in SELECT_FROM):
                continue
            edits = [torch.stack([out[j] for j, (row, p, _, img, _) in enumerate(meta) if (row, p, img) == (m, part, i)])
                     for m in SELECT_FROM]
            sel = most_local(faces.recon[i], edits, faces.masks[part][i])
            best, leaks = SELECT_FROM[sel.index], [round(x, 5) for x in sel.leakages]
            records += [{**r, "method": SELECT_ROW, "selected": best, "candidate_leakage": leaks}
                        for r in records if (r["method"], r["part"]) == (best, part)]
            transfers += [{**r, "method": SELECT_ROW, "selected": best}
                          for r in transfers if (r["method"], r["part"]) == (best, part)]
            # what learning it costs: every candidate's direction (their shared linearisation counted once)
            learn[SELECT_ROW].append(sum(fd.learning_seconds(m, part) for m in SELECT_FROM)
                                     - (len(SELECT_FROM) - 1) * fd.linearize_s)
    if i == 0:  # transfer time: one new image at a time (DDIM-Inv + one edit), per method
        for row in [r for r in rows if r != UPPER_ROW]:
            method = {PAPER_ROW: "loco", SELECT_ROW: SELECT_FROM[-1]}.get(row, row)
            d = fd.directions.get((method, "hair")) or next(iter(fd.directions.values()))
            t1 = time.perf_counter()
            x_t, tg_t = invert(model, faces.x0[targets[0]:targets[0] + 1], ctx["t"])
            sample_edits(model, x_t + lam["hair"] * d.v, tg_t, steps=faces.sample_steps)
            transfer_s[row].append(time.perf_counter() - t1)
        t1 = time.perf_counter()
        resample_factors(model, faces.t, faces.factors[targets[0]:targets[0] + 1], faces.sample_steps)
        transfer_s[UPPER_ROW].append(time.perf_counter() - t1)
        learn[UPPER_ROW].append(0.0)
    return {"records": records, "transfers": transfers, "strengths": strengths, "skipped": skipped, "learn": learn,
            "transfer_s": transfer_s, "n_edits": len(out), "seconds": time.perf_counter() - t0}


_WORKER: dict = {}


def _init_worker(model_name: str, faces, ctx: dict, threads: int) -> None:
    torch.set_num_threads(threads)
    _WORKER.update(model=load_model(model_name), faces=faces, ctx=ctx)


def _worker_ub(i: int) -> dict:
    return upper_bound_edits(_WORKER["model"], _WORKER["faces"], i, _WORKER["ctx"]["true_delta"])


def _worker_face(i: int, ub: dict) -> dict:
    return face_rows(_WORKER["model"], _WORKER["faces"], i, _WORKER["ctx"], ub)


def summarize(res: dict) -> dict:
    """Step 7: the table, per-part breakdown and threshold sensitivity, all recomputed from the recorded
    factor changes (so ``--rescore`` rebuilds them from a saved JSON)."""
    tau = torch.tensor([res["thresholds"][k] for k in FACTOR_NAMES])
    records, transfers = res["records"], res["transfer_records"]
    times = res.get("times") or {m: {"learning_s": [v["learning_s"]], "transfer_s": [v["transfer_s"]]}
                                 for m, v in res["table"].items()}

    rows = res.get("rows") or list(METHODS)

    def scores(tau):
        src = {(r["method"], r["image"], r["part"], r["sign"], r.get("edit")): torch.tensor(r["changes"]) for r in records}
        loc = [bool(local_edit_success(torch.tensor(r["changes"]), r["part"], tau)) for r in records]
        tr, trm, trp = [], [], []
        for r in transfers:
            s = src[(r["method"], r["image"], r["part"], r["sign"], r.get("edit"))]
            c = torch.tensor(r["changes"])
            tr.append(bool(transfer_success(s, c, tau)))
            trm.append(bool(transfer_main_success(s, c, tau)))
            trp.append(bool(transfer_part_success(s, c, tau)))
        return loc, tr, trm, trp

    loc, tr, trm, trp = scores(tau)
    table = {}
    for method in rows:
        ri = [k for k, r in enumerate(records) if r["method"] == method]
        ti = [k for k, r in enumerate(transfers) if r["method"] == method]
        rs = [records[k] for k in ri]

        def part_mean(values, idx, rows, p):
            return _mean([values[k] for k, r in zip(idx, rows) if r["part"] == p])

        table[method] = {
            "local_success": _mean([loc[k] for k in ri]),
            "transfer_success": _mean([tr[k] for k in ti]),
            "transfer_main_success": _mean([trm[k] for k in ti]),
            "transfer_part_success": _mean([trp[k] for k in ti]),
            "leakage_median": statistics.median(r["leakage"] for r in rs),
            "leakage_mean": statistics.fmean(r["leakage"] for r in rs),
            "ssim_outside": statistics.fmean(r["ssim_outside"] for r in rs),
            "learning_s": statistics.fmean(times[method]["learning_s"]),
            "transfer_s": statistics.fmean(times[method]["transfer_s"]),
            "n_edits": len(ri), "n_transfers": len(ti),
            "per_part": {p: {"local_success": part_mean(loc, ri, rs, p),
                             "masked_part_changed": _mean([p in r["parts_changed"] for r in rs if r["part"] == p]),
                             "other_part_changed": _mean([any(q != p for q in r["parts_changed"]) for r in rs if r["part"] == p]),
                             "leakage_median": _median([r["leakage"] for r in rs if r["part"] == p]),
                             "transfer_success": part_mean(tr, ti, [transfers[k] for k in ti], p),
                             "transfer_main_success": part_mean(trm, ti, [transfers[k] for k in ti], p),
                             "transfer_part_success": part_mean(trp, ti, [transfers[k] for k in ti], p)}
                         for p in PARTS},
        }
    sensitivity = {}
    for scale in (0.5, 1.0, 2.0):
        l2, t2, m2, _ = scores(tau * scale)
        sensitivity[str(scale)] = {m: {"local_success": _mean([v for v, r in zip(l2, records) if r["method"] == m]),
                                       "transfer_success": _mean([v for v, r in zip(t2, transfers) if r["method"] == m]),
                                       "transfer_main_success": _mean([v for v, r in zip(m2, transfers) if r["method"] == m])}
                                   for m in rows}
    return {**res, "table": table, "sensitivity": sensitivity}


def _mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def _median(xs):
    return statistics.median(xs) if xs else float("nan")


LABELS = {PAPER_ROW: "paper's LOCO (as published: λ per part)", "loco": "LOCO (masked J + nullspace proj.)",
          "no_projection": "masked J, no projection (r' = 0)", "eps_unmasked": "∂ε/∂x_t (unmasked, G.2)",
          "pmp_unmasked": "∂x̂₀/∂x_t (unmasked)", "loco_band": "LOCO + 2 px guard band (ours)",
          "loco_sampler": "LOCO + sampler nullspace (ours)", "loco_band_sampler": "LOCO + band + sampler (ours)",
          "loco_band_sampler_ridge": "LOCO + band + sampler, ridge projection (ours)",
          "loco_band_sampler_ridge_refine": "LOCO + band + sampler + ridge, refined (ours)",
          "loco_cores": "LOCO + band keeping the holes' cores + sampler (ours)",
          "loco_cores_ridge": "… the same, ridge projection (ours)",
          "loco_cores_refine": "… the same, ridge + refined (ours)",
          SELECT_ROW: "the most local of those three, by pixel leakage (ours)",
          UPPER_ROW: "upper bound: true single-factor edits"}


def markdown(res: dict) -> str:
    head = ("| method | local-edit success ↑ | transfer success ↑ | transfer, same parts + main factor ↑ | "
            "transfer, main factor ↑ | leakage (median) ↓ | "
            "leakage (mean) ↓ | SSIM outside ↑ | learning time (s) | transfer time (s) |\n|---|---|---|---|---|---|---|---|---|---|")
    rows = [f"| {LABELS.get(m, m)} | {v['local_success']:.2f} | {v['transfer_success']:.2f} | "
            f"{v.get('transfer_part_success', float('nan')):.2f} | {v['transfer_main_success']:.2f} | "
            f"{v['leakage_median']:.3f} | {v['leakage_mean']:.3f} | {v['ssim_outside']:.3f} | {v['learning_s']:.1f} | "
            f"{v['transfer_s']:.1f} |" for m, v in res["table"].items()]
    part_head = "| method | " + " | ".join(PARTS) + " |\n|---|" + "---|" * len(PARTS)

    def part_rows(key, fmt):
        return "\n".join(f"| {LABELS.get(m, m)} | " + " | ".join(fmt.format(v["per_part"][p][key]) for p in PARTS) + " |"
                         for m, v in res["table"].items())

    sweep = "\n".join(f"| {r['strength']:g} | {r.get('part', 'all')} | {r['visible']:.2f} | {r['local_success']:.2f} | {r['n']} |"
                      for r in res["strength_sweep"])
    lam = res["strength"]
    lam_text = (f"λ = ±{lam:g}" if not isinstance(lam, dict) else
                "λ per part = ±(" + ", ".join(f"{p} {v:g}" for p, v in lam.items()) + ")")
    th = " · ".join(f"{k} {v:g}" for k, v in res["thresholds"].items())
    noise = " · ".join(f"{k} {v:g}" for k, v in res["estimator_noise_q95"].items())
    acc = " · ".join(f"{k} {v:g}" for k, v in res["estimator_accuracy_on_reconstructions"].items())
    sens = "\n".join(f"| {LABELS.get(m, m)} | " + " | ".join(
        f"{res['sensitivity'][k][m]['local_success']:.2f} / {res['sensitivity'][k][m]['transfer_success']:.2f} / "
        f"{res['sensitivity'][k][m]['transfer_main_success']:.2f}"
        for k in res["sensitivity"]) + " |" for m in res["table"])
    tol = res["power_method"]["tol"]
    tol_text = (f"tol {tol:g}" if tol is not None else
                "with find_direction's default stopping (when the direction itself has settled, DIRECTION_TOL)")
    n_edit = next(iter(res["table"].values()))["n_edits"]
    n_tr = next(iter(res["table"].values()))["n_transfers"]
    mg = res.get("merged")
    merged_text = "" if not mg else (
        f"\nRows {', '.join(LABELS.get(m, m) for m in mg['rows'])} come from a separate run of the same protocol "
        f"({(mg.get('their_run_wall_s') or 0) / 60:.1f} min, {mg.get('their_workers')} process(es)), added by "
        f"`--merge` after checking that its rows {', '.join(mg['shared_rows_checked'])} have the same records as this run's.")
    return f"""# LOCO Edit on procedural faces: Table 1, measured

Model `{res['model']}` ({res['size']}×{res['size']}), edit time t = {res['t']:.3f} (DDIM grid), {lam_text},
{res['images']} generated faces × every part mask ({n_edit} edits per method, {n_tr} transfers per method:
each direction to {res['transfers_per_direction']} other faces at ±λ), k = 0, r = {res['r']}, r' = {res['r_null']}
(LOCO), power method {tol_text} / ≤ {res['power_method']['max_iter']} iterations;
the sampler-nullspace methods linearise a {res.get('sampler_steps') or SAMPLER_STEPS}-step DDIM sampler from t;
step 9 (and the λ = 0 reference) sampled with {('the paper' + chr(39) + 's 100-step DDIM grid') if not res.get('sample_steps') else str(res['sample_steps']) + ' DDIM steps from t (levels of the paper' + chr(39) + 's grid)'}.
Wall time {res['wall_s'] / 60:.1f} min: {res.get('workers', 1)} process(es) × {res['threads']} CPU thread(s) (shared machine).{merged_text}
Produced by `python benchmarks/bench_loco_table.py` (protocol in its docstring).

{head}
{chr(10).join(rows)}

Paper (Table 1, CelebA-HQ, human raters): LOCO local-edit success 0.80, transfer success 0.91.

## Per part

Local-edit success:

{part_head}
{part_rows('local_success', '{:.2f}')}

Masked part changed (the edit is visible where it should be):

{part_head}
{part_rows('masked_part_changed', '{:.2f}')}

Some other part changed (the edit leaks):

{part_head}
{part_rows('other_part_changed', '{:.2f}')}

Leakage (median):

{part_head}
{part_rows('leakage_median', '{:.3f}')}

Transfer success (same factors changed, same signs):

{part_head}
{part_rows('transfer_success', '{:.2f}')}

Transfer, same parts + main factor (the same parts change, and the source edit's main factor the same way):

{part_head}
{part_rows('transfer_part_success', '{:.2f}')}

Transfer, main factor (the source edit's main factor changes the same way):

{part_head}
{part_rows('transfer_main_success', '{:.2f}')}

## Sensitivity to the thresholds

Local-edit success / transfer success / transfer (main factor) with every τ scaled:

| method | τ × 0.5 | τ × 1 | τ × 2 |
|---|---|---|---|
{sens}

## How success is decided

A factor changed when |Δθ̂| > τ; {res['thresholds_how']}.

- τ: {th}
- estimator cross-talk (95 % quantile): {noise}
- estimator accuracy on model reconstructions (mean |error| of an injected ±0.2 change): {acc}

## Choice of λ

{res.get('strength_how', '')}

| λ | part | masked part changed | local success | edits |
|---|---|---|---|---|
{sweep}
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="faces32")
    p.add_argument("--t", type=float, default=0.6)
    p.add_argument("--images", type=int, default=20)
    p.add_argument("--transfers", type=int, default=3)
    p.add_argument("--calib", type=int, default=4, help="calibration faces (thresholds; λ sweep uses 2)")
    p.add_argument("--strength", default="target",
                   help="λ of every row but the paper's: 'target' (per direction, for --target), 'sweep' (per part), or a number")
    p.add_argument("--target", type=float, default=None,
                   help=f"the main-factor change λ-by-target aims at (default {TARGET_CHANGE} factor units, "
                        f"{TARGET_TAU} with --target-unit tau)")
    p.add_argument("--target-unit", choices=("factor", "tau"), default="factor",
                   help="--target in factor units, or in units of each factor's threshold τ (the part's main factor "
                        "by |Δθ_i|/τ_i; lococourse.eval.target_strengths(thresholds=))")
    p.add_argument("--grid-points", type=int, default=6, help="points of the λ-by-target sweep")
    p.add_argument("--partial", default=None, metavar="JSON",
                   help="after each face, write the records so far here (atomically), for --rescore if the run is cut short")
    p.add_argument("--sample-steps", type=int, default=None,
                   help="DDIM steps of step 9 from t (default: the paper's 100-step grid, t·100 steps); fewer is faster")
    p.add_argument("--sampler-steps", type=int, default=SAMPLER_STEPS,
                   help=f"DDIM steps of the sampler whose complement the *_sampler methods use (default {SAMPLER_STEPS})")
    p.add_argument("--true-delta", type=float, default=0.2, help="factor change of the upper bound's true edits")
    p.add_argument("--tol", type=float, default=None,
                   help="power-method tolerance (default: find_direction's, direction-based stopping at DIRECTION_TOL)")
    p.add_argument("--max-iter", type=int, default=30)
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--workers", type=int, default=1,
                   help="processes editing faces in parallel (each loads the model; faces are split among them)")
    p.add_argument("--quick", action="store_true", help="smoke run: 3 faces, 2 transfers, λ = √d/16, 10 power iterations")
    p.add_argument("--methods", default=None, metavar="M1,M2",
                   help="rows to run besides the paper's and the upper bound (comma-separated, from "
                        "lococourse.eval.METHODS; default all); 'loco' is always run, the paper's row needs its directions")
    p.add_argument("--out", default=None)
    p.add_argument("--merge", nargs=2, default=None, metavar=("BASE", "EXTRA"),
                   help="add EXTRA.json's rows (a --methods run of the same protocol) to BASE.json's table; writes --out")
    p.add_argument("--overwrite", action="store_true", help="replace --out's .md and .json if they exist")
    p.add_argument("--rescore", default=None, metavar="JSON",
                   help="rebuild the tables from a saved results JSON (the recorded factor changes) without recomputing")
    a = p.parse_args(argv)
    if a.rescore and a.merge:
        p.error("--rescore and --merge each write a table; give one of them")
    if a.merge:
        if not a.out:
            p.error("--merge needs --out: where the merged table goes (BASE is not overwritten)")
        missing = [f for f in a.merge if not Path(f).is_file()]
        if missing:
            p.error(f"--merge: no such results JSON {missing}")
        out = Path(a.out)
        if any(out.with_suffix(".json").resolve() == Path(f).resolve() for f in a.merge):
            p.error(f"--merge would overwrite its input {out.with_suffix('.json')}; give --out another name")
        _refuse_existing(p, out, a.overwrite)
        try:
            res = merge(*(json.loads(Path(f).read_text()) for f in a.merge))
        except ValueError as e:
            p.error(f"--merge {a.merge[0]} {a.merge[1]}: {e}")
        return _write(res, out)
    if a.rescore:
        src = Path(a.rescore)
        if not src.is_file():
            p.error(f"--rescore: no such results JSON {str(src)!r}")
        out = Path(a.out) if a.out else src.with_suffix(".md")
        if out.with_suffix(".json").resolve() == src.resolve():
            p.error(f"--rescore {src} would overwrite its own input; give --out another name")
        _refuse_existing(p, out, a.overwrite)
        return _write(summarize(json.loads(src.read_text())), out)
    if a.strength not in ("target", "sweep"):
        try:
            ok = float(a.strength) > 0 and float(a.strength) < float("inf")
        except ValueError:
            ok = False
        if not ok:
            p.error(f"--strength must be 'target', 'sweep' or a positive number; got {a.strength!r}")
    if a.target is None:
        a.target = TARGET_CHANGE if a.target_unit == "factor" else TARGET_TAU
    if not a.target > 0:
        p.error(f"--target (the main-factor change λ-by-target aims at) must be positive; got {a.target}")
    if not 0 < a.true_delta < 1:
        p.error(f"--true-delta must lie in (0, 1) factor units; got {a.true_delta}")
    if a.sample_steps is not None and a.sample_steps < 1:
        p.error(f"--sample-steps must be a positive number of DDIM steps; got {a.sample_steps}")
    if a.sampler_steps < 1:
        p.error(f"--sampler-steps must be a positive number of DDIM steps; got {a.sampler_steps}")
    if a.workers < 1 or a.threads < 1:
        p.error(f"--workers and --threads must be at least 1; got {a.workers} and {a.threads}")
    if a.grid_points < 2:
        p.error(f"--grid-points must be at least 2; got {a.grid_points}")
    if a.methods is not None:
        chosen = [m for m in a.methods.split(",") if m]
        unknown = [m for m in chosen if m not in METHODS and m != SELECT_ROW]
        if unknown or not chosen:
            p.error(f"--methods must list methods among {[*METHODS, SELECT_ROW]}; got {a.methods!r}")
        a.methods = ["loco", *[m for m in dict.fromkeys(chosen) if m != "loco"]]
    if a.quick:
        a.images, a.transfers, a.calib, a.max_iter = 3, 2, 2, 10
    out = Path(a.out) if a.out else ROOT / "benchmarks" / "results" / ("loco_table_quick.md" if a.quick else "loco_table.md")
    if a.images < a.transfers + 1:
        p.error(f"--images ({a.images}) must exceed --transfers ({a.transfers})")
    _refuse_existing(p, out, a.overwrite)
    return _write(run(a), out)


def _refuse_existing(p, out: Path, overwrite: bool) -> None:
    """Before any work: an earlier table (``out``'s .md or .json) is replaced only when asked."""
    there = [str(f) for f in (out.with_suffix(".md"), out.with_suffix(".json")) if f.exists()]
    if there and not overwrite:
        p.error(f"{there} exist already; give another --out, or --overwrite to replace them")


#: What two runs must share for their rows to be merged (--merge): the protocol, the thresholds and the paper's λ.
MERGE_KEYS = ("model", "size", "t", "images", "sample_steps", "sampler_steps", "transfers_per_direction", "strength_mode",
              "target_change", "strength_grid", "true_delta", "r", "r_null", "index", "power_method", "thresholds", "strength")


def _close(a, b, tol: float) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tol) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(a - b) <= tol
    return a == b


def _target_unit(res: dict) -> str | None:
    """The unit of λ-by-target's target ("factor" in runs saved before --target-unit existed)."""
    return res.get("target_unit") or ("factor" if res.get("strength_mode") == "target" else None)


def merge(base: dict, extra: dict, tol: float = 2e-4) -> dict:
    """``base``'s results with the rows of ``extra`` that ``base`` lacks, rescored (:func:`summarize`).

    Both must be runs of one protocol (:data:`MERGE_KEYS` equal, floats within ``tol``), and every row they share must
    have the same records (factor changes within ``tol``; they are rounded to 1e-4 when saved): then the added rows
    were computed on the same faces, thresholds and inversions, and differ from a single run only in their timings."""
    bad = [k for k in MERGE_KEYS if not _close(base.get(k), extra.get(k), tol)]
    if _target_unit(base) != _target_unit(extra):
        bad.append("target_unit")
    if bad:
        raise ValueError(f"the two runs differ in {bad}: they are not one protocol, so their rows cannot be merged")
    new = [r for r in extra["rows"] if r not in base["rows"]]
    shared = [r for r in extra["rows"] if r in base["rows"]]
    if not new:
        raise ValueError(f"the second run adds no row: its rows {extra['rows']} are all in the first")

    def keyed(recs, rows):
        return {(r["method"], r["image"], r["part"], r["sign"], r.get("edit"), r.get("target")): r["changes"]
                for r in recs if r["method"] in rows}

    for what in ("records", "transfer_records"):
        a, b = keyed(base[what], shared), keyed(extra[what], shared)
        if a.keys() != b.keys():
            raise ValueError(f"the shared rows {shared} have different {what} in the two runs ({len(a)} against {len(b)})")
        off = [k for k in a if not _close(a[k], b[k], tol)]
        if off:
            raise ValueError(f"the shared rows' {what} differ in {len(off)} of {len(a)} (first: {off[0]}): "
                             f"not the same faces or inversions")
    rows = [r for r in base["rows"] if r != UPPER_ROW] + new + ([UPPER_ROW] if UPPER_ROW in base["rows"] else [])
    order = {r: k for k, r in enumerate(rows)}

    def joined(what):
        recs = base[what] + [r for r in extra[what] if r["method"] in new]
        return sorted(recs, key=lambda r: (r["image"], order[r["method"]]))

    out = {k: v for k, v in base.items() if k not in ("table", "sensitivity")}
    out.update(rows=rows, records=joined("records"), transfer_records=joined("transfer_records"),
               strengths=sorted(base["strengths"] + [s for s in extra["strengths"] if s["method"] in new],
                                key=lambda s: (s["image"], order.get(s["method"], -1))),
               times={**base["times"], **{r: extra["times"][r] for r in new}},
               merged={"rows": new, "their_run_wall_s": extra.get("wall_s"), "their_workers": extra.get("workers"),
                       "shared_rows_checked": shared})
    return summarize(out)


def _rounded(x, digits: int = 5):
    """Floats rounded for the results JSON (the records' factor changes are already rounded to 1e-4)."""
    if isinstance(x, float):
        return round(x, digits)
    if isinstance(x, dict):
        return {k: _rounded(v, digits) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_rounded(v, digits) for v in x]
    return x


def _write(res: dict, out: Path) -> int:
    """The results JSON and its markdown tables beside it (``out`` names either; each written atomically)."""
    js, md_path = out.with_suffix(".json"), out.with_suffix(".md")
    atomic_write(js, lambda p: p.write_text(json.dumps(_rounded(res), separators=(",", ":"))))  # the numbers first
    md = markdown(res)
    print(md)
    atomic_write(md_path, lambda p: p.write_text(md))
    log(f"wrote {md_path} and {js}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
