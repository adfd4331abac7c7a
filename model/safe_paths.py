"""Paths named inside files we read (an export's ``labels.json``, a split list) stay in their folder.

A file names ``"/etc/hostname"`` or ``"../../secret"``: joined to a folder naively, that reads (or copies
into an export) a file from anywhere. :func:`path_inside` is the one check every such reader uses. It lives
in ``model`` (the lowest layer) so that the app and ``training`` share it.
"""

from __future__ import annotations

import os
from pathlib import Path


class PathOutsideFolder(ValueError):
    """A name read from a file points outside the folder it must stay in."""


def path_inside(folder: str | os.PathLike, name: str) -> Path:
    """``folder / name`` for a relative ``name`` read from a file; :class:`PathOutsideFolder` when it is
    absolute or leads out of ``folder`` (``..``, or a symbolic link inside pointing out)."""
    folder = Path(folder)
    if not isinstance(name, str) or not name or Path(name).is_absolute() or Path(name).drive:
        raise PathOutsideFolder(f"{name!r} is absolute: it leads outside {folder}")
    candidate = folder / name
    if not candidate.resolve().is_relative_to(folder.resolve()):
        raise PathOutsideFolder(f"{name!r} leads outside {folder}")
    return candidate
