"""Direction files: what save writes (atomically, 0644, with a checksum) and everything load refuses, each refusal
naming the file (issue 11: ‖v‖ = 1000, v = 0, integer v, flipped bytes, an all-true mask used to transfer with exit 0)."""
import json
import math
import os
import stat

import pytest
import torch
from safetensors.torch import save_file

from lococourse.editing.direction import META_KEY, SHA_KEY, UNIT_NORM_TOL, Direction, DirectionError


def _mask(h=8, w=8):
    m = torch.zeros(h, w, dtype=torch.bool)
    m[2:5, 3:6] = True
    return m


def _direction(**kw):
    v = torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    base = dict(v=v / v.norm(), t=0.601, mask=_mask(), index=1, r=3, r_null=2, sigma=0.5, model="faces16", seed=4,
                found_at="/somewhere/faces16", extra={"source": "faces seed 3"})
    base.update(kw)
    return Direction(**base)


def _meta(d: Direction) -> dict:
    return d.metadata()


def _write(path, v, mask, meta, sha=None):
    md = {META_KEY: json.dumps(meta)}
    if sha is not None:
        md[SHA_KEY] = sha
    save_file({"v": v, "mask": mask}, str(path), metadata=md)
    return path


def test_save_load_roundtrip_atomic_0644(tmp_path):
    d = _direction()
    p = d.save(tmp_path / "d")
    assert p.name == "d.safetensors" and (tmp_path / "d.json").exists()
    assert sorted(x.name for x in tmp_path.iterdir()) == ["d.json", "d.safetensors"]  # no temporary left behind
    for f in tmp_path.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o644  # readable by others: directions are shared
    back = Direction.load(p)
    assert back.metadata() == d.metadata() and back.found_at == "/somewhere/faces16" and back.model == "faces16"
    assert torch.allclose(back.v.double(), d.v, atol=1e-7) and torch.equal(back.mask, d.mask)
    assert json.loads((tmp_path / "d.json").read_text()) == json.loads(json.dumps(d.metadata()))
    with pytest.raises(FileExistsError, match="d.safetensors exists"):
        d.save(tmp_path / "d", overwrite=False)


@pytest.mark.parametrize("v, match", [
    (lambda v: v * 1000, "‖v‖ = 1000"),
    (lambda v: v * 0, "‖v‖ = 0"),
    (lambda v: v.round().to(torch.int32), "dtype torch.int32"),
    (lambda v: torch.where(torch.arange(64).reshape(1, 8, 8) == 5, torch.tensor(float("nan")), v), "NaN"),
])
def test_bad_v_is_refused_on_load_naming_the_file(tmp_path, v, match):
    d = _direction()
    bad = v(d.v.float())
    p = _write(tmp_path / "bad.safetensors", bad.contiguous(), d.mask.to(torch.uint8), _meta(d))
    with pytest.raises(DirectionError, match=match) as e:
        Direction.load(p)
    assert str(p) in str(e.value)


def test_unit_norm_tolerance_is_measured_against_float64(tmp_path):
    d = _direction()
    ok = d.v.float() * (1 + UNIT_NORM_TOL / 2)
    Direction.load(_write(tmp_path / "ok.safetensors", ok, d.mask.to(torch.uint8), _meta(d)))
    off = d.v.float() * (1 + 2 * UNIT_NORM_TOL)
    with pytest.raises(DirectionError, match="unit vector"):
        Direction.load(_write(tmp_path / "off.safetensors", off, d.mask.to(torch.uint8), _meta(d)))


@pytest.mark.parametrize("mask, match", [(torch.ones(8, 8, dtype=torch.uint8), "all True"),
                                         (torch.zeros(8, 8, dtype=torch.uint8), "empty"),
                                         (torch.full((8, 8), 2, dtype=torch.uint8), "only 0 and 1"),
                                         (torch.ones(8, 8, dtype=torch.float32), "dtype torch.float32")])
def test_bad_mask_is_refused(tmp_path, mask, match):
    d = _direction()
    p = _write(tmp_path / "m.safetensors", d.v.float(), mask, _meta(d))
    with pytest.raises(DirectionError, match=match) as e:
        Direction.load(p)
    assert str(p) in str(e.value)


