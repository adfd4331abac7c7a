"""The one sidecar file format of both autosaves (images and volumes): a compressed ``.npz``.

A sidecar holds ``meta`` (UTF-8 JSON stored as a uint8 array; it always carries ``version``) and named
arrays; it is read with ``allow_pickle=False`` and written atomically (temp file, fsync, rename). A
click session (:class:`~isegformer_app.state.click_session.ClickSession`) is stored the same way for
both: its clicks in ``meta`` and ``<prefix>brush`` / ``<prefix>prob`` / ``<prefix>init`` arrays.
"""

from __future__ import annotations

import io
import json
import lzma
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from isegformer_app.state.click_session import ClickSession
from model.atomic_io import atomic_write_bytes
from model.clicks import Click
from model.untrusted import parse_json

MAX_SIDECAR_BYTES = 4 * 2**30  # uncompressed; a 512³ uint16 label volume with sessions is well below


class SidecarError(Exception):
    """An autosave file is unreadable, from a newer version, or belongs to a different image/volume."""


class SidecarTooNew(SidecarError):
    """An autosave written by a newer isegformer: this version cannot read it and must not overwrite it."""


class SidecarMismatch(SidecarError):
    """A readable autosave made for another image (another working size or other pixels)."""


class SidecarChanged(SidecarError):
    """An autosave that another isegformer saved since this one read it, and that cannot be merged."""


def set_aside(path: Path, error: SidecarError) -> str:
    """Move an autosave that cannot be used out of the way (``<name>.broken``, ``<name>.newer-version``
    for one from a newer isegformer, ``<name>.other-instance`` for one saved meanwhile by another
    isegformer; ``-2``, ``-3`` … when that name is taken), so that the next autosave does not overwrite
    it; returns the notice ("" when it cannot be moved: a read-only folder, whose autosaves then go to the
    per-user folder)."""
    suffix = {SidecarTooNew: ".newer-version", SidecarChanged: ".other-instance"}.get(type(error), ".broken")
    target = path.with_name(path.name + suffix)
    number = 2
    while target.exists():
        target = path.with_name(f"{path.name}{suffix}-{number}")
        number += 1
    try:
        os.replace(path, target)
    except OSError:
        return ""
    return f"It was kept as {target.name}."


def check_declared_size(path: Path) -> None:
    """Raise ValueError when the arrays of ``path`` (a zip) would inflate to more than
    :data:`MAX_SIDECAR_BYTES` (a zip bomb), before anything is inflated; BadZipFile for a non-zip."""
    with zipfile.ZipFile(path) as archive:
        declared = sum(info.file_size for info in archive.infolist())
    if declared > MAX_SIDECAR_BYTES:
        raise ValueError(f"{declared / 2**30:.1f} GiB of arrays declared")


# what reading a hostile or torn file can raise, besides SidecarError itself (RuntimeError: zipfile's
# "encrypted" and NotImplementedError "unsupported compression method / zip version")
READ_ERRORS = (OSError, ValueError, KeyError, TypeError, OverflowError, EOFError, zipfile.BadZipFile,
               MemoryError, zlib.error, lzma.LZMAError, RuntimeError)  # fmt: skip


def encode_sidecar(meta: dict, arrays: dict[str, np.ndarray]) -> bytes:
    """The bytes of a sidecar file (``meta`` must hold ``version``)."""
    if "version" not in meta:
        raise ValueError("sidecar meta needs a 'version'")
    buf = io.BytesIO()
    np.savez_compressed(buf, meta=np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8), **arrays)
    return buf.getvalue()


def write_sidecar(path: Path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """Encode and write atomically; safe off the GUI thread (the arrays must not change meanwhile)."""
    atomic_write_bytes(Path(path), encode_sidecar(meta, arrays))


def read_sidecar_file(path: Path, newest_version: int) -> tuple[dict, dict[str, np.ndarray]]:
    """``(meta, arrays)`` of a sidecar; raises :class:`SidecarError` for an unreadable file, and
    :class:`SidecarTooNew` for one written by a newer isegformer (``version`` > ``newest_version``)."""
    path = Path(path)
    try:
        check_declared_size(path)
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        meta = parse_json(bytes(arrays.pop("meta")).decode("utf-8"))
        version = int(meta["version"])
    except READ_ERRORS as exc:
        raise SidecarError(f"Autosave file {path.name} is unreadable ({exc}).") from exc
    if version > newest_version:
        raise SidecarTooNew(f"Autosave file {path.name} was written by a newer isegformer (format {version}) "
                            "and cannot be read by this one.")  # fmt: skip
    return meta, arrays


def clicks_to_json(clicks: list[Click]) -> list[list]:
    return [[c.y, c.x, bool(c.is_positive)] for c in clicks]


def clicks_from_json(rows: list[list]) -> list[Click]:
    """Clicks saved by :func:`clicks_to_json`; ValueError / TypeError for rows that are not (y, x, sign)."""
    clicks = [Click(float(y), float(x), bool(p), i) for i, (y, x, p) in enumerate(rows)]
    if not all(np.isfinite(c.y) and np.isfinite(c.x) for c in clicks):
        raise ValueError("a click position is not a finite number")
    return clicks


def session_arrays(session: ClickSession, prefix: str = "") -> dict[str, np.ndarray]:
    """Copies of a session's arrays, keyed ``<prefix>brush`` / ``prob`` / ``init``."""
    out = {f"{prefix}brush": session.brush.copy()}
    if session.prob is not None:
        out[f"{prefix}prob"] = session.prob.astype(np.float32)  # a copy
    if session.init_prev is not None:
        out[f"{prefix}init"] = session.init_prev.astype(np.float32)
    return out


def load_session(session: ClickSession, clicks: list[Click], arrays: dict[str, np.ndarray],
                 prefix: str = "") -> None:  # fmt: skip
    """Put a session saved by :func:`session_arrays` back; raises :class:`SidecarError` on a size mismatch."""
    brush = arrays.get(f"{prefix}brush")
    prob = arrays.get(f"{prefix}prob")
    init = arrays.get(f"{prefix}init")
    for name, array in (("brush", brush), ("prob", prob), ("init", init)):
        if array is not None and array.shape != session.shape:
            raise SidecarError(f"The autosave's {name} array {array.shape} does not match {session.shape}.")
    if brush is None:
        raise SidecarError("The autosave has no brush array.")
    session.load(clicks, brush.astype(np.int8), None if prob is None else prob.astype(np.float32),
                 None if init is None else init.astype(np.float32))  # fmt: skip
