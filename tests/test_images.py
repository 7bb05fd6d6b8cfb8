import io

import numpy as np
import pytest
from PIL import Image

from tinycls.images import load_rgb, square_pad_resize, to_rgb


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "1", "I;16", "I", "F"])
def test_every_mode_becomes_rgb(mode):
    img = Image.new(mode, (5, 3))
    out = to_rgb(img)
    assert out.mode == "RGB" and out.size == (5, 3)


def test_16_bit_is_scaled_not_clipped():
    img = Image.fromarray(np.full((2, 2), 65535, dtype=np.uint16))
    assert np.asarray(to_rgb(img)).min() == 255
    half = Image.fromarray(np.full((2, 2), 32768, dtype=np.uint16))
    assert 127 <= np.asarray(to_rgb(half)).max() <= 128


def test_32_bit_and_float_use_the_format_range():
    as_int = Image.fromarray(np.array([[0, 65535], [32768, 256]], dtype=np.int32))
    assert as_int.mode == "I"
    assert np.asarray(to_rgb(as_int))[:, :, 0].tolist() == [[0, 255], [128, 1]]
    as_float = Image.fromarray(np.array([[0.0, 1.0], [0.5, 2.0]], dtype=np.float32))
    assert np.asarray(to_rgb(as_float))[:, :, 0].tolist() == [[0, 255], [128, 255]]


def test_alpha_is_composited_on_black():
    img = Image.new("RGBA", (2, 2), (255, 255, 255, 0))
    assert np.asarray(to_rgb(img)).max() == 0


def test_palette_with_transparency():
    img = Image.new("P", (2, 2), 0)
    img.putpalette([255, 0, 0] + [0, 0, 0] * 255)
    img.info["transparency"] = 0
    assert np.asarray(to_rgb(img)).max() == 0


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif)
    assert load_rgb(path).size == (20, 40)


def test_square_pad_then_resize_keeps_aspect_centered():
    img = Image.new("RGB", (40, 20), (255, 255, 255))
    out = square_pad_resize(img, 8)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert out[0].max() == 0 and out[-1].max() == 0  # padded rows top and bottom
    assert out[4].min() == 255  # the image itself in the middle


def test_truncated_png_raises(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buf, format="PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buf.getvalue()[:60])
    with pytest.raises(OSError):
        load_rgb(path)


def _pad_then_resize(img: Image.Image, size: int) -> np.ndarray:
    """The competition's order, padding at full resolution: the reference."""
    side = max(img.size)
    square = Image.new("RGB", (side, side))
    square.paste(img, ((side - img.size[0]) // 2, (side - img.size[1]) // 2))
    return np.asarray(square.resize((size, size), Image.Resampling.BILINEAR))


def _photo(w: int, h: int) -> Image.Image:
    """Smooth colour gradients and waves, like a photo at thumbnail size, not noise."""
    yy, xx = np.mgrid[0:h, 0:w]
    a = np.stack([xx * 255 / w, yy * 255 / h, 127 + 120 * np.sin((xx + yy) * 6.0 / max(w, h))], -1)
    return Image.fromarray(a.astype(np.uint8))


@pytest.mark.parametrize(("w", "h", "size"), [(28, 28, 32), (64, 64, 32), (32, 32, 32), (120, 80, 32), (90, 160, 48)])
def test_resizing_before_padding_is_the_same_picture(w, h, size):
    img = _photo(w, h)
    ours, ref = square_pad_resize(img, size).astype(int), _pad_then_resize(img, size).astype(int)
    if w == h:  # square images (Fashion-MNIST, the quick start): byte-identical
        assert np.array_equal(ours, ref)
    else:  # the content lands within a pixel of the reference; only its edge rows differ much
        if h > w:
            ours, ref = ours.transpose(1, 0, 2), ref.transpose(1, 0, 2)
        rows_ours, rows_ref = (np.flatnonzero(a.max(axis=(1, 2)) > 0) for a in (ours, ref))
        assert (
            abs(rows_ours[0] - rows_ref[0]) <= 2 and abs(rows_ours[-1] - rows_ref[-1]) <= 2
        )  # the filter blurs the edge
        inner = slice(max(rows_ours[0], rows_ref[0]) + 1, min(rows_ours[-1], rows_ref[-1]))
        assert np.abs(ours[inner] - ref[inner]).mean() < 6.0  # of 255


def test_a_long_strip_never_allocates_its_padded_square(tmp_path, monkeypatch):
    path = tmp_path / "strip.png"
    Image.new("RGB", (30000, 300), (250, 10, 10)).save(path)  # a few KB on disk
    assert path.stat().st_size < 100_000
    made = []
    real_new = Image.new
    monkeypatch.setattr(Image, "new", lambda mode, size, *a, **k: made.append(size) or real_new(mode, size, *a, **k))
    out = square_pad_resize(load_rgb(path, 32), 32)
    assert made and max(w * h for w, h in made) <= 32 * 32  # only the small square, never 30000 x 30000
    assert out.shape == (32, 32, 3) and np.flatnonzero(out.max(axis=(1, 2))).tolist() == [15]  # 1 px high, centred
    assert out[15, :, 0].min() > 200


def _png_header_only(path, w: int, h: int) -> None:
    """A PNG that claims w x h pixels and holds none: Pillow reads the size from the header."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [11_000, 50_000])  # over the limit (Pillow's warning), over 2x (its error)
def test_too_many_pixels_is_refused_from_the_header(tmp_path, side):
    from tinycls.images import MAX_PIXELS, TooLarge

    path = tmp_path / "bomb.png"
    _png_header_only(path, side, side)
    assert side * side > MAX_PIXELS
    with pytest.raises(TooLarge, match=r"too large to decode .*120,000,000 pixels.*Downscale it, or delete it"):
        load_rgb(path, 32)


def test_only_the_listed_formats_are_decoded(tmp_path):
    from tinycls.data import check_file

    path = tmp_path / "picture.tga"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(path)  # a format Pillow reads, but not listed
    assert Image.open(path).format == "TGA"
    c = check_file(path, 8)
    assert c.image is None and "not a readable image" in c.error and "formats read: JPEG, PNG, BMP" in c.error


def test_a_large_jpeg_is_decoded_at_reduced_scale(tmp_path):
    path = tmp_path / "photo.jpg"
    _photo(1600, 1200).save(path, quality=95)
    small = load_rgb(path, 32)
    assert small.size[0] < 1600 // 4 and min(small.size) >= 32 * 1200 // 1600  # draft, still covering 32 px
    full = Image.open(path).convert("RGB")
    diff = np.abs(square_pad_resize(small, 32).astype(int) - square_pad_resize(full, 32).astype(int))
    assert diff.mean() < 3.0
