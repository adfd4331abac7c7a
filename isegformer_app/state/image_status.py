"""How far each image of a folder is annotated, for the file list: from the open document or its sidecar.

* ``new``: nothing annotated; ``in progress``: an unfinished object (clicks or brush strokes);
  ``done``: finished objects (or the mark "done: no objects") and nothing unfinished;
  ``unreadable``: the image cannot be opened;
  ``autosave unreadable``: its sidecar cannot be read (it is kept aside when the image is opened).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from isegformer_app.state.sidecar_codec import READ_ERRORS, check_declared_size
from model.untrusted import parse_json

if TYPE_CHECKING:
    from isegformer_app.state.document import Document

ImageStatus = Literal["new", "in progress", "done", "unreadable", "autosave unreadable"]


def _status(objects: int, unfinished: bool, no_objects: bool = False) -> ImageStatus:
    if unfinished:
        return "in progress"
    return "done" if objects or no_objects else "new"


def document_status(doc: Document) -> ImageStatus:
    """The status of an open document."""
    return _status(len(doc.objects), bool(doc.clicks) or bool(doc.brush.any()), doc.no_objects)


def sidecar_status(sidecar: Path) -> ImageStatus:
    """The status recorded in an autosave file (its ``meta`` and ``brush`` entries are read, not the
    object masks or the probability map)."""
    if not sidecar.is_file():
        return "new"
    try:
        check_declared_size(sidecar)
        with np.load(sidecar, allow_pickle=False) as data:
            meta = parse_json(bytes(data["meta"]).decode("utf-8"))
            unfinished = bool(meta["clicks"]) or ("brush" in data.files and bool(data["brush"].any()))
        return _status(len(meta["objects"]), unfinished, bool(meta.get("no_objects", False)))
    except READ_ERRORS:
        return "autosave unreadable"
