"""Decode any image Pillow reads into RGB, and the competition's square-pad-then-resize."""

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# Pillow raises these for truncated, corrupt or unrecognised files.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB.

    Grayscale, palette and CMYK go through Pillow's converters; alpha is composited on black
    (the padding colour). Deeper images are scaled by their format's range, never by their own
    maximum: 16-bit ('I;16*', and 'I', which is how Pillow opens 16-bit PNGs) by 65535,
    float ('F') as 0..1.
    """
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        top = 1.0 if img.mode == "F" else 65535.0
        a = np.asarray(img, dtype=np.float64) / top * 255.0
        img = Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8))
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB") if img.mode != "RGB" else img


def load_rgb(path: Path) -> Image.Image:
    """Open, fully decode and orient an image; returns RGB.

    Raises:
        OSError, SyntaxError, ValueError: the file is unreadable, truncated or not an image
            (see DECODE_ERRORS).
    """
    with Image.open(path) as img:
        img.load()  # decode now so truncation is caught here, not later in training
        img = ImageOps.exif_transpose(img)
        return to_rgb(img)


def square_pad_resize(img: Image.Image, size: int) -> np.ndarray:
    """Pad to a centred square with black, then resize to size x size (bilinear, antialiased).

    Returns:
        uint8 array (size, size, 3).
    """
    w, h = img.size
    side = max(w, h)
    if (w, h) != (side, side):
        square = Image.new("RGB", (side, side))
        square.paste(img, ((side - w) // 2, (side - h) // 2))
        img = square
    if side != size:
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8)
