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
import io
import json
from collections import OrderedDict
from pathlib import Path

import numpy as np

from isegformer_app.state.autosave import SIDECAR_DIRNAME, SidecarError
from isegformer_app.state.document import click_key
from isegformer_app.state.volume_commands import VolumeObject
from isegformer_app.state.volume_document import VolumeDocument
from isegformer_app.state.volume_session import SliceSession
from isegformer_app.volumes import Volume
from model.atomic_io import atomic_write_bytes as atomic_write
from model.clicks import Click

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


def _clicks_json(clicks: list[Click]) -> list[list]:
    return [[c.y, c.x, bool(c.is_positive)] for c in clicks]


def _clicks_from_json(rows: list[list]) -> list[Click]:
    return [Click(float(y), float(x), bool(p), i) for i, (y, x, p) in enumerate(rows)]


def snapshot(doc: VolumeDocument) -> dict[str, np.ndarray]:
    """Arrays to save (copies: the document may change while they are written)."""
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
        "sessions": [{"value": s.value, "axis": s.axis, "index": s.index, "clicks": _clicks_json(s.clicks)}
                     for s in sessions],
    }  # fmt: skip
    arrays = {"meta": np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8).copy(),
              "labels": doc.labels.data.copy()}  # fmt: skip
    for i, s in enumerate(sessions):
        arrays[f"s{i}_base"], arrays[f"s{i}_written"] = s.base.copy(), s.written.copy()
        arrays[f"s{i}_brush"] = s.brush.copy()
        if s.prob is not None:
            arrays[f"s{i}_prob"] = s.prob.astype(np.float32)
        if s.init_prev is not None:
            arrays[f"s{i}_init"] = s.init_prev.astype(np.float32)
    return arrays


def write_snapshot(arrays: dict[str, np.ndarray], path: Path) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write(Path(path), buf.getvalue())


def save_volume_document(doc: VolumeDocument, path: Path) -> None:
    """Write ``doc``'s autosave to ``path`` now (atomically) and mark it saved."""
    revision = doc.revision
    write_snapshot(snapshot(doc), path)
    doc.saved_revision = revision


def read_volume_sidecar(path: Path) -> dict[str, np.ndarray]:
    """All arrays of a sidecar (``meta`` decoded to a dict); raises :class:`SidecarError`."""
    try:
        with np.load(path, allow_pickle=False) as data:
            out = {name: data[name] for name in data.files}
        out["meta"] = json.loads(bytes(out["meta"]).decode("utf-8"))
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise SidecarError(f"Autosave file {path.name} is unreadable ({exc}).") from exc
    return out


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
        s = SliceSession(int(row["value"]), row["axis"], int(row["index"]), base=contents[f"s{i}_base"],
                         written=contents[f"s{i}_written"].astype(bool),
                         clicks=_clicks_from_json(row["clicks"]),
                         brush=contents[f"s{i}_brush"].astype(np.int8))  # fmt: skip
        if f"s{i}_prob" in contents and s.clicks:
            s.prob_cache = OrderedDict({click_key(s.clicks): contents[f"s{i}_prob"]})
            s.prob = contents[f"s{i}_prob"]
        if f"s{i}_init" in contents:
            s.init_prev = contents[f"s{i}_init"]
        doc.sessions[s.key] = s
    axis, index = meta.get("view", [doc.axis, doc.index])
    doc.axis = axis
    doc.index = int(min(max(index, 0), doc.slice_count - 1))
    doc.volume_history.clear()
    doc.saved_revision = doc.revision
