"""Where autosave sidecars live: ``<folder>/.isegformer`` beside the images or volume, or — when that
folder cannot be written (read-only share, CD, the bundled sample inside the installation) — a per-user
folder that mirrors it (``<user data>/autosave/<folder name>-<hash of its path>``).

Images and volumes both ask :class:`SidecarLocator`; the decision is made once per folder and reported
once, so a read-only folder gives one notice instead of an error on every change.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import platformdirs

from model.atomic_io import probe_write

SIDECAR_DIRNAME = ".isegformer"
DATA_ENV = "ISEGFORMER_DATA_DIR"


def user_data_dir() -> Path:
    """The per-user data folder (``$ISEGFORMER_DATA_DIR`` overrides it, e.g. in tests)."""
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else Path(platformdirs.user_data_dir("isegformer", appauthor=False))


def user_sidecar_dir(folder: Path) -> Path:
    """The per-user stand-in for ``<folder>/.isegformer``: one subfolder per source folder."""
    folder = Path(os.path.abspath(folder))
    tag = hashlib.sha256(str(folder).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return user_data_dir() / "autosave" / f"{folder.name or 'root'}-{tag}"


def can_write_in(folder: Path) -> bool:
    """True if a file can be created in ``folder`` (or, when it does not exist yet, in its parent).

    Tried for real with a temp file: permission bits say nothing for root or on read-only mounts.
    """
    target = folder if folder.exists() else folder.parent
    if not target.is_dir():
        return False
    try:
        probe_write(target)
    except OSError:
        return False
    return True


class SidecarLocator:
    """Decides, once per source folder, where its sidecars are written and read.

    ``fixed`` (a folder) overrides everything: all sidecars go there, as before. ``redirect_always``
    lists folders whose sidecars always go to the per-user folder (the bundled sample).
    """

    def __init__(self, fixed: Path | None = None, redirect_always: tuple[Path, ...] = ()) -> None:
        self.fixed = fixed
        self._always = {Path(os.path.abspath(p)) for p in redirect_always}
        self._decided: dict[Path, Path] = {}  # source folder -> sidecar folder
        self.notices: list[str] = []  # one per redirected folder, for the user

    def folder_for(self, source_folder: Path) -> Path:
        """The sidecar folder where autosaves of files in ``source_folder`` are written."""
        if self.fixed is not None:
            return self.fixed
        key = Path(os.path.abspath(source_folder))
        if key not in self._decided:
            beside = key / SIDECAR_DIRNAME
            if key in self._always:
                self._decided[key] = user_sidecar_dir(key)
            elif can_write_in(beside):
                self._decided[key] = beside
            else:
                self.redirect(key, "cannot be written")
        return self._decided[key]

    def redirect(self, source_folder: Path, why: str) -> Path:
        """Send this folder's sidecars to the per-user folder from now on (e.g. after a failed write)."""
        key = Path(os.path.abspath(source_folder))
        target = user_sidecar_dir(key)
        if self._decided.get(key) != target:
            self._decided[key] = target
            self.notices.append(f"{key} {why}: annotations are autosaved in {target} instead.")
        return target

    def redirect_after_failure(self, source_folder: Path, error: BaseException) -> bool:
        """After a failed write beside the files: True (write again, now in the per-user folder) unless
        a folder was fixed or this one already writes there (the error is then the user's to see)."""
        if self.fixed is not None or self.is_redirected(source_folder) or not isinstance(error, OSError):
            return False
        self.redirect(source_folder, f"cannot be written ({error.strerror or error})")
        return True

    def is_redirected(self, source_folder: Path) -> bool:
        key = Path(os.path.abspath(source_folder))
        return self.fixed is None and self._decided.get(key) == user_sidecar_dir(key)

    def existing(self, source_folder: Path, sidecar_in: Callable[[Path], Path]) -> Path:
        """The sidecar to restore from: ``sidecar_in(folder)`` where we write if it exists, else the one
        beside the files (made before the folder became read-only), else where we write."""
        written = sidecar_in(self.folder_for(source_folder))
        if self.fixed is None and not written.is_file():
            beside = sidecar_in(Path(os.path.abspath(source_folder)) / SIDECAR_DIRNAME)
            if beside.is_file():
                return beside
        return written
