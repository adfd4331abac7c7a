"""The image autosave file: ``<image name>.isegformer.npz``, one compressed ``.npz`` written atomically.

``meta`` (JSON as bytes: sizes, objects' labels/colours/visibility/clicks, the current clicks, threshold),
``masks`` (N x H x W bool, packed), ``prob`` (current object's probability, float32, absent if none) and
``brush`` (int8 corrections). An :class:`ImageSnapshot` writes it, merging the finished objects another
instance saved meanwhile; :func:`read_sidecar` reads it back.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from isegformer_app.state.disk_version import write_merging
from isegformer_app.state.image_objects import AnnotatedObject
from isegformer_app.state.labels import as_color
from isegformer_app.state.sidecar_codec import (
    SidecarError,
    SidecarMismatch,
    clicks_from_json,
    clicks_to_json,
    encode_sidecar,
    read_sidecar_file,
    set_aside,
)
from isegformer_app.state.snapshot import SaveOutcome, Snapshot

SIDECAR_SUFFIX = ".isegformer.npz"
FORMAT_VERSION = 1


@dataclass
class ImageSnapshot(Snapshot):
    """An image document's autosave, copied on the GUI thread (see :meth:`Document.snapshot`)."""

    def write(self, path: Path) -> SaveOutcome:
        return write_snapshot(self, path)


def object_fingerprint(label: str, packed_mask: np.ndarray) -> str:
    """Identifies a finished object across instances: its label and its (row-packed) mask."""
    return hashlib.sha1(label.encode("utf-8", "surrogatepass") + packed_mask.tobytes()).hexdigest()


def _fingerprints(meta: dict, packed_masks: np.ndarray) -> list[str]:
    rows = zip(meta["objects"], packed_masks, strict=True)
    return [object_fingerprint(str(o["label"]), m) for o, m in rows]


def write_snapshot(snapshot: ImageSnapshot, path: Path) -> SaveOutcome:
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
            notices.append(f"{snapshot.source.name} was also saved by another isegformer (another window or "
                           f"user) since it was opened; {len(added)} object(s) of theirs were merged in."
                           + lost)  # fmt: skip

    version = snapshot.on_disk
    stamp = write_merging(path, version.stamp, lambda: encode_sidecar(snapshot.meta, snapshot.arrays), merge)
    version.stamp = stamp  # the next write (of this document) compares with this one
    version.objects = frozenset(_fingerprints(snapshot.meta, snapshot.arrays["masks"]))
    return SaveOutcome(merged, " ".join(notices))


def _merge_into(snapshot: ImageSnapshot, theirs: SidecarContents) -> list[AnnotatedObject]:
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
        packed = arrays.pop("masks")
        # checked before unpacking: ``w`` sizes the unpacked array (a hostile 10**12 would allocate terabytes)
        consistent = packed.ndim == 3 and packed.shape[1:] == (h, (w + 7) // 8)
        masks = np.unpackbits(packed, axis=-1, count=w).astype(bool) if consistent else packed
        brush = arrays["brush"]
        consistent = consistent and masks.shape == (len(meta["objects"]), h, w) and brush.shape == (h, w)
    except (ValueError, KeyError, TypeError) as exc:
        raise SidecarError(f"Autosave file {path.name} is unreadable ({exc}).") from exc
    if not consistent:
        raise SidecarError(f"Autosave file {path.name} is inconsistent.")
    return SidecarContents(meta, masks, arrays)
