"""Per-image autosave sidecars: ``<image folder>/.isegformer/<image name>.isegformer.npz``.

One compressed ``.npz`` per image, written atomically: ``meta`` (JSON as bytes: sizes, objects'
labels/colours/visibility/clicks, the current clicks, threshold), ``masks`` (N x H x W bool, packed),
``prob`` (current object's probability, float32, absent if none) and ``brush`` (int8 corrections).
The history of clicks of the current object is restored on reopen so annotation can go on.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from isegformer_app.state.click_session import ClickSession
from isegformer_app.state.disk_version import SidecarVersion, stamp_of, write_merging
from isegformer_app.state.document import AnnotatedObject, Document
from isegformer_app.state.imageio import LoadedImage
from isegformer_app.state.labels import as_color
from isegformer_app.state.sidecar_codec import (  # noqa: F401  (SidecarError, SidecarTooNew re-exported)
    SidecarError,
    SidecarMismatch,
    SidecarTooNew,
    clicks_from_json,
    clicks_to_json,
    encode_sidecar,
    load_session,
    read_sidecar_file,
    session_arrays,
    set_aside,
)
from isegformer_app.state.sidecar_location import SIDECAR_DIRNAME  # noqa: F401  (re-exported)
from model.threshold import checked_threshold

SIDECAR_SUFFIX = ".isegformer.npz"
FORMAT_VERSION = 1


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


@dataclass
class DocumentSnapshot:
    """What an autosave writes, copied from a document on the GUI thread so that the (slow) compression
    and disk write can run in the background while the user keeps working. ``on_disk``: the document's
    :class:`SidecarVersion` (shared, not copied: the write compares with and updates it)."""

    meta: dict
    arrays: dict[str, np.ndarray]
    revision: int
    path: Path  # the image it belongs to
    on_disk: SidecarVersion = field(default_factory=SidecarVersion)


@dataclass
class SaveOutcome:
    """What an autosave write did besides writing: the objects another instance had saved meanwhile that
    were merged into the file, and what to tell the user about it."""

    merged: list[AnnotatedObject] = field(default_factory=list)
    notice: str = ""


def object_fingerprint(label: str, packed_mask: np.ndarray) -> str:
    """Identifies a finished object across instances: its label and its (row-packed) mask."""
    return hashlib.sha1(label.encode("utf-8", "surrogatepass") + packed_mask.tobytes()).hexdigest()


def _fingerprints(meta: dict, packed_masks: np.ndarray) -> list[str]:
    rows = zip(meta["objects"], packed_masks, strict=True)
    return [object_fingerprint(str(o["label"]), m) for o, m in rows]


def save_document(doc: Document, path: Path) -> SaveOutcome:
    """Write ``doc`` to the sidecar ``path`` atomically (merging another instance's save, see
    :func:`write_snapshot`) and mark it saved."""
    snapshot = snapshot_document(doc)
    outcome = write_snapshot(snapshot, path)
    apply_outcome(doc, snapshot, outcome)
    return outcome


def apply_outcome(doc: Document, snapshot: DocumentSnapshot, outcome: SaveOutcome) -> None:
    """After a write (GUI thread): ``doc`` is saved up to the snapshot and gets the objects merged from
    another instance (one undo step; the document is then dirty again)."""
    doc.saved_revision = max(doc.saved_revision, snapshot.revision)
    doc.merge_objects(outcome.merged)


def write_snapshot(snapshot: DocumentSnapshot, path: Path) -> SaveOutcome:
    """Compress and write a snapshot atomically (temp file, fsync, rename); safe off the GUI thread.

    When the file was saved by someone else since the document read it (another window, a colleague on a
    shared folder), their finished objects that this document neither has nor had are merged in (added
    on top) before writing; a version of theirs that cannot be merged (unreadable, or made for another
    image) is kept beside as ``<name>.broken``. Nothing of theirs is replaced silently: the outcome's
    ``notice`` says what happened.
    """
    merged: list[AnnotatedObject] = []
    notices: list[str] = []

    def merge() -> None:
        if not path.is_file():
            return
        try:
            theirs = read_sidecar(path)
            added = _merge_into(snapshot, theirs)
        except SidecarError as exc:
            notices.append(f"{path.name} was changed by another isegformer and cannot be merged ({exc}). "
                           f"{set_aside(path, exc)}")  # fmt: skip
            return
        merged.extend(added)
        unfinished = bool(theirs.meta.get("clicks")) or bool(theirs.arrays["brush"].any())
        if added or unfinished:
            lost = " Their unfinished object (not finished with Space) was not merged." if unfinished else ""
            notices.append(f"{snapshot.path.name} was also saved by another isegformer (another window or "
                           f"user) since it was opened; {len(added)} object(s) of theirs were merged in."
                           + lost)  # fmt: skip

    version = snapshot.on_disk
    stamp = write_merging(path, version.stamp, lambda: encode_sidecar(snapshot.meta, snapshot.arrays), merge)
    version.stamp = stamp  # the next write (of this document) compares with this one
    version.objects = frozenset(_fingerprints(snapshot.meta, snapshot.arrays["masks"]))
    return SaveOutcome(merged, " ".join(notices))


def _merge_into(snapshot: DocumentSnapshot, theirs: SidecarContents) -> list[AnnotatedObject]:
    """Add to ``snapshot`` the finished objects of ``theirs`` (another instance's save) that are neither in
    it nor were in the version it started from; returns them. SidecarMismatch for a file of another image."""
    meta = snapshot.meta
    if theirs.meta.get("image_sha256", meta["image_sha256"]) != meta["image_sha256"] or \
            list(theirs.meta["working_size"]) != list(meta["working_size"]):  # fmt: skip
        raise SidecarMismatch("it was made for a different image")
    packed = np.packbits(theirs.masks, axis=-1)
    known = set(_fingerprints(meta, snapshot.arrays["masks"])) | snapshot.on_disk.objects
    # parse every object of theirs first: the snapshot changes only once all of them are readable, so a bad
    # one leaves our own save as it was (objects and mask rows in step)
    added, entries, rows = [], [], []
    next_uid = int(meta["next_uid"])
    try:
        for o, mask, key in zip(theirs.meta["objects"], theirs.masks, _fingerprints(theirs.meta, packed),
                                strict=True):  # fmt: skip
            if key in known:
                continue
            known.add(key)
            obj = AnnotatedObject(uid=next_uid, label=str(o["label"]),
                                  color=as_color(o["color"]), mask=mask.copy(),
                                  visible=bool(o.get("visible", True)),
                                  clicks=clicks_from_json(o.get("clicks", [])))  # fmt: skip
            next_uid += 1
            entries.append({"uid": obj.uid, "label": obj.label, "color": list(obj.color),
                            "visible": obj.visible, "clicks": clicks_to_json(obj.clicks)})  # fmt: skip
            added.append(obj)
            rows.append(np.packbits(mask, axis=-1))
    except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as exc:
        raise SidecarError(f"unreadable objects ({exc})") from exc
    if rows:
        meta["objects"].extend(entries)
        meta["next_uid"] = next_uid
        snapshot.arrays["masks"] = np.concatenate([snapshot.arrays["masks"], np.stack(rows)])
        meta["no_objects"] = False  # it has objects after all (as the document's merge says too)
    return added


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
        "no_objects": doc.no_objects,
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
    return DocumentSnapshot(meta, arrays, doc.revision, doc.path, doc.on_disk)


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
