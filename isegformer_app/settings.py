"""User settings in one JSON file (platformdirs config folder, or ``$ISEGFORMER_CONFIG_DIR``).

The file may have been edited by hand: each value is checked (its type, and its range where it has one);
a bad one is replaced by its default, and one notice names them all.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import platformdirs

from isegformer_app.state.labels import LabelList
from model.atomic_io import atomic_write_bytes as atomic_write
from model.threshold import DEFAULT_THRESHOLD
from model.untrusted import parse_json

CONFIG_ENV = "ISEGFORMER_CONFIG_DIR"
MAX_RECENT = 10

DEFAULT_SHORTCUTS = {
    "finish": "Space", "reset": "Escape", "undo": "Ctrl+Z", "redo": "Ctrl+Shift+Z",
    "next": "D", "prev": "A", "fit": "F", "brush": "B", "eraser": "E", "click_tool": "C",
    "delete": "Delete", "export": "Ctrl+E", "open": "Ctrl+O",
    "open_volume": "Ctrl+Shift+O", "axial": "1", "coronal": "2", "sagittal": "3",
    "slice_up": "Up", "slice_down": "Down", "slice_page_up": "PgUp", "slice_page_down": "PgDown",
    "propagate_next": "Shift+Up", "propagate_prev": "Shift+Down", "propagate_range": "Ctrl+R",
    "wl_mode": "W", "edit_object": "Return", "no_objects": "N",
}  # fmt: skip


def _number(low: float, high: float) -> Callable[[object], bool]:
    def check(v: object) -> bool:
        number = isinstance(v, (int, float)) and not isinstance(v, bool)
        return number and low <= v <= high  # NaN and inf fail the comparison; huge integers compare safely

    return check


def _integer(low: int, high: int) -> Callable[[object], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def _str_dict(value: object, of: type) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, of) for k, v in value.items())


def _labels_ok(value: object) -> bool:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        return False
    try:
        LabelList.from_json(value)
    except (ValueError, TypeError, KeyError):
        return False
    return True


# what a value read from the file must satisfy, per setting (anything else: the default, with a notice)
VALID: dict[str, Callable[[object], bool]] = {
    "recent_files": lambda v: isinstance(v, list) and all(isinstance(p, str) for p in v),
    "last_checkpoint": lambda v: isinstance(v, str),
    "model_source": lambda v: v in ("engine", "checkpoint"),
    "device": lambda v: isinstance(v, str),
    "precision": lambda v: v in ("auto", "fp32"),
    "engine": lambda v: isinstance(v, str),
    "labels": _labels_ok,
    "volume_labels": _labels_ok,
    "shortcuts": lambda v: _str_dict(v, str),
    "opacity": _number(0.0, 1.0),
    "threshold": _number(0.01, 0.99),
    "brush_radius": _integer(1, 200),
    "runtime_choices": lambda v: _str_dict(v, dict),
    "inference_threads": _integer(0, 1024),
    "local_edits": lambda v: isinstance(v, bool),
}


def config_dir() -> Path:
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else Path(platformdirs.user_config_dir("isegformer", appauthor=False))


@dataclass
class Settings:
    recent_files: list[str] = field(default_factory=list)
    last_checkpoint: str = ""
    model_source: str = "engine"  # what was active at exit: "engine" or "checkpoint" (reloaded at start)
    device: str = "cpu"
    precision: str = "auto"  # "auto": bf16/fp16 where the hardware runs it natively; "fp32"
    engine: str = ""
    labels: list[dict] = field(default_factory=list)  # default label set of new photo projects
    volume_labels: list[dict] = field(default_factory=list)  # ... of new volume projects
    shortcuts: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SHORTCUTS))
    opacity: float = 0.5
    threshold: float = DEFAULT_THRESHOLD
    brush_radius: int = 8
    runtime_choices: dict[str, dict] = field(default_factory=dict)  # measured precision/threads per model
    inference_threads: int = 0  # torch threads of the inference worker; 0 = automatic (see ui.worker)
    local_edits: bool = True  # a network's click takes its pixel, never loses the object (model.local_edits)
    path: Path | None = field(default=None, repr=False, compare=False)
    problem: str = field(default="", repr=False, compare=False)

    @classmethod
    def load(cls, folder: Path | None = None) -> Settings:
        """Read ``settings.json`` from ``folder`` (default :func:`config_dir`); defaults if absent/broken."""
        path = (folder or config_dir()) / "settings.json"
        settings = cls(path=path)
        if not path.is_file():
            return settings
        try:
            data = parse_json(path.read_text("utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            return cls(path=path, problem=f"Settings file {path} is unreadable ({exc}); using defaults.")
        known = {f.name for f in fields(cls)} - {"path", "problem"}
        bad = []
        for key, value in data.items():
            if key not in known:
                continue
            if VALID[key](value):
                setattr(settings, key, value)
            else:
                bad.append(key)
        settings.shortcuts = {**DEFAULT_SHORTCUTS, **settings.shortcuts}
        if bad:
            settings.problem = (f"Settings file {path}: invalid {', '.join(bad)}; the defaults are used "
                                "for these.")  # fmt: skip
        return settings

    def save(self) -> None:
        if self.path is None:
            return
        data = {k: v for k, v in asdict(self).items() if k not in ("path", "problem")}
        atomic_write(self.path, json.dumps(data, indent=1).encode("utf-8"))

    def add_recent(self, path: str | os.PathLike) -> None:
        text = str(Path(path).resolve())
        self.recent_files = [text] + [p for p in self.recent_files if p != text][: MAX_RECENT - 1]
