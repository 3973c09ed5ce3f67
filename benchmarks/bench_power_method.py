"""Benchmark: time to a top-5 right singular subspace of a learned PMP's Jacobian.

    python benchmarks/bench_power_method.py [--quick] [--t 0.5] [--repeats N] [--threads N]

A small ``UNet2DModel`` briefly trained on image-shaped MoLRG data (``_models.py``; trained once and
cached under runs/bench_unet/), its PMP x̂₀(x_t) at time t, one point x_t of 3×32×32 (d = 3072).

1. Reference: the dense Jacobian (lococourse.jacobian.dense_jacobian) and its float64 SVD: top-8
   singular values (a gap at 5 is what makes the problem well posed) and the top-5 right subspace.
2. Cost of the pieces: one J·V and one Jᵀ·U (k = 5) done the baseline's way and each of ours.
3. Time to solution, all methods timed in the same rounds, in rotating order (2 shared CPU cores are
   noisy: medians over rounds): the baseline (``_baseline.py``, the paper's public routine structure)
   against lococourse.power_method with its levers (forward mode, stopping rule, oversampling, warm
   starts).  dist = sin of the largest principal angle to the dense answer (subspace_distance).
4. The dense Jacobian itself: chunked vmap (dense_jacobian) against one backward per row
   (dense_jacobian_loop), on a 3×16×16 input (the same fully convolutional UNet).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _models  # noqa: E402
from _baseline import baseline_power_method  # noqa: E402

from lococourse.jacobian import (  # noqa: E402
    JacobianOperator,
    dense_jacobian,
    dense_jacobian_loop,
    power_method,
    subspace_distance,
)

K = 5
TARGET = 1e-3  # subspace distance to the dense answer that counts as "solved"


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def best_of(fn, n=3):
    return min(timed(fn)[0] for _ in range(n))


def reference(f, x, k=K):
    """Dense Jacobian (float32 autograd) → float64 SVD: singular values and the top-k right subspace."""
    t, J = timed(lambda: dense_jacobian(f, x))
    _, S, Vh = torch.linalg.svd(J.double(), full_matrices=False)
    return S, Vh[:k].T, t


# ------------------------------------------------------------------------------------ pieces
def bench_pieces(f, x, n=3):
    """Seconds for one J·V and one Jᵀ·U with k = 5 directions, and the operators' set-up."""
    V = torch.randn(K, *x.shape, generator=torch.Generator().manual_seed(0))
    a0, da = torch.zeros(()), torch.ones(())
    print(f"\ncost of the pieces (k = {K}; best of {n}):")
    print(f"  one forward pass, batch 1 / batch {K}:            {best_of(lambda: f(x[None]), n):.4f} / "
          f"{best_of(lambda: f(V), n):.4f} s")
    print(f"  baseline J·V  (jvp of a ↦ f(x + aV), batch {K}):   "
          f"{best_of(lambda: torch.func.jvp(lambda a: f(x[None] + a * V), (a0,), (da,)), n):.4f} s")

    def k_grads():
        xg = x.clone().requires_grad_(True)
        y = f(xg[None])[0]
        return [torch.autograd.grad((V[j] * y).sum(), xg, retain_graph=True) for j in range(K)]
    print(f"  baseline Jᵀ·U (forward + {K} separate backward):     {best_of(k_grads, n):.4f} s")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for mode in ("jvp", "linearize", "transpose"):
            t_set, op = timed(lambda: JacobianOperator(f, x, forward_mode=mode))
            op.mv(V)  # a linearized graph evaluates its constants on the first call
            t_mv = best_of(lambda: op.mv(V), n)
            print(f"  ours J·V  forward_mode={mode:9s}  {t_mv:.4f} s   (operator set-up {t_set:.3f} s, "
                  f"incl. forward + backward graph)")
        print(f"  ours Jᵀ·U (one vmapped VJP on the stored graph):  {best_of(lambda: op.rmv(V), n):.4f} s")


# ------------------------------------------------------------------------------------ time to solution
def ours(f, x, forward_mode, **kw):
    """lococourse.power_method, timed from scratch: building the operator (forward pass, graph) included."""
    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            op = JacobianOperator(f, x, forward_mode=forward_mode)
        return power_method(op, k=K, **kw)
    return run


