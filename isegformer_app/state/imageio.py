"""Reading images for annotation, writing files atomically.

:func:`load_image` turns any supported file into an HxWx3 uint8 RGB *working* image: EXIF
orientation applied, 16-bit and grayscale converted (each with a notice), and images larger than
``max_side`` pixels downscaled (the scale is kept so exports are written at full size).
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from model.image import stretch_to_uint8
from model.untrusted import MAX_IMAGE_PIXELS, open_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
DEFAULT_MAX_SIDE = 4096
# Annotating 20000x20000 photos is legitimate; PIL's bomb guard would refuse them.
MAX_PIXELS = 1_000_000_000  # PIL's decompression-bomb guard (hard limit at twice this)
MAX_OPEN_PIXELS = MAX_IMAGE_PIXELS  # larger images are refused with a clear message (decoding needs ~4 B/px)
FAST_PNG_PIXELS = 16_000_000  # larger masks are written with light (fast) PNG compression
# 8-bit (and 1-bit) single-channel PIL modes; 16-bit and float ones have their own notice
GRAYSCALE_MODES = {"L": "8-bit", "LA": "8-bit with alpha", "La": "8-bit with alpha", "1": "1-bit"}


class ImageLoadError(Exception):
    """An image could not be read; the message is meant for the user, ``reason`` says why in a few
    words without the file name ("the file is incomplete: it ends before the image does")."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


def decode_error_reason(exc: Exception) -> str:
    """Why a decoder refused a file, in words for people (PIL's messages name internals)."""
    text = str(exc)
    if "truncated" in text:
        return "the file is incomplete: it ends before the image does"
    if "cannot identify image file" in text:
        return "not an image, or an image format this app does not read"
    return f"the image data is damaged: {text.rstrip('.')}"


@dataclass
class LoadedImage:
    """``rgb``: HxWx3 uint8 working image; ``full_size``: (height, width) of the file after EXIF rotation."""

    path: Path
    rgb: np.ndarray
    full_size: tuple[int, int]
    notices: list[str] = field(default_factory=list)
    exif_rotated: bool = False  # the file's EXIF orientation was applied (masks follow the shown image)

    @property
    def working_size(self) -> tuple[int, int]:
        return int(self.rgb.shape[0]), int(self.rgb.shape[1])

    @cached_property
    def digest(self) -> str:
        """SHA-256 of the working pixels (computed once): ties a sidecar to this very image."""
        return hashlib.sha256(np.ascontiguousarray(self.rgb).tobytes()).hexdigest()

    @property
    def downscaled(self) -> bool:
        return self.working_size != self.full_size


