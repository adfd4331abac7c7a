"""Atomic file writes, the one implementation used by the whole project (checkpoints, training resume
files, evaluation results, autosaves, exports, settings).

A write goes to a temp file in the target folder, is fsynced, gets the permissions a plain ``open``
would give (from the umask; ``mkstemp`` alone makes 0600 files), replaces the target with
``os.replace`` and fsyncs the folder, so a crash or ``kill -9`` leaves the old file or the complete
new one, never a torn one. It lives in ``model`` because that is the lowest layer: ``training`` and
the app import ``model``, never the other way round.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it; done once, at import, before any thread starts
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def current_umask() -> int:
    """The process umask (read at import)."""
    return _UMASK


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename in ``folder`` durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_with(path: str | os.PathLike, writer: Callable[[Path], None], fsync: bool = True,
                      before_replace: Callable[[], None] | None = None) -> None:  # fmt: skip
    """Call ``writer(tmp_path)`` to fill a temp file that ends in ``path``'s suffixes, then swap it in.

    Keeping the suffixes matters for writers that pick the format from the name (``.nii.gz``).
    ``fsync=False`` skips flushing (bulk test fixtures, where durability does not matter).
    ``before_replace()`` runs just before the swap; an exception from it keeps ``path`` as it is (e.g. a
    check that nobody else changed the file meanwhile).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # ".<name>.<random>.tmp<suffixes>": hidden, recognisable as a temp file (cleaners glob ".*.tmp*")
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                    suffix=".tmp" + "".join(path.suffixes[-2:]))  # fmt: skip
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer(tmp)
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
        if fsync:
            fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def probe_write(folder: str | os.PathLike) -> None:
    """Create and delete a temp file in ``folder``; OSError when that fails. Tried for real: permission
    bits say nothing for root or on read-only mounts."""
    fd, name = tempfile.mkstemp(prefix=".isegformer-probe-", dir=folder)
    os.close(fd)
    try:
        os.unlink(name)
    except OSError:
        pass


def require_output_folder(folder: str | os.PathLike, option: str = "--output") -> Path:
    """Make ``folder`` (and its parents) and check that it can be written, before a long run writes its
    results there; ValueError with one clear message otherwise (a file, a read-only place)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{option} {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe_write(folder)
    except OSError as exc:
        raise ValueError(f"{option} {folder} cannot be written ({exc.strerror or exc})") from exc
    return folder


def atomic_write_bytes(path: str | os.PathLike, data: bytes, fsync: bool = True,
                       before_replace: Callable[[], None] | None = None) -> None:  # fmt: skip
    """Write ``data`` to ``path`` atomically (readers see the old file or the complete new one)."""
    atomic_write_with(path, lambda tmp: tmp.write_bytes(data), fsync=fsync, before_replace=before_replace)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))
