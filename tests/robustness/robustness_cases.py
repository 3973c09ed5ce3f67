"""The bad inputs of the robustness suite, in one table (also timed by benchmarks/bench_bad_inputs.py).

:func:`make_inputs` builds, in one folder, every file the cases read: tiny model folders (a faces model, a plain
one, broken ones), images of every kind, mask images and direction files (good and damaged).  :data:`CLI_CASES`
are (id, argv builder, exit status, substrings the message must hold: the offending value and what is allowed).
"""
from __future__ import annotations

import json
import shutil
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import torch

FACES_GENERATOR = "lococourse.data.faces.render_faces"


def _png_header_only(path: Path, w: int, h: int) -> Path:
    """A PNG whose header promises w × h pixels and holds none (a decompression bomb's first bytes)."""
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return path


def tiny_model(path: Path, size: int = 16, seed: int = 0, faces: bool = True, card: bool = True) -> Path:
    """A seeded random x₀-prediction UNet2DModel as a diffusers folder (safetensors), with a card unless asked not."""
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    unet = UNet2DModel(sample_size=size, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                       layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4, add_attention=False)
    unet.save_pretrained(path, safe_serialization=True)
    if card:
        data = {"generator": FACES_GENERATOR, "size": size} if faces else {"generator": "noise"}
        (path / "card.json").write_text(json.dumps({"name": path.name, "prediction_type": "sample", "data": data,
                                                    "shape": [3, size, size], "resolution": size}))
    return path


def _direction(folder: Path, **kw):
    from lococourse.editing.direction import Direction

    v = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[4:9, 3:12] = True
    base = dict(v=v / v.norm(), t=0.601, mask=mask, index=0, r=3, r_null=2, sigma=1.0, model=folder.name,
                found_at=str(folder), extra={"source": "robustness suite"})
    base.update(kw)
    return Direction(**base)


def _raw_direction(path: Path, v: torch.Tensor, mask: torch.Tensor, meta: dict) -> Path:
    from safetensors.torch import save_file

    save_file({"v": v.contiguous(), "mask": mask.contiguous()}, str(path), metadata={"lococourse_direction": json.dumps(meta)})
    return path