def methods(f, x, V0_t, V0_x, quick):
    """name → (zero-argument callable returning an object with .V, .n_iter, .converged; note)."""
    T = "transpose"
    m = {
        "baseline, as published": (None, "stops by allclose(V, V_prev, atol=1e-4)"),
        "baseline + sign alignment": (lambda: baseline_power_method(f, x, K, align_signs=True),
                                      "flip v_j to match before the test"),
        "ours jvp        step 1e-4": (ours(f, x, "jvp", stop="step", tol=1e-4), "batched JVP + batched VJP"),
        "ours linearize  tail 1e-3": (ours(f, x, "linearize", stop="tail", tol=1e-3), "the old default: trace once"),
        "ours transpose  step 1e-4": (ours(f, x, T, stop="step", tol=1e-4), "J·V by double backward"),
        "ours transpose  tail 1e-3": (ours(f, x, T, stop="tail", tol=1e-3), "+ tail rule"),
        "ours transpose  tail 1e-3 os 2": (ours(f, x, T, stop="tail", tol=1e-3, oversample=2), "+ oversample 2"),
        "ours transpose  tail 1e-3 os 2 V0(t')": (ours(f, x, T, stop="tail", tol=1e-3, oversample=2, V0=V0_t),
                                                  "+ warm start: answer at t+0.02"),
        "ours transpose  tail 1e-3 os 2 V0(x')": (ours(f, x, T, stop="tail", tol=1e-3, oversample=2, V0=V0_x),
                                                  "+ warm start: answer at another x_t"),
        "ours transpose  tail 1e-6": (ours(f, x, T, stop="tail", tol=1e-6),
                                      "run to the float32 floor, like the baseline"),
    }
    if quick:
        m.pop("ours linearize  tail 1e-3")
    return m


def bench_power(f, x, V_ref, V0_t, V0_x, repeats, quick):
    ms = methods(f, x, V0_t, V0_x, quick)
    names = list(ms)
    times = {n: [] for n in names}
    oracle = []  # baseline's time until its iterate was first within TARGET (an oracle stop)
    res = {}
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]  # rotate: no method always runs first
        for n in order:
            if n == names[0]:
                rec: list = []
                t0 = time.perf_counter()
                out = baseline_power_method(f, x, K, record=rec)
                times[n].append(time.perf_counter() - t0)
                hit = [(t - t0, i + 1) for i, (t, V) in enumerate(rec) if subspace_distance(V, V_ref) <= TARGET]
                oracle.append(hit[0] if hit else (float("nan"), 0))
            else:
                dt, out = timed(ms[n][0])
                times[n].append(dt)
            res[n] = out
    tb = statistics.median(times[names[0]])
    rows = []
    for n in names:
        t_med = statistics.median(times[n])
        per_round = statistics.median(b / o for b, o in zip(times[names[0]], times[n]))
        rows.append((n, t_med, min(times[n]), res[n].n_iter, res[n].converged, subspace_distance(res[n].V, V_ref),
                     tb / t_med, per_round, min(times[names[0]]) / min(times[n]), ms[n][1]))
        if n == names[0]:
            t_or = statistics.median(o[0] for o in oracle)
            t_or_min = min(o[0] for o in oracle)
            rows.append((f"baseline, oracle stop at dist ≤ {TARGET:g}", t_or, t_or_min, oracle[-1][1],
                         None, TARGET, tb / t_or, statistics.median(b / o[0] for b, o in zip(times[n], oracle)),
                         min(times[n]) / t_or_min, "first iterate within target (not a real rule)"))
    return rows


def print_power_table(rows, repeats):
    d_base = rows[0][5]
    print(f"\ntime to the top-{K} subspace, {repeats} interleaved rounds; speed-up over the published baseline as "
          f"median/median, median of per-round ratios, and min/min:")
    print(f"{'method':40s} {'median s':>9s} {'min s':>7s} {'iters':>5s} {'conv':>5s} {'dist':>9s} "
          f"{'speed-up':>8s} {'rounds':>7s} {'mins':>6s}  note")
    for n, t_med, t_min, it, conv, dist, su, su_r, su_m, note in rows:
        if conv is None:
            flag, dist_s, c = "", f"≤{dist:.0e}", "-"
        else:
            flag = "" if dist <= TARGET else "  ✗ misses the target"
            dist_s, c = f"{dist:.2e}", "yes" if conv else "no"
        print(f"{n:40s} {t_med:9.3f} {t_min:7.3f} {it:5d} {c:>5s} {dist_s:>9s} {su:7.1f}× {su_r:6.1f}× {su_m:5.1f}×  "
              f"{note}{flag}")
    by = {r[0]: r for r in rows}
    head, eq = by.get("ours transpose  tail 1e-3 os 2"), by.get("ours transpose  tail 1e-6")
    orc = rows[1]
    if head and eq:
        print(f"\nheadline: to dist ≤ {TARGET:g}, ours {head[1]:.2f} s (dist {head[5]:.1e}) vs the baseline as published "
              f"{rows[0][1]:.2f} s (dist {d_base:.1e}): {head[6]:.1f}× (per-round median {head[7]:.1f}×)\n"
              f"  at the baseline's accuracy (float32 floor), ours {eq[1]:.2f} s (dist {eq[5]:.1e}): "
              f"{rows[0][1] / eq[1]:.1f}× vs as published, {rows[2][1] / eq[1]:.1f}× vs sign-aligned ({rows[2][1]:.2f} s, "
              f"dist {rows[2][5]:.1e})\n"
              f"  to dist ≤ {TARGET:g} vs the sign-aligned baseline: {rows[2][1] / head[1]:.1f}×;  vs the baseline stopped "
              f"by an oracle at its first iterate within {TARGET:g} ({orc[1]:.2f} s): {orc[1] / head[1]:.1f}×")