def test_flipped_bytes_are_caught_by_the_checksum(tmp_path):
    """A one-bit change in v keeps ‖v‖ within tolerance, so only the stored SHA-256 can catch it."""
    import struct

    p = _direction().save(tmp_path / "d")
    raw = bytearray(p.read_bytes())
    (n,) = struct.unpack("<Q", raw[:8])
    start, _ = json.loads(raw[8:8 + n])["v"]["data_offsets"]  # safetensors' layout: 8-byte length, JSON, data
    raw[8 + n + start + 4 * 10] ^= 0x01  # the lowest mantissa bit of v[10] (little-endian float32)
    p.write_bytes(bytes(raw))
    from safetensors.torch import load_file

    v = load_file(str(p))["v"]
    assert abs(float(v.double().norm()) - 1) < 1e-6  # ‖v‖ alone would not notice
    with pytest.raises(DirectionError, match="does not match its sha256") as e:
        Direction.load(p)
    assert str(p) in str(e.value)
    # a flip in the JSON header: no longer a readable file or no longer the same metadata
    p2 = _direction().save(tmp_path / "e")
    raw = bytearray(p2.read_bytes())
    i = raw.index(b'"t\\": 0.601')
    raw[i + 8] = ord("7")  # t = 0.701: valid JSON, valid range, different direction
    p2.write_bytes(bytes(raw))
    with pytest.raises(DirectionError, match="does not match its sha256"):
        Direction.load(p2)


@pytest.mark.parametrize("content, match", [(b"", "not a readable safetensors"),
                                            (b"hello, I am a text file", "not a readable safetensors"),
                                            (None, "not a readable safetensors")])
def test_not_a_safetensors_file(tmp_path, content, match):
    p = tmp_path / "x.safetensors"
    if content is None:
        torch.save({"v": torch.ones(3)}, p)  # a pickle: never unpickled
    else:
        p.write_bytes(content)
    with pytest.raises(DirectionError, match=match) as e:
        Direction.load(p)
    assert str(p) in str(e.value)


def test_truncated_file(tmp_path):
    p = _direction().save(tmp_path / "d")
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(DirectionError, match="not a readable safetensors") as e:
        Direction.load(p)
    assert str(p) in str(e.value)


def test_missing_unknown_and_wrong_metadata(tmp_path):
    d = _direction()
    v, m = d.v.float(), d.mask.to(torch.uint8)
    meta = _meta(d)
    cases = [({k: x for k, x in meta.items() if k != "sigma"}, "lacks \\['sigma'\\]"),
             ({**meta, "colour": "blue"}, "unknown metadata keys \\['colour'\\]"),
             ({**meta, "t": 1.5}, "t = 1.5"),
             ({**meta, "t": "0.6"}, "t = '0.6'"),
             ({**meta, "index": 3}, "index k = 3 but r = 3"),
             ({**meta, "r": -1}, "r = -1"),
             ({**meta, "sigma": float("nan")}, "sigma = nan"),
             ({**meta, "jacobian": "hessian"}, "jacobian = 'hessian'"),
             ({**meta, "shape": [1, 8, 9]}, "metadata says \\[1, 8, 9\\]"),
             ({**meta, "model": 3}, "model = 3")]
    for i, (bad, match) in enumerate(cases):
        p = _write(tmp_path / f"m{i}.safetensors", v, m, bad)
        with pytest.raises(DirectionError, match=match) as e:
            Direction.load(p)
        assert str(p) in str(e.value)
    save_file({"v": v}, str(tmp_path / "nometa.safetensors"))
    with pytest.raises(DirectionError, match="no 'lococourse_direction' metadata"):
        Direction.load(tmp_path / "nometa.safetensors")
    save_file({"v": v, "mask": m, "w": v.clone()}, str(tmp_path / "extra.safetensors"), metadata={META_KEY: json.dumps(meta)})
    with pytest.raises(DirectionError, match="exactly 'mask' and 'v'"):
        Direction.load(tmp_path / "extra.safetensors")
    save_file({"v": v, "mask": m}, str(tmp_path / "notjson.safetensors"), metadata={META_KEY: "{t: 1"})
    with pytest.raises(DirectionError, match="not JSON"):
        Direction.load(tmp_path / "notjson.safetensors")


def test_file_without_checksum_still_loads_when_valid(tmp_path):
    """Directions written before the checksum existed load if everything else is right (and fail otherwise)."""
    d = _direction()
    p = _write(tmp_path / "old.safetensors", d.v.float(), d.mask.to(torch.uint8), _meta(d))
    assert Direction.load(p).metadata() == d.metadata()


def test_nan_t_means_unknown(tmp_path):
    d = _direction(t=float("nan"))
    back = Direction.load(d.save(tmp_path / "d"))
    assert math.isnan(back.t)


def test_save_refuses_a_bad_direction_before_writing(tmp_path):
    for bad in (_direction(v=torch.zeros(1, 8, 8)), _direction(v=torch.full((1, 8, 8), float("inf"))),
                _direction(mask=torch.ones(8, 8, dtype=torch.bool)), _direction(mask=_mask().to(torch.uint8))):
        with pytest.raises(DirectionError):
            bad.save(tmp_path / "d")
    assert os.listdir(tmp_path) == []


def test_folder_and_missing_file(tmp_path):
    (tmp_path / "dir.safetensors").mkdir()
    with pytest.raises(DirectionError, match="is a folder"):
        Direction.load(tmp_path / "dir.safetensors")
    with pytest.raises(FileNotFoundError, match="no direction file"):
        Direction.load(tmp_path / "nope.safetensors")
