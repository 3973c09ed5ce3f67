"""The paper's architectures at their real size — parameters, one PMP forward, one J·V and one Jᵀ·U at k = 5, one
LOCO direction (both power methods) and peak memory.  RANDOM WEIGHTS: the stand-ins of
:mod:`lococourse.models.real_size` have the real architectures and seeded random weights; cost does not depend on
the weights' values, image quality is not measured.

    python benchmarks/bench_real_size.py                     # every architecture, 1 torch thread (hours on a CPU)
    python benchmarks/bench_real_size.py --quick             # no direction run (estimated from J·V / Jᵀ·U), DDPM once
    python benchmarks/bench_real_size.py --only sd-2.1-base  # one architecture (registry name); may repeat
    python benchmarks/bench_real_size.py --rescore           # rebuild the markdown table from the JSON

Protocol, per architecture (registry names; each in its own child process, so that a memory-guard stop or a time
box loses only that one):

1. parameters of every component, counted on the meta device (no weights allocated) — the hub checkpoint's, and
   the stand-in's where it differs (hand-made 514-token vocabulary; IF's reduced T5);
2. build the stand-in (seeded random weights, float32);
3. the PMP f at the paper's edit time (DDPM: x̂₀ of the UNet; SD/IF: the CFG-guided f^o of eq. 11, decoded to
   pixels by the VAE for SD and LCM; LCM: its consistency PMP at the second of 4 steps) at a seeded Gaussian
   point of the input shape: one forward without a graph (text models: the prompts are encoded once, then the
   text encoder is released — the Jacobian never needs it);
4. the linearisation (:class:`~lococourse.jacobian.JacobianOperator`: the forward pass with its graph, and for
   ``forward_mode="transpose"`` the graph of the backward that gives J·V);
5. one J·V with k = 5 directions and one Jᵀ·U with k = 5 covectors on that operator;
6. one LOCO direction: :func:`~lococourse.editing.loco.find_direction` on that operator with r = r' = 5 (both
   power methods: the masked Jacobian and its complement), ``max_iter`` iterations each (default 1 on a CPU; the
   Rayleigh–Ritz step adds one J·V) — run only if its estimate 2·(max_iter·(J·V + Jᵀ·U) + J·V) fits the rest of
   the time box, else reported as that estimate.

Time is wall time; memory is the process's peak resident set (weights included) during each stage
(``/proc/self/status`` VmHWM, reset before each stage).  A child whose resident memory passes ``--memory-limit``
is stopped by :class:`~lococourse.models.real_size.memory_guard` (the machine is shared: better than the OOM
killer picking someone else) and its row says at which stage.  GPU: measured only where a GPU is present
(``--device cuda``); otherwise "not measured (no GPU lent)".  The reference is the paper's 79 s per LOCO
direction on an A40 (r = 5); the goal for a GPU is ≤ 10 s for the 256² DDPM.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from lococourse.data.images import atomic_write
from lococourse.models import real_size as rs
from lococourse.models.registry import HUB_MODELS

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "real_size.json"
ARCHITECTURES = ["ddpm-celebahq-256", "ddpm-church-256", "ddpm-bedroom-256", "sd-2.1-base", "deepfloyd-if-i-m",
                 "lcm-dreamshaper-v7"]
K = 5
PAPER_A40_SECONDS = 79.0
GPU_GOAL_SECONDS = 10.0
NO_GPU = "not measured (no GPU lent)"

#: Per architecture: the Jacobian operator's knobs (chunk: J·V / Jᵀ·U directions per batched call).  The
#: defaults are the library's; the latent models need chunk = 1, the forward-mode J·V and recomputed blocks to fit
#: (see the README and lococourse.models.recompute).
KNOBS = {
    "unet2d": dict(forward_mode="transpose", chunk=None),
    "if": dict(forward_mode="transpose", chunk=None),
    "sd": dict(forward_mode="jvp", chunk=1),
    "lcm": dict(forward_mode="jvp", chunk=1),
}
#: Families whose stand-in recomputes its UNet/VAE blocks in the backward pass (standin_t2i(recompute=True)):
#: with every activation stored, their 512 px Jacobian does not fit 24 GB.
RECOMPUTE_FAMILIES = ("sd", "lcm")


# ----------------------------------------------------------------------------- one architecture (child process)
def _pmp(name: str, device: str):
    """(stand-in, PMP f, input point x) of registry model ``name``."""
    spec = HUB_MODELS[name]
    g = torch.Generator().manual_seed(0)
    if spec.family == "unet2d":
        model = rs.standin_model(name)
        model.unet.to(device)
        f = model.pmp(spec.edit_t)
        x = torch.randn(*model.shape, generator=g).to(device)
        return model, f, x
    pipe = rs.standin_t2i(name, num_steps=None, recompute=spec.family in RECOMPUTE_FAMILIES).to(device)
    model = pipe.with_prompts("a photo of a cat", "a photo of a cat with a red hat")
    pipe.text_encoder = None  # prompts encoded; the Jacobian never needs it again (frees 0.1–1.2 GB)
    f = model.pmp_source(model.default_t())
    x = pipe.noise(0)[0]
    return model, f, x


def _mask(out_shape) -> torch.Tensor:
    """Ω: a centred rectangle, a quarter of the width by an eighth of the height, in the PMP's output space."""
    _, H, W = out_shape
    m = torch.zeros(H, W, dtype=torch.bool)
    m[3 * H // 8: H // 2, 3 * W // 8: 5 * W // 8] = True
    return m


def _param_row(name: str) -> dict:
    source = HUB_MODELS[name].source
    summary = rs.real_size_summary(source)
    row = {"hub": source, "random_weights": True, "params": summary["params"], "image_size": summary["image_size"],
           "unet_sample_size": summary["unet_sample_size"], "latent_scale": summary["latent_scale"]}
    if rs.has_component(source, "text_encoder"):
        reduced = HUB_MODELS[name].family == "if"
        enc = rs.build_real_text_encoder(source, device="meta", reduced_text_encoder=reduced, vocab_size=514)
        row["params"]["text_encoder_standin"] = sum(p.numel() for p in enc.parameters())
    return row


def _same_architecture(name: str, other: str) -> bool:
    """Whether two checkpoints' UNets are the same module (their diffusers configs agree once defaults are filled in)."""
    a, b = ({k: v for k, v in rs.build_real_unet(HUB_MODELS[n].source, device="meta").config.items()
             if not k.startswith("_")} for n in (name, other))  # not diffusers' bookkeeping (_use_default_values …)
    return a == b


@contextlib.contextmanager
def _alarm(seconds: float):
    """Raise TimeoutError in this (main) thread after ``seconds`` (between torch ops: a forward pass is many)."""
    def handler(signum, frame):
        raise TimeoutError(f"not done after {seconds:g} s")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_one(name: str, args, partial: Path) -> dict:
    """All stages for one architecture; the row is rewritten to ``partial`` after every stage."""
    from lococourse.editing.loco import find_direction
    from lococourse.jacobian.operator import JacobianOperator

    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    spec = HUB_MODELS[name]
    knobs = dict(KNOBS[spec.family])
    k = args.k
    shown = {**knobs, **({"recompute": True} if spec.family in RECOMPUTE_FAMILIES else {})}
    row = {"name": name, "family": spec.family, **_param_row(name), "knobs": shown, "k": k, "stages": {},
           "device": args.device, "dtype": "float32"}

    def save():
        partial.write_text(json.dumps(row, indent=1))

    def stage(label, fn, *a, **kw):
        row["running"] = label
        save()
        with rs.memory_guard(args.memory_limit, f"{name}: {label}"):
            out, m = rs.measure(fn, *a, **kw)
        row["stages"][label] = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in m.items()}
        row.pop("running")
        save()
        print(f"  {name} {label}: {m['seconds']:.1f} s, peak {m['peak_rss_gb']:.2f} GB", flush=True)
        return out

    save()
    model, f, x = stage("build", _pmp, name, args.device)
    row["d_in"], row["shape_in"] = x.numel(), list(x.shape)
    with torch.no_grad():
        y = stage("pmp_forward", lambda: f(x.unsqueeze(0))[0])
    row["d_out"], row["shape_out"] = y.numel(), list(y.shape)
    op = stage("linearize", JacobianOperator, f, x, **knobs)
    g = torch.Generator().manual_seed(1)
    V = torch.randn(k, *x.shape, generator=g).to(x)
    U = torch.randn(k, *y.shape, generator=g).to(y)
    stage("jv_k5", op.mv, V)
    stage("jtu_k5", op.rmv, U)
    jv, jtu = row["stages"]["jv_k5"]["seconds"], row["stages"]["jtu_k5"]["seconds"]
    estimate = 2 * (args.max_iter * (jv + jtu) + jv)
    left = args.time_box - (time.perf_counter() - t_start)
    row["direction_estimate_seconds"] = round(estimate, 1)
    row["direction_max_iter"] = args.max_iter
    if args.quick or estimate > left:
        row["direction_skipped"] = ("--quick" if args.quick else
                                    f"estimate {estimate:.0f} s exceeds the {left:.0f} s left of the time box")
    else:
        mask = _mask(y.shape)
        d = stage("direction", find_direction, op, None, mask, r=k, r_null=k, max_iter=args.max_iter, tol=1e-4)
        row["direction_converged"], row["direction_n_iter"] = d.extra["converged"], d.extra["n_iter"]
    if args.bf16 and spec.family == "unet2d":  # one forward in bf16 on this CPU (no native bf16: expect it slower)
        model.unet.to(torch.bfloat16)
        f16 = model.pmp(spec.edit_t)
        try:
            with torch.no_grad(), _alarm(args.bf16_box):
                stage("pmp_forward_bf16", lambda: f16(x.unsqueeze(0).to(torch.bfloat16))[0])
        except TimeoutError:
            row.pop("running", None)
            row["stages"]["pmp_forward_bf16"] = {"did_not_finish_within_seconds": args.bf16_box}
            print(f"  {name} pmp_forward_bf16: not done after {args.bf16_box:g} s", flush=True)
        model.unet.to(torch.float32)
    row["gpu"] = NO_GPU if args.device == "cpu" else f"measured on {torch.cuda.get_device_name()}"
    save()
    return row


