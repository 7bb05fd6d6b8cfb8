"""Decode the image formats cameras, phones, scanners and the web write into RGB, and the
competition's square padding and resize, without ever allocating more than the file needs."""

import math
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# Pillow raises these for truncated, corrupt or unrecognised files.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
# The only decoders Pillow may pick (JPEG includes MPO, the multi-picture JPEGs many phones
# write). Anything else (PSD, EPS through Ghostscript, ...) is refused before a decoder sees it.
FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP", "PPM")
# Above this an image is refused from its header, before decoding: 120 MP covers 108 MP phone
# photos; a decoded 120 MP image is 360 MB per worker.
MAX_PIXELS = 120_000_000
Image.init()  # register every plugin, so that `formats` can name them (Pillow loads them lazily)
Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow warns above it (errors above 2x): both become TooLarge


class TooLarge(ValueError):
    """The image has more pixels than MAX_PIXELS; the message names its size and the fix."""


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


def load_rgb(path: Path, size: int | None = None) -> Image.Image:
    """Open, fully decode and orient an image; returns RGB.

    Args:
        size: the side it will be resized to; a JPEG at least twice as large is decoded at a
            reduced scale (Pillow's `draft`, the DCT's own downscaling) that still covers it.

    Raises:
        TooLarge: more than MAX_PIXELS pixels (read from the header; nothing is decoded).
        OSError, SyntaxError, ValueError: the file is unreadable, truncated, not an image or
            not one of FORMATS (see DECODE_ERRORS).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path, formats=FORMATS)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise TooLarge(
            f"too large to decode (Pillow: {e}); the limit is {Image.MAX_IMAGE_PIXELS:,} pixels "
            "(tinycls.images.MAX_PIXELS). Downscale it, or delete it"
        ) from None
    with img:
        w, h = img.size
        if size is not None and img.format in ("JPEG", "MPO") and max(w, h) >= 2 * size:
            scale = size / max(w, h)
            img.draft(img.mode, (math.ceil(w * scale), math.ceil(h * scale)))
        img.load()  # decode now so truncation is caught here, not later in training
        img = ImageOps.exif_transpose(img)
        return to_rgb(img)


def square_pad_resize(img: Image.Image, size: int) -> np.ndarray:
    """Resize so the long side is `size` (bilinear, antialiased), then pad to a centred
    size x size square with black. The same picture as padding first and resizing the square,
    without allocating a square of the long side (a 30000 x 300 strip would need 2.7 GB).

    Returns:
        uint8 array (size, size, 3).
    """
    w, h = img.size
    side = max(w, h)
    nw, nh = max(1, round(w * size / side)), max(1, round(h * size / side))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.Resampling.BILINEAR)
    if (nw, nh) != (size, size):
        square = Image.new("RGB", (size, size))
        square.paste(img, ((size - nw) // 2, (size - nh) // 2))
        img = square
    return np.asarray(img, dtype=np.uint8)
