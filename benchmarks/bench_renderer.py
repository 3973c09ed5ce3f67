"""Benchmark: the faces renderer and the factor estimator built on it, against the layer-by-layer reference renderer.

    python benchmarks/bench_renderer.py [--rounds 5] [--rows 256] [--images 64] [--threads 1] [--out results/renderer.md]

Issue 13, item 5 (the table's time): the factor estimator (lococourse.eval.factors, the table's metric) renders each
image's candidates ~1000 times, most of them with a backward pass (projected Adam), and was ~40 % of a face's time in
bench_loco_table.py.  lococourse.data.faces.render_faces now composites the layers as one weighted sum of their colours
(each layer's visible weight, which the masks need anyway; one batched matrix product for the three channels) and
computes the shapes with reciprocal radii and exact circle distances — the same image up to rounding
(tests/benchmarks/test_render_reference.py).  Side by side in one run, rounds interleaved, the order alternating:

1. **render, forward + backward**: ``--rows`` faces (the estimator's chunk, CHUNK_ROWS) rendered and a pixel loss
   differentiated, as one Adam step does; the reference is benchmarks/_render_reference.py in float32.
2. **render, forward only** (no grad), as the estimator's pool and coordinate sweep do.
3. **estimate_factors** of ``--images`` noisy faces (σ = 0.03), with the estimator's renderer replaced by the reference
   for the reference column; the two estimates' largest difference, and both mean errors against the true factors.

Medians over rounds, and the speed-up median / median.
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import torch

from lococourse.data.faces import FACTOR_NAMES, FaceBatch, render_faces, sample_faces, sample_factors
from lococourse.data.images import atomic_write
from lococourse.eval import factors as factors_module
from lococourse.eval.factors import CHUNK_ROWS, as_theta, estimate_factors

ROOT = Path(__file__).resolve().parent


def _load_reference():
    """benchmarks/_render_reference.py (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("_render_reference", ROOT / "_render_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.render_reference


render_reference = _load_reference()


def reference_faces(factors, size: int = 32, *, masks: bool = True) -> FaceBatch:
    """``render_faces``'s interface on the reference renderer (float32), for the estimator's reference column (which
    asks for no masks: none are computed)."""
    img, _ = render_reference(factors, size, torch.float32, labels=False)
    return FaceBatch(img.contiguous(), factors, {})


def time_render(render, rows: int, grad: bool) -> float:
    f = sample_factors(rows, torch.Generator().manual_seed(1))
    theta = torch.stack([f[k] for k in FACTOR_NAMES], 1)
    target = torch.rand(rows, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    th = theta.clone().requires_grad_(grad)
    t0 = time.perf_counter()
    for _ in range(5):
        with torch.set_grad_enabled(grad):
            loss = ((render({k: th[:, i] for i, k in enumerate(FACTOR_NAMES)}, 32, masks=False).images - target) ** 2).sum()
        if grad:
            loss.backward()
    return (time.perf_counter() - t0) / 5


def time_estimator(render, images: torch.Tensor) -> tuple[float, torch.Tensor]:
    factors_module._POOL_CACHE.clear()  # the pool is rendered by the renderer under test, inside the timing
    factors_module.render_faces = render
    try:
        t0 = time.perf_counter()
        fit = estimate_factors(images)
        return time.perf_counter() - t0, fit.theta
    finally:
        factors_module.render_faces = render_faces


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--rows", type=int, default=CHUNK_ROWS, help="faces per render call (the estimator's chunk)")
    p.add_argument("--images", type=int, default=64, help="noisy faces the estimator fits")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "results" / "renderer.md"))
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    a = p.parse_args(argv)
    for name in ("rounds", "rows", "images", "threads"):
        if getattr(a, name) < 1:
            p.error(f"--{name} must be at least 1; got {getattr(a, name)}")
    out = Path(a.out)
    if out.exists() and not a.overwrite:
        p.error(f"{out} exists; pass --overwrite to replace it or choose another --out")
    torch.set_num_threads(a.threads)
    faces = sample_faces(a.images, 11)
    noisy = faces.images + 0.03 * torch.randn(faces.images.shape, generator=torch.Generator().manual_seed(0))
    truth = as_theta(faces.factors)
    impl = {"reference (layer by layer)": reference_faces, "render_faces": render_faces}
    times = {(task, name): [] for task in ("fwd+bwd", "fwd", "estimator") for name in impl}
    thetas = {}
    for r in range(a.rounds):
        for name in (list(impl) if r % 2 == 0 else list(impl)[::-1]):
            times[("fwd+bwd", name)].append(time_render(impl[name], a.rows, True))
            times[("fwd", name)].append(time_render(impl[name], a.rows, False))
            s, thetas[name] = time_estimator(impl[name], noisy)
            times[("estimator", name)].append(s)
        print(f"round {r + 1}/{a.rounds} done", file=sys.stderr, flush=True)
    ref, ours = impl
    med = {k: statistics.median(v) for k, v in times.items()}
    diff = float((thetas[ref] - thetas[ours]).abs().max())
    err = {n: float((thetas[n] - truth).abs().mean()) for n in impl}
    lines = [
        "# The faces renderer and the factor estimator: ours against the layer-by-layer reference",
        "",
        f"Produced by `python benchmarks/bench_renderer.py --rounds {a.rounds} --rows {a.rows} --images {a.images} "
        f"--threads {a.threads}` (protocol in its docstring); medians of {a.rounds} interleaved rounds, both in one run.",
        "",
        "| what | reference | render_faces | speed-up |",
        "|---|---|---|---|",
        f"| render {a.rows} faces, forward + backward (ms) | {med[('fwd+bwd', ref)] * 1e3:.1f} | "
        f"{med[('fwd+bwd', ours)] * 1e3:.1f} | {med[('fwd+bwd', ref)] / med[('fwd+bwd', ours)]:.2f}× |",
        f"| render {a.rows} faces, forward (ms) | {med[('fwd', ref)] * 1e3:.1f} | {med[('fwd', ours)] * 1e3:.1f} | "
        f"{med[('fwd', ref)] / med[('fwd', ours)]:.2f}× |",
        f"| estimate_factors of {a.images} noisy faces (s) | {med[('estimator', ref)]:.2f} | "
        f"{med[('estimator', ours)]:.2f} | {med[('estimator', ref)] / med[('estimator', ours)]:.2f}× |",
        "",
        f"The two estimates differ by at most {diff:.2e} in any factor; mean |error| against the true factors: "
        f"reference {err[ref]:.5f}, render_faces {err[ours]:.5f}.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    atomic_write(out, lambda tmp: tmp.write_text(text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
