"""Per-image autosave sidecars: ``<image folder>/.isegformer/<image name>.isegformer.npz`` (the file
format: :mod:`.image_sidecar`).

The history of clicks of the current object is restored on reopen so annotation can go on.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from isegformer_app.state.click_session import ClickSession
from isegformer_app.state.disk_version import SidecarVersion, stamp_of
from isegformer_app.state.document import AnnotatedObject, Document
from isegformer_app.state.image_sidecar import (  # noqa: F401  (the file format, re-exported)
    FORMAT_VERSION,
    SIDECAR_SUFFIX,
    ImageSnapshot,
    SidecarContents,
    _fingerprints,
    object_fingerprint,
    read_sidecar,
    write_snapshot,
)
from isegformer_app.state.imageio import LoadedImage
from isegformer_app.state.labels import as_color
from isegformer_app.state.sidecar_codec import (  # noqa: F401  (SidecarError, SidecarTooNew re-exported)
    SidecarError,
    SidecarMismatch,
    SidecarTooNew,
    clicks_from_json,
    load_session,
)
from isegformer_app.state.sidecar_location import SIDECAR_DIRNAME  # noqa: F401  (re-exported)
from isegformer_app.state.snapshot import SaveOutcome
from model.threshold import checked_threshold


def sidecar_path(image_path: Path, sidecar_dir: Path | None = None) -> Path:
    folder = sidecar_dir if sidecar_dir is not None else image_path.parent / SIDECAR_DIRNAME
    return folder / f"{image_path.name}{SIDECAR_SUFFIX}"


STALE_TEMP_SECONDS = 600  # temp files of a save older than this were left by a killed process
# the temp files of our writes are ".<target>.<random>.tmp<suffixes>"; these are our targets' name endings
OWN_TEMP_MARKERS = (SIDECAR_SUFFIX + ".", ".isegformer-volume.npz.", "labels.json.")


def remove_stale_temp_files(folder: Path, now: float | None = None) -> int:
    """Delete the temp files that killed autosaves left in a sidecar folder; returns how many.

    Only our own (temp files of autosaves and label lists, plain files) and never through a symbolic link:
    a ``.isegformer`` that links elsewhere is someone else's folder, whose files we did not write.
    """
    if folder.is_symlink() or not folder.is_dir():
        return 0
    now = time.time() if now is None else now
    removed = 0
    for tmp in folder.glob(".*.tmp*"):
        if not any(marker in tmp.name for marker in OWN_TEMP_MARKERS):
            continue
        try:
            if tmp.is_symlink() or not tmp.is_file():
                continue
            if now - tmp.stat().st_mtime > STALE_TEMP_SECONDS:
                tmp.unlink()
                removed += 1
        except OSError:
            continue
    return removed


def save_document(doc: Document, path: Path) -> SaveOutcome:
    """Write ``doc`` to the sidecar ``path`` atomically (merging another instance's save, see
    :func:`~isegformer_app.state.image_sidecar.write_snapshot`) and mark it saved."""
    snapshot = doc.snapshot()
    outcome = snapshot.write(path)
    doc.saved(snapshot, outcome)
    return outcome


def check_sidecar_fits(meta: dict, image: LoadedImage, name: str) -> None:
    """Raise :class:`SidecarMismatch` unless the autosave ``meta`` (file ``name``) was made for ``image``:
    the same working size and (for autosaves that record it) the same pixels. Opening and export both ask."""
    if list(meta.get("working_size", ())) != list(image.working_size):
        raise SidecarMismatch(f"Autosave {name} was made for a {meta.get('working_size')} image, "
                           f"this one is {list(image.working_size)}.")  # fmt: skip
    saved_digest = meta.get("image_sha256")  # absent in sidecars of earlier versions
    if saved_digest is not None and saved_digest != image.digest:  # not another photo of that size
        raise SidecarMismatch(f"Autosave {name} was made for a different image with the same name and size.")


def restore_document(doc: Document, path: Path) -> bool:
    """Load the sidecar into a fresh ``doc``; False if none exists. Raises :class:`SidecarError` (and
    then leaves ``doc`` as it was: everything is read and checked before anything is assigned)."""
    if not path.is_file():
        return False
    stamp = stamp_of(path)  # taken first: a save by someone else while this one reads is merged later
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
        threshold = checked_threshold(meta.get("threshold", doc.threshold))
        no_objects = bool(meta.get("no_objects", False))
        current = ClickSession(doc.shape)
        load_session(current, clicks_from_json(meta["clicks"]), data.arrays)
    except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as exc:
        raise SidecarError(f"Autosave file {path.name} is unreadable ({exc}).") from exc
    doc.objects, doc.next_uid, doc.threshold, doc.current = objects, next_uid, threshold, current
    doc.no_objects = no_objects
    doc.on_disk = SidecarVersion(stamp, frozenset(_fingerprints(meta, np.packbits(data.masks, axis=-1))))
    doc.history.clear()
    doc.saved_revision = doc.revision
    return True
