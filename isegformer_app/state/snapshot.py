"""What an autosave writes: a :class:`Snapshot` copied from a document, which writes itself.

A snapshot is taken on the GUI thread (a copy: the user keeps working) and written off it; an image's
and a volume's snapshot differ only in their file format (``write``). Both are named for the background
writer the same way: ``key``, the autosave's place beside the annotated file.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from isegformer_app.state.disk_version import SidecarVersion
from isegformer_app.state.image_objects import AnnotatedObject
from isegformer_app.state.sidecar_location import SIDECAR_DIRNAME


@dataclass
class SaveOutcome:
    """What an autosave write did besides writing: the objects another instance had saved meanwhile that
    were merged into the file (images; a volume's other version is kept beside, not merged), and what to
    tell the user about it."""

    merged: list[AnnotatedObject] = field(default_factory=list)
    notice: str = ""


@dataclass
class Snapshot(ABC):
    """``meta`` (JSON-able) and ``arrays`` of an autosave, the document ``revision`` they hold, the
    annotated file ``source``, the autosave's file ``name`` and the document's :class:`SidecarVersion`
    ``on_disk`` (shared, not copied: the write compares with and updates it)."""

    meta: dict
    arrays: dict[str, np.ndarray]
    revision: int
    source: Path
    name: str
    on_disk: SidecarVersion = field(default_factory=SidecarVersion)

    @property
    def key(self) -> Path:
        """The autosave's path beside ``source``: what the writer knows a document's writes by (wherever
        they go after a redirect)."""
        return self.source.parent / SIDECAR_DIRNAME / self.name

    def target(self, folder: Path) -> Path:
        """Where the autosave goes when the sidecar folder of ``source`` is ``folder``."""
        return folder / self.name

    @abstractmethod
    def write(self, path: Path) -> SaveOutcome:
        """Compress and write atomically to ``path`` (safe off the GUI thread), keeping or merging what
        another instance saved there since the document read it."""
