"""lococourse.data.images: every pixel mode converted with a note or refused with the reason; nothing clipped.

The oracle for each conversion is the array the test wrote (numpy, or raw PNG bytes built here with zlib/struct)."""
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from lococourse.data.images import MAX_PIXELS, ImageError, atomic_write, read_image, write_png


def _png(path, w, h, bitdepth, colortype, rows: bytes):
    """A PNG written byte by byte (IHDR, one IDAT, IEND), for depths Pillow will not write itself."""
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, bitdepth, colortype, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return path


def test_8bit_rgb_is_read_exactly(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "a.png")
    arr, notes = read_image(tmp_path / "a.png")
    assert arr.shape == (5, 7, 3) and notes == []
    np.testing.assert_allclose(arr, a / 255.0, rtol=0, atol=1e-15)


def test_16bit_grey_is_scaled_not_clipped(tmp_path):
    """The issue: a 16-bit PNG read as 8 bits was clipped to near-white.  Its values are scaled by 65535."""
    a = (np.arange(64).reshape(8, 8) * 997).astype(np.uint16)  # up to 62811: would clip to 255 as 8-bit
    Image.fromarray(a).save(tmp_path / "g16.png")
    arr, notes = read_image(tmp_path / "g16.png", channels=1)
    np.testing.assert_allclose(arr[..., 0], a / 65535.0, rtol=0, atol=1e-12)
    assert arr.max() < 0.96 and any("16-bit" in n for n in notes)
    arr3, notes3 = read_image(tmp_path / "g16.png", channels=3)
    assert arr3.shape == (8, 8, 3) and any("repeated to 3 channels" in n for n in notes3)


def test_16bit_rgb_is_read_at_8_bits_with_a_note(tmp_path):
    v = np.random.default_rng(1).integers(0, 65536, (4, 4, 3)).astype(">u2")
    _png(tmp_path / "rgb16.png", 4, 4, 16, 2, b"".join(b"\x00" + v[i].tobytes() for i in range(4)))
    arr, notes = read_image(tmp_path / "rgb16.png")
    np.testing.assert_allclose(arr, v.astype(float) / 65535.0, atol=1 / 255 + 1e-9)  # 8 bits of a 16-bit value
    assert any("16-bit RGB image read at 8 bits" in n for n in notes)


def test_alpha_opaque_is_dropped_transparent_refused(tmp_path):
    a = np.random.default_rng(2).integers(0, 256, (4, 4, 4), dtype=np.uint8)
    a[..., 3] = 255
    Image.fromarray(a, "RGBA").save(tmp_path / "opaque.png")
    arr, notes = read_image(tmp_path / "opaque.png")
    np.testing.assert_allclose(arr, a[..., :3] / 255.0, atol=1e-15)
    assert "fully opaque alpha channel dropped" in notes
    a[1, 2, 3] = 0
    a[0, 0, 3] = 128
    Image.fromarray(a, "RGBA").save(tmp_path / "holes.png")
    with pytest.raises(ImageError, match="2 transparent pixels") as e:
        read_image(tmp_path / "holes.png")
    assert "holes.png" in str(e.value)
    la = np.stack([a[..., 0], np.full((4, 4), 255, np.uint8)], -1)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    arr, notes = read_image(tmp_path / "la.png", channels=1)
    np.testing.assert_allclose(arr[..., 0], a[..., 0] / 255.0, atol=1e-12)


def test_grey_and_colour_conversions_are_noted(tmp_path):
    a = np.random.default_rng(3).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "c.png")
    grey, notes = read_image(tmp_path / "c.png", channels=1)
    np.testing.assert_allclose(grey[..., 0], (a / 255.0) @ np.array([0.299, 0.587, 0.114]), atol=1e-12)
    assert any("ITU-R 601" in n for n in notes)
    Image.fromarray(a[..., 0]).save(tmp_path / "l.png")
    rgb, notes = read_image(tmp_path / "l.png")
    assert np.array_equal(rgb[..., 0], rgb[..., 2]) and any("repeated" in n for n in notes)


