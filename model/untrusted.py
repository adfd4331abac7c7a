"""Reading files we did not write: the one place for the checks every such reader needs.

* Paths named inside a file (an export's ``labels.json``, a split list) stay in their folder: a file that
  names ``"/etc/hostname"`` or ``"../../secret"`` must not make us read (or copy into an export) a file from
  anywhere (:func:`path_inside`).
* JSON may be hostile: 200,000 nested brackets (RecursionError), ``Infinity`` or ``1e400`` (infinite
  numbers that overflow later): :func:`parse_json` fails with ValueError for all of them.
* Images may be decompression bombs (a 1.5 kB PNG declaring 50000²): :func:`check_image_size` reads the
  size from the header and refuses more than :data:`MAX_IMAGE_PIXELS` before anything is decoded;
  :func:`imread_checked` is ``cv2.imread`` behind that check (the app's photo reader uses the same limit).
* Pillow picks a decoder by a file's content, not its name, and one of them runs a program: a
  ``photo.png`` that holds PostScript goes to Ghostscript, an interpreter of a programming language.
  :func:`open_image` decodes only :data:`PIL_IMAGE_FORMATS` (decoders written in C or Python that run
  nothing).

It lives in ``model`` (the lowest layer) so that the app and ``training`` share it.
"""

from __future__ import annotations

import io
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_IMAGE_PIXELS = 300_000_000  # larger images are refused (decoding takes ~3-4 bytes a pixel)


# The formats read through Pillow (JPEG includes the multi-picture JPEG of many cameras, which Pillow's JPEG
# reader opens as MPO); none of their decoders starts a program.
PIL_IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF")


def open_image(
    source: str | os.PathLike | io.BytesIO, formats: tuple[str, ...] = PIL_IMAGE_FORMATS
) -> Image.Image:
    """``PIL.Image.open`` of a file we did not write, limited to ``formats`` (a subset of
    :data:`PIL_IMAGE_FORMATS`): anything else, EPS or PDF renamed ``.png`` included, raises
    ``PIL.UnidentifiedImageError`` (an ``OSError``) before any decoder is chosen."""
    return Image.open(source, formats=formats)


class ImageTooLarge(ValueError):
    """An image whose header declares more pixels than :data:`MAX_IMAGE_PIXELS`."""


class PathOutsideFolder(ValueError):
    """A name read from a file points outside the folder it must stay in."""


def path_inside(folder: str | os.PathLike, name: str) -> Path:
    """``folder / name`` for a relative ``name`` read from a file; :class:`PathOutsideFolder` when it is
    absolute or leads out of ``folder`` (``..``, or a symbolic link inside pointing out)."""
    folder = Path(folder)
    if not isinstance(name, str) or not name or Path(name).is_absolute() or Path(name).drive:
        raise PathOutsideFolder(f"{name!r} is absolute: it leads outside {folder}")
    candidate = folder / name
    if not candidate.resolve().is_relative_to(folder.resolve()):
        raise PathOutsideFolder(f"{name!r} leads outside {folder}")
    return candidate


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number")


def parse_json(text: str | bytes) -> Any:
    """``json.loads`` for untrusted text: ValueError (never RecursionError or an infinite float) for nesting
    too deep, ``NaN`` / ``Infinity`` and numbers beyond the float range."""
    try:
        return json.loads(text, parse_float=_finite, parse_constant=_no_constant)
    except RecursionError as exc:
        raise ValueError("the JSON is nested too deeply") from exc


def check_image_size(source: str | os.PathLike | bytes,
                     limit: int = MAX_IMAGE_PIXELS) -> tuple[int, int] | None:  # fmt: skip
    """``(width, height)`` from the header of an image file (or its bytes) (None for a format PIL does not
    know: the decoder's own limit then applies); :class:`ImageTooLarge` above ``limit`` pixels. Nothing is
    decoded."""
    name = "image data" if isinstance(source, bytes) else Path(source).name
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
                width, height = img.size
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"{name}: image too large ({exc})") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None
    if width * height > limit:
        raise ImageTooLarge(f"{name}: {width}x{height} is {width * height / 1e6:.0f} megapixels, "
                            f"more than the {limit / 1e6:.0f} that are read")  # fmt: skip
    return width, height


def imread_checked(path: str | os.PathLike, flags: int = cv2.IMREAD_COLOR) -> np.ndarray | None:
    """``cv2.imread`` (None for a missing or unreadable file) after :func:`check_image_size`."""
    if not os.path.isfile(path):
        return None
    check_image_size(path)
    return cv2.imread(str(path), flags)