def make_inputs(root: Path) -> SimpleNamespace:
    """Every input file of the cases, under ``root``; returns their paths by name."""
    from PIL import Image

    from lococourse.editing.direction import Direction

    root.mkdir(parents=True, exist_ok=True)
    m, i, d = root / "models", root / "inputs", root / "directions"
    for f in (m, i, d):
        f.mkdir()
    p = SimpleNamespace(root=root)
    p.faces = tiny_model(m / "faces")
    p.plain = tiny_model(m / "plain", faces=False)
    p.small = tiny_model(m / "small8", size=8)
    p.nocard = tiny_model(m / "nocard", card=False)
    p.noconfig = m / "noconfig"
    p.noconfig.mkdir()
    p.corrupt = m / "corrupt"
    shutil.copytree(p.faces, p.corrupt)
    card = json.loads((p.corrupt / "card.json").read_text())
    from lococourse.core.checks import file_sha256

    w = p.corrupt / "diffusion_pytorch_model.safetensors"
    card["weights_sha256"] = file_sha256(w)
    (p.corrupt / "card.json").write_text(json.dumps(card))
    raw = bytearray(w.read_bytes())
    raw[-500] ^= 0x10  # one flipped bit in the tensor data, after the card recorded the hash
    w.write_bytes(bytes(raw))
    p.pickled = m / "pickled"
    shutil.copytree(p.faces, p.pickled)
    torch.save({"weights": torch.ones(3)}, p.pickled / "diffusion_pytorch_model.safetensors")

    rng = np.random.default_rng(0)
    p.face = i / "face.png"
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(p.face)
    p.face20 = i / "face20.png"
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(p.face20)
    rgba = rng.integers(0, 256, (16, 16, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[0, :5, 3] = 0
    p.holes = i / "holes.png"
    Image.fromarray(rgba, "RGBA").save(p.holes)
    p.bomb = _png_header_only(i / "bomb.png", 50_000, 50_000)
    p.truncated = i / "truncated.png"
    p.truncated.write_bytes(p.face.read_bytes()[:70])
    p.text = i / "notes.png"
    p.text.write_text("this is not an image")
    p.empty = i / "empty.png"
    p.empty.write_bytes(b"")
    p.folder = i / "a_folder"
    p.folder.mkdir()
    p.file = i / "file.txt"
    p.file.write_text("a file, not a folder")
    p.mask_black = i / "mask_black.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(p.mask_black)
    p.mask8 = i / "mask8.png"
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(p.mask8)
    p.mask_full = i / "mask_full.png"
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(p.mask_full)

    good = _direction(p.faces)
    p.good = good.save(d / "good")
    meta = good.metadata()
    v, mk = good.v.float(), good.mask.to(torch.uint8)
    p.dir_norm1000 = _raw_direction(d / "norm1000.safetensors", v * 1000, mk, meta)
    p.dir_zero = _raw_direction(d / "zero.safetensors", v * 0, mk, meta)
    p.dir_int = _raw_direction(d / "int.safetensors", (v * 10).round().to(torch.int32), mk, meta)
    p.dir_nan = _raw_direction(d / "nan.safetensors", torch.where(v > 0.05, torch.tensor(float("nan")), v), mk, meta)
    p.dir_alltrue = _raw_direction(d / "alltrue.safetensors", v, torch.ones_like(mk), meta)
    p.dir_nokeys = _raw_direction(d / "nokeys.safetensors", v, mk, {k: x for k, x in meta.items() if k not in ("t", "r")})
    p.dir_badt = _raw_direction(d / "badt.safetensors", v, mk, {**meta, "t": 2.0})
    p.dir_flipped = d / "flipped.safetensors"
    shutil.copyfile(p.good, p.dir_flipped)
    (n,) = struct.unpack("<Q", p.dir_flipped.read_bytes()[:8])
    start = json.loads(p.dir_flipped.read_bytes()[8:8 + n])["v"]["data_offsets"][0]
    raw = bytearray(p.dir_flipped.read_bytes())
    raw[8 + n + start + 17] ^= 0x02
    p.dir_flipped.write_bytes(bytes(raw))
    p.dir_truncated = d / "truncated.safetensors"
    p.dir_truncated.write_bytes(p.good.read_bytes()[:-100])
    p.dir_empty = d / "empty.safetensors"
    p.dir_empty.write_bytes(b"")
    p.dir_pickle = d / "pickle.safetensors"
    torch.save({"v": v, "mask": mk}, p.dir_pickle)
    p.dir_moved = _direction(p.faces, model="gone", found_at=str(root / "moved_away" / "gone")).save(d / "moved")
    p.dir_unknown_t = _direction(p.faces, t=float("nan")).save(d / "nan_t")
    p.dir_folder = d / "folder.safetensors"
    p.dir_folder.mkdir()
    assert Direction.load(p.good).model == "faces"
    return p


@dataclass
class Case:
    id: str
    argv: Callable[[SimpleNamespace, Path], list[str]]  # (inputs, a fresh output folder) -> argv
    names: tuple[str, ...]  # substrings the message must hold: the offending value, and what is allowed
    rc: int = 2
    needs_no_cuda: bool = False
    existing: tuple[str, ...] = ()  # files to create in the output folder first (an earlier output)


def _edit(p, o, *extra, seed=True, mask="hair", model=None):
    base = ["edit", "--model", str(model or p.faces), "--strength", "2", "--mask", mask, "--quiet", "--max-iter", "3"]
    if seed:
        base += ["--seed", "3"]
    if "--out" not in extra:
        base += ["--out", str(o / "x.png")]
    return base + list(extra)


def _transfer(p, o, direction, *extra, src=("--seed", "1")):
    base = ["transfer", "--direction", str(direction), *src, "--strength", "2", "--quiet"]
    if "--out" not in extra:
        base += ["--out", str(o / "t.png")]
    return base + list(extra)


def _tedit(p, o, *extra, mask="4,4,12,12", model="tiny-sd"):
    base = ["t-edit", "--model", model, "--prompt", "a photo", "--mask", mask, "--strength", "2", "--quiet"]
    if "--out" not in extra:
        base += ["--out", str(o / "e.png")]
    return base + list(extra)


def _rank(p, o, *extra, model=None):
    base = ["rank-curve", "--model", str(model or p.faces), "--no-progress"]
    if "--out" not in extra:
        base += ["--out", str(o / "rc")]
    return base + list(extra)


BIG_SEED = str(2 ** 64)

CLI_CASES: list[Case] = [
    # ---- edit: numbers
    Case("edit-strength-nan", lambda p, o: _edit(p, o, "--strength", "nan"), ("--strength nan", "|λ| ≤ 10000")),
    Case("edit-strength-1e30", lambda p, o: _edit(p, o, "--strength", "1e30"), ("--strength 1e+30", "|λ| ≤ 10000")),
    Case("edit-strength-1e40", lambda p, o: _edit(p, o, "--strength", "1e40"), ("--strength 1e+40", "finite number")),
    Case("edit-strength-text", lambda p, o: _edit(p, o, "--strength", "big"), ("'big' is not a number", "decimal number")),
    Case("edit-t-0", lambda p, o: _edit(p, o, "--t", "0"), ("--t 0 ", "(0, 1]")),
    Case("edit-t-1.5", lambda p, o: _edit(p, o, "--t", "1.5"), ("--t 1.5", "(0, 1]")),
    Case("edit-t-snaps-to-0", lambda p, o: _edit(p, o, "--t", "0.0004"), ("--t 0.0004", "at least 0.0005")),
    Case("edit-t-nan", lambda p, o: _edit(p, o, "--t", "nan"), ("--t nan", "(0, 1]")),
    Case("edit-index-ge-r", lambda p, o: _edit(p, o, "--index", "5"), ("--index 5", "0 … r − 1 = 4")),
    Case("edit-index-negative", lambda p, o: _edit(p, o, "--index", "-1"), ("--index -1", "0 … r − 1")),
    Case("edit-r-0", lambda p, o: _edit(p, o, "--r", "0"), ("--r 0", "1 … 768")),
    Case("edit-r-too-large", lambda p, o: _edit(p, o, "--r", "10000", "--index", "0"), ("--r 10000", "1 … 768")),
    Case("edit-r-null-d", lambda p, o: _edit(p, o, "--r-null", "768"), ("--r-null 768", "d = 768")),
    Case("edit-r-null-negative", lambda p, o: _edit(p, o, "--r-null", "-1"), ("--r-null -1", "0 ≤ r'")),
    Case("edit-max-iter-0", lambda p, o: _edit(p, o, "--max-iter", "0"), ("--max-iter 0", "1 … 100000")),
    Case("edit-tol-nan", lambda p, o: _edit(p, o, "--tol", "nan"), ("--tol nan", "(0, 1)")),
    Case("edit-tol-0", lambda p, o: _edit(p, o, "--tol", "0"), ("--tol 0", "(0, 1)")),
    Case("edit-seed-65-bits", lambda p, o: _edit(p, o, "--seed", BIG_SEED, seed=False), (BIG_SEED, "2⁶⁴ − 1")),
    Case("edit-seed-negative", lambda p, o: _edit(p, o, "--seed", "-1", seed=False), ("--seed -1", "0 … 2⁶⁴ − 1")),
    Case("edit-seed-float", lambda p, o: _edit(p, o, "--seed", "1.5", seed=False), ("'1.5' is not an integer", "whole number")),
    # ---- edit: masks
    Case("edit-mask-empty-string", lambda p, o: _edit(p, o, mask=""), ("--mask ''", "rectangle x0,y0,x1,y1")),
    Case("edit-mask-unknown-part", lambda p, o: _edit(p, o, mask="nose"), ("'nose'", "eyes")),
    Case("edit-mask-part-without-parts", lambda p, o: _edit(p, o, mask="eyes", model=p.plain), ("'eyes'", "has no parts")),
    Case("edit-mask-all-true", lambda p, o: _edit(p, o, mask="0,0,16,16"), ("'0,0,16,16'", "all True")),
    Case("edit-mask-fractions", lambda p, o: _edit(p, o, mask="0.2,0.2,0.8,0.8"), ("0.2", "covers no pixel", "3,3,13,13")),
    Case("edit-mask-outside", lambda p, o: _edit(p, o, mask="10,10,20,20"), ("(10, 10, 20, 20)", "x1 ≤ W = 16")),
    Case("edit-mask-nan", lambda p, o: _edit(p, o, mask="nan,0,4,4"), ("'nan,0,4,4'", "finite numbers")),
    Case("edit-mask-folder", lambda p, o: _edit(p, o, mask=str(p.folder)), ("a_folder", "is a folder")),
    Case("edit-mask-not-an-image", lambda p, o: _edit(p, o, mask=str(p.text)), ("notes.png", "could not read image")),
    Case("edit-mask-black", lambda p, o: _edit(p, o, mask=str(p.mask_black)), ("mask_black.png", "empty")),
    Case("edit-mask-full-image", lambda p, o: _edit(p, o, mask=str(p.mask_full)), ("mask_full.png", "all True")),
    Case("edit-mask-wrong-size", lambda p, o: _edit(p, o, mask=str(p.mask8)), ("(8, 8)", "(16, 16)")),
    # ---- edit: images
    Case("edit-image-missing", lambda p, o: _edit(p, o, "--image", str(p.root / "nope.png"), seed=False),
         ("nope.png", "does not exist")),
    Case("edit-image-folder", lambda p, o: _edit(p, o, "--image", str(p.folder), seed=False), ("a_folder", "is a folder")),
    Case("edit-image-wrong-size", lambda p, o: _edit(p, o, "--image", str(p.face20), seed=False), ("20×20", "16×16")),
    Case("edit-image-not-an-image", lambda p, o: _edit(p, o, "--image", str(p.text), seed=False),
         ("notes.png", "expected a PNG")),
    Case("edit-image-empty-file", lambda p, o: _edit(p, o, "--image", str(p.empty), seed=False), ("empty.png", "0 bytes")),
    Case("edit-image-empty-string", lambda p, o: _edit(p, o, "--image", "", seed=False), ("--image ''", "16×16")),
    Case("edit-image-transparent", lambda p, o: _edit(p, o, "--image", str(p.holes), seed=False),
         ("holes.png", "transparent pixels")),
    Case("edit-image-bomb", lambda p, o: _edit(p, o, "--image", str(p.bomb), seed=False),
         ("50000×50000", "more than the limit")),
    Case("edit-image-truncated", lambda p, o: _edit(p, o, "--image", str(p.truncated), seed=False),
         ("truncated.png", "could not read image")),
    # ---- edit: outputs
    Case("edit-out-jpg", lambda p, o: _edit(p, o, "--out", str(o / "x.jpg")), ("x.jpg", "ending in .png")),
    Case("edit-out-empty", lambda p, o: _edit(p, o, "--out", ""), ("--out ''", "ending in .png")),
    Case("edit-out-in-model-folder", lambda p, o: _edit(p, o, "--out", str(p.faces / "diffusion_pytorch_model.png")),
         ("diffusion_pytorch_model.png", "inside the model folder")),
    Case("edit-out-is-input", lambda p, o: _edit(p, o, "--image", str(p.face), "--out", str(p.face), "--overwrite",
                                                 seed=False), ("face.png", "never overwrite an input")),
    Case("edit-out-is-mask", lambda p, o: _edit(p, o, "--out", str(p.mask_full), "--overwrite", mask=str(p.mask_full)),
         ("mask_full.png", "the input --mask")),
    Case("edit-out-exists", lambda p, o: _edit(p, o), ("x.json", "--overwrite"), existing=("x.json",)),
    Case("edit-out-parent-is-file", lambda p, o: _edit(p, o, "--out", str(p.file / "x.png")),
         ("file.txt", "is a file, not a folder")),
    Case("edit-out-unwritable", lambda p, o: _edit(p, o, "--out", "/proc/lococourse/x.png"), ("/proc", "not writable")),
    # ---- edit: models
    Case("edit-model-empty", lambda p, o: _edit(p, o, model=" "), ("--model ' '", "is empty", "faces16")),
    Case("edit-model-unknown", lambda p, o: _edit(p, o, model="nope"), ("'nope'", "registered models", "faces16")),
    Case("edit-model-text-to-image", lambda p, o: _edit(p, o, model="sd-2.1-base"), ("sd-2.1-base", "t-edit")),
    Case("edit-model-no-config", lambda p, o: _edit(p, o, model=p.noconfig), ("noconfig", "no diffusers config.json")),
    Case("edit-model-a-file", lambda p, o: _edit(p, o, model=p.file), ("file.txt", "not a model folder")),
    Case("edit-model-says-no-prediction-type", lambda p, o: _edit(p, o, mask="2,2,8,8", model=p.nocard),
         ("nocard", "--prediction-type", "epsilon, v_prediction, sample")),
    Case("edit-prediction-type-contradicts", lambda p, o: _edit(p, o, "--prediction-type", "epsilon"),
         ("'epsilon'", "which says 'sample'")),
    Case("edit-prediction-type-unknown", lambda p, o: _edit(p, o, "--prediction-type", "x0"), ("'x0'", "choose from")),
    Case("edit-model-corrupted-weights", lambda p, o: _edit(p, o, model=p.corrupt), ("corrupt", "sha256")),
    Case("edit-model-pickled-weights", lambda p, o: _edit(p, o, model=p.pickled), ("pickled", "could not load model")),
    # ---- transfer
    Case("transfer-direction-missing", lambda p, o: _transfer(p, o, p.root / "nope.safetensors"),
         ("nope.safetensors", "no direction file")),
    Case("transfer-direction-folder", lambda p, o: _transfer(p, o, p.dir_folder), ("folder.safetensors", "is a folder")),
    Case("transfer-direction-empty-string", lambda p, o: _transfer(p, o, ""), ("--direction ''", ".safetensors")),
    Case("transfer-direction-norm-1000", lambda p, o: _transfer(p, o, p.dir_norm1000), ("norm1000", "‖v‖ = 1000", "unit")),
    Case("transfer-direction-zero", lambda p, o: _transfer(p, o, p.dir_zero), ("zero.safetensors", "‖v‖ = 0")),
    Case("transfer-direction-integer", lambda p, o: _transfer(p, o, p.dir_int), ("int.safetensors", "float32")),
    Case("transfer-direction-nan", lambda p, o: _transfer(p, o, p.dir_nan), ("nan.safetensors", "must be finite")),
    Case("transfer-direction-flipped-bytes", lambda p, o: _transfer(p, o, p.dir_flipped), ("flipped", "sha256")),
    Case("transfer-direction-all-true-mask", lambda p, o: _transfer(p, o, p.dir_alltrue), ("alltrue", "all True")),
    Case("transfer-direction-truncated", lambda p, o: _transfer(p, o, p.dir_truncated),
         ("truncated.safetensors", "not a readable safetensors")),
    Case("transfer-direction-empty-file", lambda p, o: _transfer(p, o, p.dir_empty), ("empty.safetensors", "truncated, empty")),
    Case("transfer-direction-pickle", lambda p, o: _transfer(p, o, p.dir_pickle), ("pickle.safetensors", "never read")),
    Case("transfer-direction-missing-keys", lambda p, o: _transfer(p, o, p.dir_nokeys), ("nokeys", "lacks ['t', 'r']")),
    Case("transfer-direction-bad-t", lambda p, o: _transfer(p, o, p.dir_badt), ("t = 2.0", "(0, 1]")),
    Case("transfer-direction-no-t", lambda p, o: _transfer(p, o, p.dir_unknown_t), ("nan_t", "pass --t")),
    Case("transfer-model-moved", lambda p, o: _transfer(p, o, p.dir_moved), ("'gone'", "pass --model")),
    Case("transfer-other-model", lambda p, o: _transfer(p, o, p.good, "--model", str(p.plain)),
         ("found on model 'faces'", "not 'plain'")),
    Case("transfer-other-size", lambda p, o: _transfer(p, o, p.good, "--model", str(p.small)), ("(3, 16, 16)", "(3, 8, 8)")),
    Case("transfer-strength-inf", lambda p, o: _transfer(p, o, p.good, "--strength", "inf"), ("--strength inf", "finite")),
    Case("transfer-t-0", lambda p, o: _transfer(p, o, p.good, "--t", "0"), ("--t 0", "(0, 1]")),
    Case("transfer-out-is-image", lambda p, o: _transfer(p, o, p.good, "--out", str(p.face), src=("--image", str(p.face))),
         ("face.png", "never overwrite an input")),
    Case("transfer-image-wrong-size", lambda p, o: _transfer(p, o, p.good, src=("--image", str(p.face20))),
         ("20×20", "16×16")),
    Case("transfer-out-exists", lambda p, o: _transfer(p, o, p.good), ("t.png", "already exists"), existing=("t.png",)),
    # ---- t-edit
    Case("t-edit-model-unknown", lambda p, o: _tedit(p, o, model="tiny-xl"), ("'tiny-xl'", "tiny-sd", "sd-2.1-base")),
    Case("t-edit-model-pixel", lambda p, o: _tedit(p, o, model="faces16"), ("'faces16'", "tiny-lcm")),
    Case("t-edit-device-cuda", lambda p, o: _tedit(p, o, "--device", "cuda"), ("--device cuda", "use device 'cpu'"),
         needs_no_cuda=True),
    Case("t-edit-device-unknown", lambda p, o: _tedit(p, o, "--device", "gpu"), ("'gpu'", "'cpu' or 'cuda'")),
    Case("t-edit-fp16-on-cpu", lambda p, o: _tedit(p, o, "--dtype", "float16"), ("float16", "CUDA only")),
    Case("t-edit-mask-not-rectangle", lambda p, o: _tedit(p, o, mask="eyes"), ("'eyes'", "x0,y0,x1,y1", "16×16")),
    Case("t-edit-mask-all-true", lambda p, o: _tedit(p, o, mask="0,0,16,16"), ("'0,0,16,16'", "all True")),
    Case("t-edit-mask-outside", lambda p, o: _tedit(p, o, mask="4,4,40,40"), ("40", "x1 ≤ W = 16")),
    Case("t-edit-prompt-empty", lambda p, o: _tedit(p, o, "--prompt", " "), ("--prompt ' '", "text prompt")),
    Case("t-edit-strength-nan", lambda p, o: _tedit(p, o, "--strength", "nan"), ("--strength nan", "finite")),
    Case("t-edit-t-1.5", lambda p, o: _tedit(p, o, "--t", "1.5"), ("--t 1.5", "(0, 1]")),
    Case("t-edit-r-null-d", lambda p, o: _tedit(p, o, "--r-null", "256"), ("--r-null 256", "d = 256")),
    Case("t-edit-num-steps-0", lambda p, o: _tedit(p, o, "--num-steps", "0"), ("--num-steps 0", "1 … 1000")),
    Case("t-edit-pool-not-divisor", lambda p, o: _tedit(p, o, "--jacobian-pool", "3"), ("--jacobian-pool 3", "divisor of 16")),
    Case("t-edit-guidance-nan", lambda p, o: _tedit(p, o, "--guidance-scale", "nan"), ("--guidance-scale nan", "finite")),
    Case("t-edit-seed-65-bits", lambda p, o: _tedit(p, o, "--seed", BIG_SEED), (BIG_SEED, "2⁶⁴ − 1")),
    Case("t-edit-max-iter-0", lambda p, o: _tedit(p, o, "--max-iter", "0"), ("--max-iter 0", "1 … 100000")),
    Case("t-edit-out-exists", lambda p, o: _tedit(p, o), ("e_source.png", "already exists"), existing=("e_source.png",)),
    # ---- rank-curve
    Case("rank-curve-ts-zero", lambda p, o: _rank(p, o, "--ts", "0,0.5"), ("t = 0 ", "(0, 1]")),
    Case("rank-curve-ts-empty", lambda p, o: _rank(p, o, "--ts", ""), ("--ts ''", "comma-separated numbers")),
    Case("rank-curve-n-0", lambda p, o: _rank(p, o, "--n", "0"), ("--n 0", "1 … 64")),
    Case("rank-curve-model-unknown", lambda p, o: _rank(p, o, model="nope"), ("'nope'", "faces16")),
    Case("rank-curve-lambdas-nan", lambda p, o: _rank(p, o, "--lambdas", "nan,10"), ("nan", "finite number")),
    Case("rank-curve-lambdas-huge", lambda p, o: _rank(p, o, "--lambdas", "0,1e30"), ("1e+30", "|λ| ≤ 10000")),
    Case("rank-curve-linearity-t", lambda p, o: _rank(p, o, "--linearity-t", "2"), ("--linearity-t 2", "(0, 1]")),
    Case("rank-curve-too-large-for-dense", lambda p, o: _rank(p, o, model="ddpm-celebahq-256"),
         ("d = 196608", "course model")),
    Case("rank-curve-out-exists", lambda p, o: _rank(p, o), ("rc.png", "already exists"), existing=("rc.png",)),
    # ---- verify-theory, models, doctor, the command itself
    Case("verify-theory-mc-samples", lambda p, o: ["verify-theory", "--mc-samples", "10"], ("--mc-samples 10", "at least 1600")),
    Case("verify-theory-seed", lambda p, o: ["verify-theory", "--seed", BIG_SEED], (BIG_SEED, "2⁶⁴ − 1")),
    Case("verify-theory-mc-text", lambda p, o: ["verify-theory", "--mc-samples", "many"], ("'many'", "whole number")),
    Case("models-unknown-flag", lambda p, o: ["models", "--colour"], ("--colour", "unrecognized arguments")),
    Case("doctor-unknown-flag", lambda p, o: ["doctor", "--fix"], ("--fix", "unrecognized arguments")),
    Case("unknown-command", lambda p, o: ["frobnicate"], ("'frobnicate'", "choose from")),
]
