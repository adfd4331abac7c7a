"""Autosave of a volume annotation: ``<folder>/.isegformer/<name>[-<series>].isegformer-volume.npz`` (the
file format: :mod:`.volume_sidecar`).

``<folder>`` is the folder holding the NIfTI file or the DICOM series folder (the sidecar sits next
to the volume, never inside a DICOM folder, where it would be scanned as a file of the series).
:meth:`VolumeDocument.snapshot` copies what is needed on the GUI thread; its ``write`` may then run in
a worker thread while the user goes on annotating.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from isegformer_app.state.disk_version import SidecarVersion, stamp_of
from isegformer_app.state.labels import as_color
from isegformer_app.state.sidecar_codec import (
    SidecarError,
    SidecarMismatch,
    clicks_from_json,
    load_session,
    read_sidecar_file,
)
from isegformer_app.state.sidecar_location import SIDECAR_DIRNAME
from isegformer_app.state.volume_commands import VolumeObject
from isegformer_app.state.volume_document import VolumeDocument
from isegformer_app.state.volume_session import SliceSession
from isegformer_app.state.volume_sidecar import (  # noqa: F401  (the file format, re-exported)
    FORMAT_VERSION,
    SUFFIX,
    VolumeSnapshot,
    volume_stem,
    write_snapshot,
)
from isegformer_app.volumes import Volume, slicing
from isegformer_app.volumes.labels import MAX_LABEL
from model.threshold import checked_threshold


def volume_sidecar_path(volume_path: Path, volume: Volume, sidecar_dir: Path | None = None) -> Path:
    """Where the autosave of ``volume`` (opened from ``volume_path``) lives."""
    volume_path = Path(volume_path)
    folder = sidecar_dir if sidecar_dir is not None else volume_path.parent / SIDECAR_DIRNAME
    return folder / f"{volume_stem(volume_path, volume)}{SUFFIX}"


def save_volume_document(doc: VolumeDocument, path: Path) -> str:
    """Write ``doc``'s autosave to ``path`` now (atomically) and mark it saved; returns the notice."""
    snapshot = doc.snapshot()
    outcome = snapshot.write(path)
    doc.saved(snapshot, outcome)
    return outcome.notice


def read_volume_sidecar(path: Path) -> dict[str, np.ndarray]:
    """All arrays of a sidecar, its ``meta`` (a dict) and ``stamp`` (the file's
    :class:`~isegformer_app.state.disk_version.DiskStamp` as read); raises :class:`SidecarError`."""
    stamp = stamp_of(path)
    meta, arrays = read_sidecar_file(path, FORMAT_VERSION)
    return {"meta": meta, "stamp": stamp, **arrays}


def restore_volume_document(doc: VolumeDocument, contents: dict) -> None:
    """Put the sidecar ``contents`` (from :func:`read_volume_sidecar`) into a fresh ``doc``; raises
    :class:`SidecarError` and then leaves ``doc`` as it was (everything is checked before it is assigned)."""
    meta = contents["meta"]
    try:
        same_grid = tuple(meta["shape"]) == doc.volume.shape and np.allclose(
            np.asarray(meta["affine"], np.float64), doc.volume.affine, atol=1e-4)  # fmt: skip
    except (KeyError, TypeError, ValueError) as exc:
        raise SidecarError(f"The autosave's geometry is unreadable ({exc}).") from exc
    if not same_grid:
        raise SidecarMismatch(f"The autosave was made for a volume of shape {tuple(meta['shape'])} with "
                              f"another geometry; this one is {doc.volume.shape}.")  # fmt: skip
    saved_digest = meta.get("volume_sha256")  # absent in autosaves of earlier versions
    if saved_digest is not None and saved_digest != doc.volume.digest:
        raise SidecarMismatch("The autosave was made for different data with the same name and grid.")
    labels = contents.get("labels")
    if labels is None or labels.shape != doc.volume.shape or labels.dtype not in (np.uint8, np.uint16):
        raise SidecarError("The autosave's label volume is inconsistent.")
    try:
        objects = [VolumeObject(int(o["uid"]), str(o["label"]), as_color(o["color"]),
                                bool(o["visible"])) for o in meta["objects"]]  # fmt: skip
        next_value = max([int(meta["next_value"]), *(o.uid + 1 for o in objects)])
        if next_value > MAX_LABEL + 1 or any(not 0 < o.uid <= MAX_LABEL for o in objects):
            raise ValueError(f"label values must be in 1..{MAX_LABEL}")  # else the next new object fails
        threshold = checked_threshold(meta.get("threshold", doc.threshold))
        active = meta.get("active")
        if active is not None and int(active) not in {o.uid for o in objects}:
            raise ValueError(f"active object {active} is not an object")
        sessions = {}
        for i, row in enumerate(meta["sessions"]):
            base, written = contents[f"s{i}_base"], contents[f"s{i}_written"].astype(bool)
            s = SliceSession(int(row["value"]), str(row["axis"]), int(row["index"]), base=base,
                             written=written)  # fmt: skip
            if not (base.shape == written.shape == slicing.view_shape(doc.volume.shape, s.axis)
                    and 0 <= s.index < doc.volume.slice_count(s.axis)):  # fmt: skip
                raise ValueError(f"slice session {i} does not match the volume")
            load_session(s, clicks_from_json(row["clicks"]), contents, prefix=f"s{i}_")
            sessions[s.key] = s
        finished_slices = {int(row["uid"]): {_slice_ref(doc.volume, ref) for ref in row["slices"]}
                           for row in meta.get("finished_slices", [])}  # fmt: skip
        unknown = set(finished_slices) - {o.uid for o in objects}
        if unknown:
            raise ValueError(f"finished slices of object {min(unknown)}, which is not an object")
        axis, index = meta.get("view", [doc.axis, doc.index])
        slicing.view_shape(doc.volume.shape, axis)  # ValueError for an unknown axis
        index = int(min(max(int(index), 0), doc.volume.slice_count(axis) - 1))
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise SidecarError(f"The autosave is unreadable ({exc}).") from exc
    doc.labels.data = labels.copy()
    doc.object_list, doc.next_value, doc.threshold = objects, next_value, threshold
    doc.active = None if active is None else int(active)
    doc.sessions.clear()
    doc.sessions.update(sessions)
    doc.finished_slices = finished_slices
    doc.axis, doc.index = axis, index
    doc.volume_history.clear()
    doc.saved_revision = doc.revision
    doc.on_disk = SidecarVersion(contents.get("stamp"))


def _slice_ref(volume: Volume, ref: list) -> tuple[str, int]:
    """``[axis, index]`` of an autosave as a slice of ``volume``; ValueError when it is not one."""
    axis, index = ref
    axis, index = str(axis), int(index)
    if not 0 <= index < volume.slice_count(axis):  # ValueError for an unknown axis
        raise ValueError(f"{axis} slice {index} is outside the volume")
    return axis, index
