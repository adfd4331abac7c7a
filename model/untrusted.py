"""Reading files we did not write: the one place for the checks every such reader needs.

* Paths named inside a file (an export's ``labels.json``, a split list) stay in their folder: a file that
  names ``"/etc/hostname"`` or ``"../../secret"`` must not make us read (or copy into an export) a file from
  anywhere (:func:`path_inside`).
* JSON may be hostile: 200,000 nested brackets (RecursionError), ``Infinity`` or ``1e400`` (infinite
  numbers that overflow later): :func:`parse_json` fails with ValueError for all of them.

It lives in ``model`` (the lowest layer) so that the app and ``training`` share it.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any


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


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number")


def parse_json(text: str | bytes) -> Any:
    """``json.loads`` for untrusted text: ValueError (never RecursionError or an infinite float) for nesting
    too deep, ``NaN`` / ``Infinity`` and numbers beyond the float range."""
    try:
        return json.loads(text, parse_float=_finite, parse_constant=_no_constant)
    except RecursionError as exc:
        raise ValueError("the JSON is nested too deeply") from exc