def tol_sweep(f, x, V_ref):
    print("\nstopping rules (transpose mode, one run each): tol → iterations, distance to the dense answer")
    op = JacobianOperator(f, x, forward_mode="transpose")
    for stop, os_ in (("step", 0), ("tail", 0), ("tail", 2)):
        line = []
        for tol in (1e-2, 1e-3, 1e-4, 1e-6):
            r = power_method(op, k=K, stop=stop, tol=tol, oversample=os_)
            line.append(f"tol {tol:.0e}: {r.n_iter:2d} it, dist {subspace_distance(r.V, V_ref):.1e}")
        print(f"  stop={stop:4s} os {os_}  " + ";  ".join(line))
    r = power_method(op, k=K, stop="step", tol=1e-7, max_iter=12)
    print("  successive-subspace δ_i (step, tol 1e-7):", " ".join(f"{d:.1e}" for d in r.history))


# ------------------------------------------------------------------------------------ dense
def bench_dense(unet, t, repeats):
    x = _models.point(t)[:, 8:24, 8:24].contiguous()  # 3×16×16, d = 768
    f = _models.pmp(t, unet)
    t_loop, t_vmap = [], []
    for r in range(repeats):
        for which in (("loop", "vmap") if r % 2 == 0 else ("vmap", "loop")):
            if which == "loop":
                dt, Jl = timed(lambda: dense_jacobian_loop(f, x))
                t_loop.append(dt)
            else:
                dt, Jv = timed(lambda: dense_jacobian(f, x, chunk_size=256))
                t_vmap.append(dt)
    err = float((Jl - Jv).abs().max() / Jl.abs().max())
    tl, tv = statistics.median(t_loop), statistics.median(t_vmap)
    print(f"\ndense Jacobian of the PMP on a 3×16×16 crop (768 × 768), median of {repeats} interleaved rounds:")
    print(f"  row by row   (dense_jacobian_loop, 768 backward passes)    {tl:8.2f} s")
    print(f"  chunked vmap (dense_jacobian, chunk_size=256: 3 passes)     {tv:8.2f} s   speed-up {tl / tv:.1f}× "
          f"(per-round median {statistics.median(a / b for a, b in zip(t_loop, t_vmap)):.1f}×)")
    print(f"  agreement: max |J_loop − J_vmap| / max |J| = {err:.1e}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 rounds, no linearize row, no tol sweep, 1 dense round")
    ap.add_argument("--t", type=float, default=0.5, help="diffusion time of the PMP (default 0.5)")
    ap.add_argument("--repeats", type=int, default=None, help="timing rounds (default 5; quick 2)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch.set_num_threads; default 1: on a shared 2-core CPU two threads per process "
                         "oversubscribe and spike; 0 = torch's default")
    ap.add_argument("--skip-dense", action="store_true", help="skip the dense-Jacobian benchmark")
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (2 if args.quick else 5)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); t = {args.t}, k = {K}, "
          f"target distance ≤ {TARGET:g}; {repeats} rounds")

    unet = _models.trained_unet()
    f, x = _models.pmp(args.t, unet), _models.point(args.t)
    S, V_ref, t_dense = reference(f, x)
    print(f"\ndense Jacobian 3072 × 3072 in {t_dense:.1f} s; top-8 singular values:")
    print("  " + "  ".join(f"{s:.4f}" for s in S[:8].tolist()) + f"   σ5/σ6 = {float(S[4] / S[5]):.2f}")

    # warm starts, computed once outside the timings: the same x₀ and noise at t + 0.02; another x_t
    t2 = args.t + 0.02
    V0_t = power_method(JacobianOperator(_models.pmp(t2, unet), _models.point(t2), "transpose"), k=K, tol=1e-4).V
    V0_x = power_method(JacobianOperator(f, _models.point(args.t, seed=2), "transpose"), k=K, tol=1e-4).V
    print(f"warm starts: dist(V0 from t' = {t2:.2f}, V_ref) = {subspace_distance(V0_t, V_ref):.2e}; "
          f"dist(V0 from another x_t, V_ref) = {subspace_distance(V0_x, V_ref):.2e}")

    bench_pieces(f, x, 2 if args.quick else 3)
    if not args.quick:
        tol_sweep(f, x, V_ref)
    rows = bench_power(f, x, V_ref, V0_t, V0_x, repeats, args.quick)
    print_power_table(rows, repeats)
    if not args.skip_dense:
        bench_dense(unet, args.t, 1 if args.quick else 3)


if __name__ == "__main__":
    main()
