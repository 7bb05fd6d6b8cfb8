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
