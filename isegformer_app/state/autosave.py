"""Per-image autosave sidecars: ``<image folder>/.isegformer/<image name>.isegformer.npz``.

One compressed ``.npz`` per image, written atomically: ``meta`` (JSON as bytes: sizes, objects'
labels/colours/visibility/clicks, the current clicks, threshold), ``masks`` (N x H x W bool, packed),
``prob`` (current object's probability, float32, absent if none) and ``brush`` (int8 corrections).
The history of clicks of the current object is restored on reopen so annotation can go on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from isegformer_app.state.click_session import ClickSession
from isegformer_app.state.document import AnnotatedObject, Document
from isegformer_app.state.imageio import LoadedImage
from isegformer_app.state.labels import as_color
from isegformer_app.state.sidecar_codec import (  # noqa: F401  (SidecarError, SidecarTooNew re-exported)
    SidecarError,
    SidecarTooNew,
    clicks_from_json,
    clicks_to_json,
    load_session,
    read_sidecar_file,
    session_arrays,
    write_sidecar,
)
from isegformer_app.state.sidecar_location import SIDECAR_DIRNAME  # noqa: F401  (re-exported)

SIDECAR_SUFFIX = ".isegformer.npz"
FORMAT_VERSION = 1


def sidecar_path(image_path: Path, sidecar_dir: Path | None = None) -> Path:
    folder = sidecar_dir if sidecar_dir is not None else image_path.parent / SIDECAR_DIRNAME
    return folder / f"{image_path.name}{SIDECAR_SUFFIX}"


STALE_TEMP_SECONDS = 600  # temp files of a save older than this were left by a killed process


def remove_stale_temp_files(folder: Path, now: float | None = None) -> int:
    """Delete temp files (``.<name>.*.tmp``) that killed saves left in a sidecar folder; returns how many."""
    if not folder.is_dir():
        return 0
    now = time.time() if now is None else now
    removed = 0
    for tmp in folder.glob(".*.tmp*"):
        try:
            if now - tmp.stat().st_mtime > STALE_TEMP_SECONDS:
                tmp.unlink()
                removed += 1
        except OSError:
            continue
    return removed


@dataclass
class DocumentSnapshot:
    """What an autosave writes, copied from a document on the GUI thread so that the (slow) compression
    and disk write can run in the background while the user keeps working."""

    meta: dict
    arrays: dict[str, np.ndarray]
    revision: int
    path: Path  # the image it belongs to


def save_document(doc: Document, path: Path) -> None:
    """Write ``doc`` to the sidecar ``path`` atomically and mark it saved."""
    snapshot = snapshot_document(doc)
    write_snapshot(snapshot, path)
    doc.saved_revision = snapshot.revision


def write_snapshot(snapshot: DocumentSnapshot, path: Path) -> None:
    """Compress and write a snapshot atomically (temp file, fsync, rename); safe off the GUI thread."""
    write_sidecar(path, snapshot.meta, snapshot.arrays)


def snapshot_document(doc: Document) -> DocumentSnapshot:
    """A copy of everything :func:`write_snapshot` needs (independent of later edits of ``doc``)."""
    h, w = doc.shape
    meta = {
        "version": FORMAT_VERSION,
        "image": doc.path.name,
        "image_sha256": doc.image.digest,
        "full_size": list(doc.image.full_size),
        "exif_rotated": doc.image.exif_rotated,
        "working_size": [h, w],
        "threshold": doc.threshold,
        "next_uid": doc.next_uid,
        "clicks": clicks_to_json(doc.clicks),
        "objects": [
            {"uid": o.uid, "label": o.label, "color": list(o.color), "visible": o.visible,
             "clicks": clicks_to_json(o.clicks)}
            for o in doc.objects
        ],
    }  # fmt: skip
    arrays = {"masks": np.packbits(np.stack([o.mask for o in doc.objects]) if doc.objects
                                   else np.zeros((0, h, w), bool), axis=-1),
              **session_arrays(doc.current)}  # fmt: skip
    return DocumentSnapshot(meta, arrays, doc.revision, doc.path)


@dataclass
class SidecarContents:
    meta: dict
    masks: np.ndarray  # N x H x W bool (working resolution)
    arrays: dict[str, np.ndarray]  # the current object's session arrays (``brush``, ``prob``)


def read_sidecar(path: Path) -> SidecarContents:
    """Read a sidecar written by :func:`save_document`; raises :class:`SidecarError`."""
    meta, arrays = read_sidecar_file(path, FORMAT_VERSION)
    try:
        h, w = (int(v) for v in meta["working_size"])
        masks = np.unpackbits(arrays.pop("masks"), axis=-1, count=w).astype(bool)
        brush = arrays["brush"]
        consistent = masks.shape == (len(meta["objects"]), h, w) and brush.shape == (h, w)
    except (ValueError, KeyError, TypeError) as exc:
        raise SidecarError(f"Autosave file {path.name} is unreadable ({exc}).") from exc
    if not consistent:
        raise SidecarError(f"Autosave file {path.name} is inconsistent.")
    return SidecarContents(meta, masks, arrays)


def check_sidecar_fits(meta: dict, image: LoadedImage, name: str) -> None:
    """Raise :class:`SidecarError` unless the autosave ``meta`` (file ``name``) was made for ``image``: the
    same working size and (for autosaves that record it) the same pixels. Opening and export both ask."""
    if list(meta.get("working_size", ())) != list(image.working_size):
        raise SidecarError(f"Autosave {name} was made for a {meta.get('working_size')} image, "
                           f"this one is {list(image.working_size)}.")  # fmt: skip
    saved_digest = meta.get("image_sha256")  # absent in sidecars of earlier versions
    if saved_digest is not None and saved_digest != image.digest:  # not another photo of that size
        raise SidecarError(f"Autosave {name} was made for a different image with the same name and size.")


def restore_document(doc: Document, path: Path) -> bool:
    """Load the sidecar into a fresh ``doc``; False if none exists. Raises :class:`SidecarError` (and
    then leaves ``doc`` as it was: everything is read and checked before anything is assigned)."""
    if not path.is_file():
        return False
    data = read_sidecar(path)
    meta = data.meta
    check_sidecar_fits(meta, doc.image, path.name)
    try:
        objects = [
            AnnotatedObject(uid=int(o["uid"]), label=str(o["label"]), color=as_color(o["color"]),
                            mask=mask.copy(), visible=bool(o["visible"]),
                            clicks=clicks_from_json(o["clicks"]))
            for o, mask in zip(meta["objects"], data.masks, strict=True)
        ]  # fmt: skip
        next_uid = max([int(meta["next_uid"]), *(o.uid + 1 for o in objects)])
        threshold = float(meta.get("threshold", doc.threshold))
        current = ClickSession(doc.shape)
        load_session(current, clicks_from_json(meta["clicks"]), data.arrays)
    except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as exc:
        raise SidecarError(f"Autosave file {path.name} is unreadable ({exc}).") from exc
    doc.objects, doc.next_uid, doc.threshold, doc.current = objects, next_uid, threshold, current
    doc.history.clear()
    doc.saved_revision = doc.revision
    return True
