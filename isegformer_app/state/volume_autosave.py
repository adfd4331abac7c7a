"""Autosave of a volume annotation: ``<folder>/.isegformer/<name>[-<series>].isegformer-volume.npz``.

``<folder>`` is the folder holding the NIfTI file or the DICOM series folder (the sidecar sits next
to the volume, never inside a DICOM folder, where it would be scanned as a file of the series).
One compressed ``.npz``, written atomically: ``meta`` (JSON: shape, affine, objects, active object,
view, threshold, each slice session's clicks), ``labels`` ``(z, y, x)`` and per session ``s<i>_base``,
``s<i>_written``, ``s<i>_brush`` and, when predicted, ``s<i>_prob`` / ``s<i>_init``.

:func:`snapshot` copies what is needed on the GUI thread; :func:`write_snapshot` may then run in a
worker thread while the user goes on annotating.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from isegformer_app.state.sidecar_codec import (
    SidecarError,
    clicks_from_json,
    clicks_to_json,
    load_session,
    read_sidecar_file,
    session_arrays,
    write_sidecar,
)
from isegformer_app.state.sidecar_location import SIDECAR_DIRNAME
from isegformer_app.state.volume_commands import VolumeObject
from isegformer_app.state.volume_document import VolumeDocument
from isegformer_app.state.volume_session import SliceSession
from isegformer_app.volumes import Volume, slicing

SUFFIX = ".isegformer-volume.npz"
FORMAT_VERSION = 1


def volume_sidecar_path(volume_path: Path, volume: Volume, sidecar_dir: Path | None = None) -> Path:
    """Where the autosave of ``volume`` (opened from ``volume_path``) lives."""
    volume_path = Path(volume_path)
    folder = sidecar_dir if sidecar_dir is not None else volume_path.parent / SIDECAR_DIRNAME
    name = volume_path.name or "volume"
    series = volume.metadata.get("series_uid")
    if series:
        name += "-" + hashlib.sha1(series.encode("utf-8")).hexdigest()[:10]
    frame = volume.metadata.get("frame")
    if frame:
        name += f"-frame{int(frame)}"
    return folder / f"{name}{SUFFIX}"


def snapshot(doc: VolumeDocument) -> dict:
    """``meta`` (a dict) and the arrays to save (copies: the document may change while they are written)."""
    sessions = [s for s in doc.sessions.values() if s.has_content()]
    meta = {
        "version": FORMAT_VERSION,
        "volume": doc.path.name,
        "shape": list(doc.volume.shape),
        "affine": np.asarray(doc.volume.affine).tolist(),
        "threshold": doc.threshold,
        "next_value": doc.next_value,
        "active": doc.active,
        "view": [doc.axis, doc.index],
        "objects": [{"uid": o.uid, "label": o.label, "color": list(o.color), "visible": o.visible}
                    for o in doc.object_list],
        "sessions": [{"value": s.value, "axis": s.axis, "index": s.index, "clicks": clicks_to_json(s.clicks)}
                     for s in sessions],
    }  # fmt: skip
    contents: dict = {"meta": meta, "labels": doc.labels.data.copy()}
    for i, s in enumerate(sessions):
        contents[f"s{i}_base"], contents[f"s{i}_written"] = s.base.copy(), s.written.copy()
        contents.update(session_arrays(s, prefix=f"s{i}_"))
    return contents


def write_snapshot(contents: dict, path: Path) -> None:
    """Write what :func:`snapshot` returned, atomically; safe off the GUI thread."""
    arrays = {name: value for name, value in contents.items() if name != "meta"}
    write_sidecar(path, contents["meta"], arrays)


def save_volume_document(doc: VolumeDocument, path: Path) -> None:
    """Write ``doc``'s autosave to ``path`` now (atomically) and mark it saved."""
    revision = doc.revision
    write_snapshot(snapshot(doc), path)
    doc.saved_revision = revision


def read_volume_sidecar(path: Path) -> dict[str, np.ndarray]:
    """All arrays of a sidecar and its ``meta`` (a dict); raises :class:`SidecarError`."""
    meta, arrays = read_sidecar_file(path, FORMAT_VERSION)
    return {"meta": meta, **arrays}


def restore_volume_document(doc: VolumeDocument, contents: dict) -> None:
    """Put the sidecar ``contents`` (from :func:`read_volume_sidecar`) into a fresh ``doc``."""
    meta = contents["meta"]
    if tuple(meta["shape"]) != doc.volume.shape or not np.allclose(meta["affine"], doc.volume.affine,
                                                                    atol=1e-4):  # fmt: skip
        raise SidecarError(f"The autosave was made for a volume of shape {tuple(meta['shape'])} with another "
                           f"geometry; this one is {doc.volume.shape}. It was left untouched.")
    labels = contents["labels"]
    if labels.shape != doc.volume.shape or labels.dtype not in (np.uint8, np.uint16):
        raise SidecarError("The autosave's label volume is inconsistent; it was left untouched.")
    doc.labels.data = labels.copy()
    doc.object_list = [VolumeObject(int(o["uid"]), o["label"], tuple(int(v) for v in o["color"]),
                                    bool(o["visible"])) for o in meta["objects"]]  # fmt: skip
    doc.next_value = int(meta["next_value"])
    doc.threshold = float(meta.get("threshold", doc.threshold))
    doc.active = meta.get("active")
    doc.sessions.clear()
    for i, row in enumerate(meta["sessions"]):
        try:
            base, written = contents[f"s{i}_base"], contents[f"s{i}_written"].astype(bool)
            s = SliceSession(int(row["value"]), row["axis"], int(row["index"]), base=base, written=written)
            consistent = base.shape == written.shape == slicing.view_shape(doc.volume.shape, s.axis)
        except (KeyError, ValueError, TypeError) as exc:
            raise SidecarError(f"The autosave's slice session {i} is unreadable ({exc}).") from exc
        if not consistent:
            raise SidecarError(f"The autosave's slice session {i} does not match the volume.")
        load_session(s, clicks_from_json(row["clicks"]), contents, prefix=f"s{i}_")
        doc.sessions[s.key] = s
    axis, index = meta.get("view", [doc.axis, doc.index])
    doc.axis = axis
    doc.index = int(min(max(index, 0), doc.slice_count - 1))
    doc.volume_history.clear()
    doc.saved_revision = doc.revision
