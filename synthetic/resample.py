"""Redraw a model folder's ``samples.png`` with the package's DDIM (η = 0, the paper's 100-step grid) and record it
in its card — for folders exported before the recipes sampled through :func:`lococourse.models.ddim.ddim_sample`.

    python -m synthetic.resample faces16 faces32 molrg_d48 molrg_d192 --overwrite
    python -m synthetic.resample PATH/TO/FOLDER --overwrite

The weights are never touched (their sha256 stays the card's).  ``samples.png``, ``card.json`` and ``README.md``
are replaced, each atomically, and only with ``--overwrite``; the number of samples and their seed are the card's.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from lococourse.data.images import atomic_write
from lococourse.data.molrg_images import load_molrg
from lococourse.models.registry import load_model
from synthetic.common import ASSETS, load_card, readme, sample_images, save_grid, subspace_fit

SAMPLER = "DDIM on the paper's 100-step grid (lococourse.models.ddim.ddim_sample)"


def resample(folder: str | Path, *, log=print) -> dict:
    """Steps: 1. load the model and its card; 2. draw the card's n samples from its seed (x_T ~ N(0, I), 100 DDIM
    steps); 3. for a MoLRG model, the fraction of each sample's energy in its best subspace; 4. write the grid, the
    card and the README.  Returns the new card."""
    folder = Path(folder)
    card = load_card(folder)
    model = load_model(str(folder))
    n, seed = int(card["samples"]["n"]), int(card["samples"]["seed"])
    samples = sample_images(model, n, seed=seed)
    info = {"file": "samples.png", "n": n, "steps": 100, "eta": 0.0, "seed": seed, "sampler": SAMPLER}
    bases = card.get("data", {}).get("bases_file")
    if bases:
        fit = subspace_fit(samples, load_molrg(folder / bases))
        info.update(subspace_fit_mean=float(fit.mean()), subspace_fit_min=float(fit.min()))
    atomic_write(folder / "samples.png", lambda p: save_grid(samples, p, mode="auto" if bases else "image"))
    card["samples"] = info
    atomic_write(folder / "card.json", lambda p: p.write_text(json.dumps(card, indent=1)))
    atomic_write(folder / "README.md", lambda p: p.write_text(readme(card)))
    log(f"{card['name']}: {n} samples redrawn ({SAMPLER}, seed {seed})"
        + (f"; energy in the best subspace {info['subspace_fit_mean']:.4f} (min {info['subspace_fit_min']:.4f})"
           if bases else ""))
    return card


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m synthetic.resample", description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", help="shipped model names (in lococourse/assets/models) or model folders")
    p.add_argument("--overwrite", action="store_true", help="replace samples.png, card.json and README.md")
    a = p.parse_args(argv)
    folders = []
    for m in a.models:
        folder = Path(m) if Path(m).is_dir() else ASSETS / m
        if not (folder / "card.json").is_file():
            p.error(f"{m!r} is neither a shipped model ({', '.join(sorted(x.name for x in ASSETS.iterdir()))}) "
                    "nor a model folder with a card.json")
        folders.append(folder)
    if not a.overwrite:
        p.error(f"this replaces samples.png, card.json and README.md in {', '.join(map(str, folders))}; "
                "add --overwrite to do so")
    for folder in folders:
        resample(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
