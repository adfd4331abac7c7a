"""Which predictor the worker runs: a built-in engine or a loaded checkpoint, on CPU or CUDA.

The model modules are imported lazily (torch is slow to import and the app opens without it).
A checkpoint that fails to load produces one message; the previous predictor stays active.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from isegformer_app.settings import Settings
from isegformer_app.ui.worker import InferenceWorker

EngineFactories = dict[str, Callable[[], object]]


def builtin_engines() -> tuple[EngineFactories, str]:
    """The built-in engines (name -> factory) and the default name; empty if unavailable."""
    try:
        from model.engines import DEFAULT_ENGINE, ENGINE_NAMES, build_engine
    except ImportError:
        return {}, ""
    return {name: (lambda n=name: build_engine(n)) for name in ENGINE_NAMES}, DEFAULT_ENGINE


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def checkpoint_factory(path: Path, device: str, precision: str = "auto") -> Callable[[], object]:
    """Builds the network predictor; ``precision`` "auto" runs it in bf16/fp16 where the hardware
    supports that natively (IoU >= 0.99 against fp32, tested), "fp32" in full precision."""

    def build() -> object:
        from model.checkpoint import CheckpointError, load_checkpoint
        from model.predictor import Predictor, fast_autocast

        try:
            model = load_checkpoint(path, device=device)
        except CheckpointError as exc:
            raise RuntimeError(str(exc)) from exc
        except (OSError, EOFError, ValueError, KeyError) as exc:
            raise RuntimeError(f"cannot load {path.name} as an iSegFormer/RITM checkpoint ({exc})") from exc
        autocast = fast_autocast(device) if precision == "auto" else None
        return Predictor(model, device=device, name=f"{path.name}", autocast=autocast)

    return build


class ModelControl(QObject):
    """Keeps track of the active source and asks the worker to build predictors."""

    source_changed = Signal(str)  # description for the status bar
    load_failed = Signal(str)

    def __init__(self, worker: InferenceWorker, settings: Settings, engines: EngineFactories | None,
                 default_engine: str = "") -> None:  # fmt: skip
        super().__init__()
        self.worker = worker
        self.settings = settings
        if engines is None:
            engines, default_engine = builtin_engines()
        self.engines = engines
        self.default_engine = default_engine or next(iter(engines), "")
        self.active: tuple[str, str] = ("", "")  # ("engine", name) | ("checkpoint", path)
        self._requested: tuple[str, str] = ("", "")
        self.device = settings.device if settings.device in ("cpu", "cuda") else "cpu"
        if self.device == "cuda" and not cuda_available():
            self.device = "cpu"
        worker.engine_ready.connect(self._on_ready)
        worker.failed.connect(self._on_failed)

    def start(self) -> None:
        """Start with the last engine; reload the last checkpoint if that was active at exit."""
        name = self.settings.engine if self.settings.engine in self.engines else self.default_engine
        if name:
            self.use_engine(name)
        last = self.settings.last_checkpoint
        if self.settings.model_source == "checkpoint" and last and Path(last).is_file():
            self.load_checkpoint(last)

    def use_engine(self, name: str) -> None:
        self._requested = ("engine", name)
        self.worker.load_engine(self.engines[name], name, "cpu")

    def load_checkpoint(self, path: str | Path) -> None:
        path = Path(path)
        self._requested = ("checkpoint", str(path))
        factory = checkpoint_factory(path, self.device, self.settings.precision)
        self.worker.load_engine(factory, f"checkpoint {path.name}", self.device)

    def set_device(self, device: str) -> bool:
        """Switch CPU/CUDA; reloads an active checkpoint. False if CUDA is unavailable."""
        if device == "cuda" and not cuda_available():
            self.load_failed.emit("CUDA is not available on this machine; staying on the CPU.")
            return False
        self.device = device
        self.settings.device = device
        if self.active[0] == "checkpoint":
            self.load_checkpoint(self.active[1])
        return True

    def set_precision(self, reduced: bool) -> None:
        """Reduced precision on/off for network checkpoints; reloads an active checkpoint."""
        self.settings.precision = "auto" if reduced else "fp32"
        if self.active[0] == "checkpoint":
            self.load_checkpoint(self.active[1])

    def _on_ready(self, name: str, device: str) -> None:
        self.active = self._requested
        kind, value = self.active
        if kind == "engine":
            self.settings.engine = value
        elif kind == "checkpoint":
            self.settings.last_checkpoint = value
        if kind:
            self.settings.model_source = kind
        self.source_changed.emit(f"{name} · {device}")

    def _on_failed(self, what: str, message: str) -> None:
        if what != "engine":
            return
        self._requested = self.active
        self.load_failed.emit(f"Could not load {message}\nThe previous model stays active.")
