"""User settings in one JSON file (platformdirs config folder, or ``$ISEGFORMER_CONFIG_DIR``)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import platformdirs

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
    "wl_mode": "W", "edit_object": "Return",
}  # fmt: skip


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
    labels: list[dict] = field(default_factory=list)
    shortcuts: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SHORTCUTS))
    opacity: float = 0.5
    threshold: float = DEFAULT_THRESHOLD
    brush_radius: int = 8
    runtime_choices: dict[str, dict] = field(default_factory=dict)  # measured precision/threads per model
    inference_threads: int = 0  # torch threads of the inference worker; 0 = automatic (see ui.worker)
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
            known = {f.name for f in fields(cls)} - {"path", "problem"}
            for key, value in data.items():
                if key in known:
                    setattr(settings, key, value)
            settings.shortcuts = {**DEFAULT_SHORTCUTS, **settings.shortcuts}
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            settings = cls(path=path, problem=f"Settings file {path} is unreadable ({exc}); using defaults.")
        return settings

    def save(self) -> None:
        if self.path is None:
            return
        data = {k: v for k, v in asdict(self).items() if k not in ("path", "problem")}
        atomic_write(self.path, json.dumps(data, indent=1).encode("utf-8"))

    def add_recent(self, path: str | os.PathLike) -> None:
        text = str(Path(path).resolve())
        self.recent_files = [text] + [p for p in self.recent_files if p != text][: MAX_RECENT - 1]