# ----------------------------------------------------------------------------- driver
def _machine() -> dict:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    flags = ""
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu or platform.processor(), "cores": os.cpu_count(), "avx512": "avx512f" in flags,
            "native_bf16": ("avx512_bf16" in flags) or ("amx_bf16" in flags), "torch": torch.__version__,
            "python": platform.python_version(), "load_average": list(os.getloadavg())}


def run_child(name: str, args) -> dict:
    """Run one architecture in a child process within the time box; a stopped child leaves its partial row."""
    with tempfile.TemporaryDirectory() as d:
        partial = Path(d) / "row.json"
        cmd = [sys.executable, __file__, "--child", name, "--partial", str(partial), "--threads", str(args.threads),
               "--time-box", str(args.time_box), "--memory-limit", str(args.memory_limit), "--max-iter",
               str(args.max_iter), "--device", args.device, "--bf16-box", str(args.bf16_box), "--k", str(args.k)] + (["--quick"] if args.quick else []) + \
              (["--bf16"] if args.bf16 else [])
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, env=env, timeout=args.time_box)
            status = proc.returncode
        except subprocess.TimeoutExpired:
            status = "time box"
        row = json.loads(partial.read_text()) if partial.exists() else {"name": name, "stages": {}}
    row["wall_seconds"] = round(time.perf_counter() - t0, 1)
    if status == rs.MEMORY_GUARD_EXIT:
        row["stopped"] = f"memory guard: resident memory passed {args.memory_limit:g} GB during {row.get('running')}"
    elif status == "time box":
        row["stopped"] = f"time box of {args.time_box:g} s reached during {row.get('running')}"
    elif status != 0:
        row["stopped"] = f"child exited with status {status} during {row.get('running')}"
    row.setdefault("gpu", NO_GPU)
    return row