def working_size_for(full_size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """(height, width) after shrinking ``full_size`` so its longer side is at most ``max_side``."""
    h, w = full_size
    scale = min(1.0, max_side / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def _to_uint8_rgb(img: Image.Image, notices: list[str], source_mode: str = "") -> np.ndarray:
    """Convert any PIL mode to HxWx3 uint8 (16-bit/float data stretched to its own min..max).

    ``source_mode``: the file's mode when ``img`` was converted on the way (16-bit -> "I").
    """
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        finite = np.isfinite(arr)
        if not finite.all():
            notices.append(f"{int((~finite).sum())} pixels are NaN or infinite: shown as the lowest value")
        lo, hi = (float(arr[finite].min()), float(arr[finite].max())) if finite.any() else (0.0, 0.0)
        kind = {"I;16": "16-bit", "I;16B": "16-bit", "I;16L": "16-bit", "I": "32-bit integer",
                "F": "floating-point"}.get(source_mode or img.mode, img.mode)
        notices.append(f"{kind} grayscale image: intensities {lo:g}..{hi:g} stretched to 8 bits for display")
        return np.repeat(stretch_to_uint8(arr)[:, :, None], 3, axis=2)
    if img.mode in GRAYSCALE_MODES:
        notices.append(f"Grayscale image ({GRAYSCALE_MODES[img.mode]}): shown and segmented as RGB "
                       "with the gray value in all three channels")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, img)
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(arr)


def load_image(path: str | os.PathLike, max_side: int = DEFAULT_MAX_SIDE) -> LoadedImage:
    """Read ``path`` as a working RGB image; raises :class:`ImageLoadError` with a readable message."""
    path = Path(path)
    notices: list[str] = []
    if not path.is_file():
        raise ImageLoadError(f"Cannot open {path}: no such file.", "the file is gone")
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with open_image(path) as img:
            raw_w, raw_h = img.size
            if raw_w * raw_h > MAX_OPEN_PIXELS:
                reason = (f"{raw_w}x{raw_h} is {raw_w * raw_h / 1e6:.0f} megapixels, more than the "
                          f"{MAX_OPEN_PIXELS / 1e6:.0f} this app opens")  # fmt: skip
                message = f"Cannot open {path.name}: {reason}. Tile or downscale it first."
                raise ImageLoadError(message, reason)
            try:
                frames = int(getattr(img, "n_frames", 1) or 1)
            except TypeError as exc:  # PIL: a later page of a multi-page TIFF is damaged (no dimensions)
                raise ValueError(f"a page after the first is damaged ({exc})") from exc
            if frames > 1:
                notices.append(f"{img.format} with {frames} frames/pages: only the first is annotated")
            orientation = img.getexif().get(0x0112, 1)
            if orientation not in range(1, 9):
                notices.append(f"Invalid EXIF orientation {orientation!r} ignored")
                orientation = 1
            full_h, full_w = (raw_w, raw_h) if orientation in (5, 6, 7, 8) else (raw_h, raw_w)
            work_h, work_w = working_size_for((full_h, full_w), max_side)
            if (work_h, work_w) != (full_h, full_w) and img.format == "JPEG":
                raw_target = (work_h, work_w) if orientation in (5, 6, 7, 8) else (work_w, work_h)
                img.draft("RGB", raw_target)  # decode at a reduced scale: cheap for huge JPEGs
            transposed = ImageOps.exif_transpose(img)
            if orientation != 1:
                notices.append("EXIF orientation applied")
            img = transposed if transposed is not None else img
            source_mode = img.mode
            if img.mode.startswith("I;16"):
                img = img.convert("I")
            if img.size != (work_w, work_h):
                img = img.resize((work_w, work_h), Image.Resampling.BILINEAR)
            if (work_h, work_w) != (full_h, full_w):
                notices.append(
                    f"Large image {full_w}x{full_h}: shown and segmented at {work_w}x{work_h}; "
                    "exports are written at full size"
                )
            rgb = _to_uint8_rgb(img, notices, source_mode)
    except Image.DecompressionBombError as exc:
        reason = "the image is too large"
        raise ImageLoadError(f"Cannot open {path.name}: {reason}.", reason) from exc
    except (OSError, ValueError, SyntaxError) as exc:
        reason = decode_error_reason(exc)
        raise ImageLoadError(f"Cannot read {path.name}: {reason}.", reason) from exc
    return LoadedImage(path=path, rgb=rgb, full_size=(full_h, full_w), notices=notices,
                       exif_rotated=orientation != 1)  # fmt: skip


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def png_bytes(array: np.ndarray, palette: np.ndarray | None = None) -> bytes:
    """Encode a HxW uint8/uint16 (or HxWx3 uint8) array as PNG; ``palette`` (Kx3 uint8) makes a 'P' image."""
    if array.dtype == np.uint16:
        if array.ndim != 2:
            raise ValueError("uint16 PNGs must be single-channel")
        img = Image.fromarray(array)
    elif array.dtype == np.bool_:
        img = Image.fromarray(array.astype(np.uint8) * 255)
    else:
        img = Image.fromarray(array.astype(np.uint8, copy=False))
    if palette is not None:
        img = img.convert("L") if img.mode != "L" else img
        img = img.copy()
        img = Image.frombytes("P", img.size, img.tobytes())
        flat = np.zeros((256, 3), np.uint8)
        flat[: len(palette)] = palette[:256]
        img.putpalette(flat.reshape(-1).tolist())
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1 if array.size > FAST_PNG_PIXELS else 6)
    return buf.getvalue()


def read_png(path: str | os.PathLike) -> np.ndarray:
    """Read a PNG written by :func:`png_bytes` back as its raw values (palette indices, not colours)."""
    with open_image(path, ("PNG",)) as img:
        if img.mode == "P":
            return np.asarray(img, dtype=np.uint8).copy()
        if img.mode.startswith("I;16") or img.mode == "I":
            return np.asarray(img).astype(np.uint16)
        return np.asarray(img).copy()