def test_palette_and_1bit(tmp_path):
    a = np.random.default_rng(4).integers(0, 256, (5, 5, 3), dtype=np.uint8)
    p = Image.fromarray(a).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    p.save(tmp_path / "p.png")
    arr, notes = read_image(tmp_path / "p.png")
    np.testing.assert_allclose(arr, np.asarray(p.convert("RGB")) / 255.0, atol=1e-15)
    assert "palette image expanded to RGB" in notes
    b = Image.fromarray(np.eye(4, dtype=bool))
    b.save(tmp_path / "b.png")
    arr, _ = read_image(tmp_path / "b.png", channels=1)
    assert np.array_equal(arr[..., 0], np.eye(4))


@pytest.mark.parametrize("make, match", [
    (lambda p: Image.fromarray(np.ones((4, 4), np.float32)).save(p.with_suffix(".tiff")), "floating-point"),
    (lambda p: Image.fromarray(np.full((4, 4), 70000, np.int32), "I").save(p.with_suffix(".tiff")), "32-bit"),
    (lambda p: Image.new("CMYK", (4, 4)).save(p.with_suffix(".jpg")), "CMYK"),
])
def test_unsupported_modes_are_refused(tmp_path, make, match):
    make(tmp_path / "x")
    f = next(tmp_path.iterdir())
    with pytest.raises(ImageError, match=match) as e:
        read_image(f)
    assert str(f) in str(e.value)


def test_multi_frame_is_refused(tmp_path):
    frames = [Image.new("RGB", (4, 4), c) for c in ("red", "blue")]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(ImageError, match="2 frames"):
        read_image(tmp_path / "a.gif")


def test_pixel_limit_and_decompression_bombs_fail_before_decoding(tmp_path):
    _png(tmp_path / "bomb.png", 100_000, 100_000, 8, 0, b"")  # a header promising 10¹⁰ pixels, no data
    with pytest.raises(ImageError, match="pixels") as e:
        read_image(tmp_path / "bomb.png")
    assert "bomb.png" in str(e.value) and f"{MAX_PIXELS:,}" in str(e.value)
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(ImageError, match="30×20 = 600 pixels, more than the limit of 100"):
        read_image(tmp_path / "big.png", max_pixels=100)


@pytest.mark.parametrize("content, match", [(b"", "empty"), (b"not an image at all", "could not read"),
                                            (None, "could not read")])
def test_broken_files_are_named(tmp_path, content, match):
    f = tmp_path / "x.png"
    if content is None:  # a truncated PNG
        Image.fromarray(np.zeros((16, 16, 3), np.uint8) + 7).save(f)
        f.write_bytes(f.read_bytes()[:60])
    else:
        f.write_bytes(content)
    with pytest.raises(ImageError, match=match) as e:
        read_image(f)
    assert str(f) in str(e.value)


def test_paths_and_arguments(tmp_path):
    with pytest.raises(ImageError, match="is a folder"):
        read_image(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="''"):
        read_image("")
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(ValueError, match="channels must be 1 or 3; got 2"):
        read_image(tmp_path / "a.png", channels=2)
    with pytest.raises(ValueError, match="max_pixels must be a positive integer; got 0"):
        read_image(tmp_path / "a.png", max_pixels=0)


def test_write_png_roundtrip_and_atomic(tmp_path):
    a = np.random.default_rng(5).integers(0, 256, (3, 5, 3), dtype=np.uint8)
    write_png(a, tmp_path / "o.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o.png")), a)
    with pytest.raises(ValueError, match="uint8"):
        write_png(a.astype(np.float32), tmp_path / "f.png")

    def broken(tmp):
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(tmp_path / "o.png", broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png"]  # the old file kept, no temporary left
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o.png")), a)