def _fmt_stage(row: dict, key: str) -> str:
    s = row.get("stages", {}).get(key)
    if s is None:
        return "—"
    at_k = f" at k = {row['k']}" if key in ("jv_k5", "jtu_k5", "direction") and row.get("k", K) != K else ""
    return f"{s['seconds']:.1f} s ({s['peak_rss_gb']:.1f} GB){at_k}"


def _fmt_params(p: dict) -> str:
    parts = [f"UNet {p['unet'] / 1e6:.0f}M"]
    if p.get("vae"):
        parts.append(f"VAE {p['vae'] / 1e6:.0f}M")
    if p.get("text_encoder"):
        te = f"text {p['text_encoder'] / 1e6:.0f}M"
        if p.get("text_encoder_standin") and p["text_encoder_standin"] != p["text_encoder"]:
            te += f" (stand-in {p['text_encoder_standin'] / 1e6:.0f}M)"
        parts.append(te)
    return ", ".join(parts)


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = [
        "# Real-size architectures on a CPU — RANDOM WEIGHTS (stand-ins: cost only, no image quality)",
        "",
        "Commands: " + "; ".join(f"`{c}`" for c in results.get("commands") or [results["command"]]) + f" — {m['cpu']}, {m['cores']} cores "
        "shared with other jobs (each row's load average in the JSON), "
        f"{results['threads']} torch thread(s), torch "
        f"{m['torch']}, float32.  Time: wall seconds; in brackets the process's peak resident memory (weights "
        "included) during that stage.  k = 5 directions for J·V and Jᵀ·U and r = r' = k for the direction unless "
        "a cell says \"at k = …\" (`--k`); the direction is "
        f"`find_direction` with {results['max_iter']} power iteration(s) each (+ Rayleigh–Ritz), "
        "not iterated to its tolerance.",
        "",
        "| architecture | parameters | x_t → f(x_t) | knobs | build | PMP forward | linearize | J·V (k=5) | "
        "Jᵀ·U (k=5) | one direction | GPU |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in ARCHITECTURES:
        row = results["rows"].get(name)
        if row is None:
            continue
        if "same_as" in row:
            lines.append(f"| {name} | {_fmt_params(row['params'])} | same UNet2DModel as {row['same_as']} "
                         "(configs equal) | | | | | | | | |")
            continue
        shape = "→".join("×".join(map(str, s)) for s in (row.get("shape_in"), row.get("shape_out")) if s)
        knobs = ", ".join(f"{k}={v}" for k, v in row.get("knobs", {}).items())
        if "direction" in row.get("stages", {}):
            direction = _fmt_stage(row, "direction")
        elif "direction_estimate_seconds" in row:
            at_k = f" at r = r' = {row['k']}" if row.get("k", K) != K else ""
            direction = f"≈ {row['direction_estimate_seconds']:.0f} s (estimate{at_k}, not run)"
        else:
            direction = "—"
        if row.get("stopped"):
            direction += f" **stopped: {row['stopped']}**"
        lines.append(f"| {name} | {_fmt_params(row['params'])} | {shape} | {knobs} | {_fmt_stage(row, 'build')} | "
                     f"{_fmt_stage(row, 'pmp_forward')} | {_fmt_stage(row, 'linearize')} | {_fmt_stage(row, 'jv_k5')} | "
                     f"{_fmt_stage(row, 'jtu_k5')} | {direction} | {row.get('gpu', NO_GPU)} |")
    bf = [(n, r) for n, r in results["rows"].items() if "pmp_forward_bf16" in r.get("stages", {})]
    for n, r in bf:
        s16 = r["stages"]["pmp_forward_bf16"]
        took = (f"had not finished after {s16['did_not_finish_within_seconds']:g} s" if "did_not_finish_within_seconds"
                in s16 else f"took {_fmt_stage(r, 'pmp_forward_bf16')}")
        lines += ["", f"bf16 on this CPU ({'native' if m['native_bf16'] else 'no native bf16 instructions'}): one PMP "
                  f"forward of {n} {took}, vs {_fmt_stage(r, 'pmp_forward')} in float32."]
    lines += ["", f"Reference: the paper's {PAPER_A40_SECONDS:g} s per LOCO direction on an A40; GPU goal ≤ "
              f"{GPU_GOAL_SECONDS:g} s for the 256² DDPM — {NO_GPU}.", ""]
    return "\n".join(lines)


def _write(path: Path, results: dict) -> None:
    atomic_write(path, lambda p: p.write_text(json.dumps(results, indent=1) + "\n"))
    atomic_write(path.with_suffix(".md"), lambda p: p.write_text(markdown(results)))


def _portable(argv: list[str]) -> list[str]:
    """The command line as recorded: ``--out`` inside the checkout relative to it, never this machine's path."""
    out = list(argv)
    for i, a in enumerate(out):
        value = a.split("=", 1)[1] if a.startswith("--out=") else (out[i + 1] if a == "--out" and i + 1 < len(out) else None)
        if value is None:
            continue
        p = Path(value).resolve()
        shown = str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else p.name
        if a == "--out":
            out[i + 1] = shown
        else:
            out[i] = f"--out={shown}"
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", choices=ARCHITECTURES, help="one architecture (registry name); repeatable")
    ap.add_argument("--quick", action="store_true", help="no direction run (estimate only); the DDPMs measured once")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    ap.add_argument("--time-box", type=float, default=3600.0, help="seconds per architecture (default 3600)")
    ap.add_argument("--memory-limit", type=float, default=18.0, help="GB of resident memory before a child is stopped")
    ap.add_argument("--max-iter", type=int, default=1, help="power iterations per power method (default 1)")
    ap.add_argument("--k", type=int, default=K, help=f"directions for J·V / Jᵀ·U and r = r' of the direction "
                    f"(default {K}, the paper's; fewer only to fit a CPU's time)")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda where a GPU is present")
    ap.add_argument("--bf16", action="store_true", help="also one bf16 PMP forward of the DDPM")
    ap.add_argument("--bf16-box", type=float, default=300.0, help="seconds before the bf16 forward is given up")
    ap.add_argument("--out", type=Path, default=OUT, help=f"results JSON (default {OUT.relative_to(ROOT)}; .md beside)")
    ap.add_argument("--rescore", action="store_true", help="only rebuild the markdown table from --out")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--partial", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    for value, flag in ((args.threads, "--threads"), (args.max_iter, "--max-iter"), (args.k, "--k")):
        if value < 1:
            ap.error(f"{flag} must be a positive integer; got {value}")
    if not (args.time_box > 0 and args.memory_limit > 0):
        ap.error("--time-box and --memory-limit must be positive")
    if args.device != "cpu" and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: no GPU here (torch.cuda.is_available() is False)")
    if args.child:
        run_one(args.child, args, args.partial)
        return 0
    if args.rescore:
        results = json.loads(args.out.read_text())
        atomic_write(args.out.with_suffix(".md"), lambda p: p.write_text(markdown(results)))
        print(markdown(results))
        return 0
    names = args.only or ARCHITECTURES
    command = "python benchmarks/bench_real_size.py " + " ".join(_portable(argv if argv is not None else sys.argv[1:]))
    previous = json.loads(args.out.read_text()) if (args.only and args.out.exists()) else {"rows": {}}
    results = {
        "random_weights": True,
        "commands": previous.get("commands", [previous["command"]] if "command" in previous else []) + [command],
        "date": datetime.date.today().isoformat(), "threads": args.threads, "max_iter": args.max_iter,
        "time_box_seconds": args.time_box, "memory_limit_gb": args.memory_limit, "machine": _machine(),
        "reference": {"paper_A40_seconds_per_direction": PAPER_A40_SECONDS, "gpu_goal_seconds_ddpm256": GPU_GOAL_SECONDS},
        "gpu": NO_GPU if args.device == "cpu" else args.device,
        "rows": previous.get("rows", {}),
    }
    for name in names:
        first_ddpm = next((n for n in ARCHITECTURES[:3] if n in results["rows"] and "same_as" not in results["rows"][n]
                           and results["rows"][n].get("stages")), None)
        if (args.quick or not args.only) and first_ddpm and name != first_ddpm and HUB_MODELS[name].family == "unet2d" \
                and _same_architecture(name, first_ddpm):
            results["rows"][name] = {"name": name, **_param_row(name), "same_as": first_ddpm}
            print(f"{name}: the same UNet2DModel as {first_ddpm}; not measured again", flush=True)
            _write(args.out, results)
            continue
        print(f"{name}: measuring (time box {args.time_box:g} s, memory limit {args.memory_limit:g} GB)", flush=True)
        results["rows"][name] = {**run_child(name, args), "command": command,
                                 "date": datetime.datetime.now().isoformat(timespec="minutes"),
                                 "load_average_start": results["machine"]["load_average"],
                                 "machine": {k: v for k, v in results["machine"].items() if k != "load_average"}}
        _write(args.out, results)
    results["machine"]["load_average_end"] = list(os.getloadavg())
    _write(args.out, results)
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
