"""The volume autosave file: ``<name>[-<series>][-frame<n>].isegformer-volume.npz``, one compressed
``.npz`` written atomically by a :class:`VolumeSnapshot`.

``meta`` (JSON: shape, affine, objects, active object, view, threshold, each slice session's clicks, the
slices each finished object was annotated on — absent in autosaves of earlier versions),
``labels`` ``(z, y, x)`` and per session ``s<i>_base``, ``s<i>_written``, ``s<i>_brush`` and, when
predicted, ``s<i>_prob`` / ``s<i>_init``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from isegformer_app.state.disk_version import write_merging
from isegformer_app.state.sidecar_codec import SidecarChanged, encode_sidecar, set_aside
from isegformer_app.state.snapshot import SaveOutcome, Snapshot
from isegformer_app.volumes import Volume

SUFFIX = ".isegformer-volume.npz"
FORMAT_VERSION = 1


@dataclass
class VolumeSnapshot(Snapshot):
    """A volume document's autosave, copied on the GUI thread (see :meth:`VolumeDocument.snapshot`)."""

    def write(self, path: Path) -> SaveOutcome:
        return write_snapshot(self, path)


def volume_stem(volume_path: Path, volume: Volume, with_frame: bool = True) -> str:
    """The name a volume's files beside it start with: the file or folder name, ``-<series hash>`` for a
    DICOM series and ``-frame<n>`` for frame n > 0 of a 4-D file (``with_frame``; the frames of one file
    share one label list)."""
    name = Path(volume_path).name or "volume"
    series = volume.metadata.get("series_uid")
    if series:
        name += "-" + hashlib.sha1(series.encode("utf-8")).hexdigest()[:10]
    frame = volume.metadata.get("frame")
    if with_frame and frame:
        name += f"-frame{int(frame)}"
    return name


def write_snapshot(snapshot: VolumeSnapshot, path: Path) -> SaveOutcome:
    """Write a snapshot atomically; safe off the GUI thread. The outcome's notice is for the user.

    ``snapshot.on_disk``: the document's :class:`SidecarVersion` (the file as last read or written here; the
    write updates it). If another isegformer saved the file since, its version is kept beside
    (``<name>.other-instance``; label volumes are not merged voxel by voxel) and the notice says so:
    nothing of theirs is replaced silently.
    """
    notices: list[str] = []

    def keep_theirs() -> None:
        if path.is_file():
            kept = set_aside(path, SidecarChanged(""))
            name = snapshot.meta["volume"]
            notices.append(f"{name} was also saved by another isegformer (another window or user) since "
                           f"it was opened; their version is kept beside. {kept}")  # fmt: skip

    on_disk = snapshot.on_disk
    on_disk.stamp = write_merging(path, on_disk.stamp, lambda: encode_sidecar(snapshot.meta, snapshot.arrays),
                                  keep_theirs)  # fmt: skip
    return SaveOutcome(notice=" ".join(notices))
