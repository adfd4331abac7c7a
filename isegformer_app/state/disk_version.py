"""Files that another isegformer (a second window, a colleague on a shared drive) may write too.

An autosave or a project's label list is read, edited for a while, then written again. Before each write
the file's :class:`DiskStamp` is compared with the one seen when it was last read or written: a change
means someone else saved it meanwhile, and the writer merges their version in (or keeps it beside) instead
of replacing it silently. The stamp is checked again just before the atomic rename (what remains is a race
of microseconds between two renames, not of minutes of annotation).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from model.atomic_io import atomic_write_bytes

MERGE_ATTEMPTS = 5  # merges tried when the file keeps changing under us, before giving up


@dataclass(frozen=True)
class DiskStamp:
    """What identifies one written version of a file: every atomic write makes a new inode and mtime."""

    inode: int
    size: int
    mtime_ns: int


def stamp_of(path: Path) -> DiskStamp | None:
    """The current stamp of ``path``; None when it does not exist (or cannot be looked at)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return DiskStamp(st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass
class SidecarVersion:
    """An autosave as this instance last read or wrote it: its stamp and the fingerprints of its objects.

    One object per open document, shared by the document and its snapshots and updated by the write itself
    (in the writing thread): the next write, however soon, compares with what this instance wrote last, so
    only another instance's save counts as a change.
    """

    stamp: DiskStamp | None = None
    objects: frozenset[str] = frozenset()


class ChangedOnDisk(Exception):
    """The file was written by someone else since it was read (raised before anything was replaced)."""


def write_unless_changed(path: Path, data: bytes, seen: DiskStamp | None) -> DiskStamp | None:
    """Write ``data`` atomically unless ``path`` changed since it was ``seen`` (None: it did not exist);
    raises :class:`ChangedOnDisk` then, leaving the other version in place. Returns the new stamp."""

    def check() -> None:
        if stamp_of(path) != seen:
            raise ChangedOnDisk(str(path))

    check()  # before the (slow) write, and again right before the rename
    atomic_write_bytes(path, data, before_replace=check)
    return stamp_of(path)


def write_merging(path: Path, seen: DiskStamp | None, encode: Callable[[], bytes],
                  merge: Callable[[], None]) -> DiskStamp | None:  # fmt: skip
    """Write ``encode()`` to ``path`` unless it changed since ``seen``; when it did, ``merge()`` (which reads
    the other version and folds it into what ``encode`` returns next) and try again. Returns the new stamp;
    :class:`ChangedOnDisk` when the file kept changing over :data:`MERGE_ATTEMPTS` tries."""
    for _ in range(MERGE_ATTEMPTS):
        try:
            if stamp_of(path) != seen:  # changed already: merge before encoding (encoding can be slow)
                raise ChangedOnDisk(str(path))
            return write_unless_changed(path, encode(), seen)
        except ChangedOnDisk:
            seen = stamp_of(path)
            merge()
    raise ChangedOnDisk(f"{path} keeps being changed by another program; not written")
