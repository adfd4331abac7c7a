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


def shipped_networks() -> dict[str, Path]:
    """The trained networks bundled in ``resources/models`` (name -> checkpoint), default first."""
    from resources import DEFAULT_MODEL_NAME, bundled_model

    path = bundled_model()
    return {DEFAULT_MODEL_NAME: path} if path is not None else {}


def checkpoint_factory(
    path: Path,
    device: str,
    precision: str = "auto",
    runtime_cache: dict[str, dict] | None = None,
    name: str = "",
    threads: int = 0,
) -> Callable[[], object]:
    """Builds the network predictor (in the worker thread, where it will run).

    ``precision`` "fp32": full precision. "auto": on CUDA bf16/fp16 where supported; on the CPU the
    precision and torch thread count that a short measurement found fastest on this machine
    (:func:`model.runtime_tuning.measure_runtime`; ``threads`` > 0, the user's explicit setting, fixes the
    thread count), cached in ``runtime_cache`` per model file, machine and thread setting, and measured
    again when it was made while the cores were busy or they are busy now.
    """

    def build() -> object:
        import torch

        from model.checkpoint import CheckpointError, load_checkpoint
        from model.predictor import Predictor, fast_autocast

        try:
            model = load_checkpoint(path, device=device)
        except CheckpointError as exc:
            raise RuntimeError(str(exc)) from exc
        except (OSError, EOFError, ValueError, KeyError) as exc:
            raise RuntimeError(f"cannot load {path.name} as an iSegFormer/RITM checkpoint ({exc})") from exc
        if precision != "auto":
            autocast = None
        elif torch.device(device).type != "cpu":
            autocast = fast_autocast(device)
        else:
            choice = _measured_choice(model, path, runtime_cache, threads)
            torch.set_num_threads(choice.threads)
            autocast = choice.precision
        return Predictor(model, device=device, name=name or path.name, autocast=autocast)

    return build


def _measured_choice(model, path: Path, cache: dict[str, dict] | None, threads: int):
    """The cached :class:`~model.runtime_tuning.RuntimeChoice` for this model and machine, measured
    (and cached) when there is none, it was made while busy, or the machine is busy now."""
    from model.runtime_tuning import RuntimeChoice, machine_is_busy, measure_runtime, runtime_cache_key

    key = f"{runtime_cache_key(path)}|threads={threads}"
    cached = (cache or {}).get(key)
    choice = RuntimeChoice.from_dict(cached) if cached else None
    if choice is None or choice.measured_busy or machine_is_busy():
        choice = measure_runtime(model, threads=threads)
        if cache is not None:
            cache[key] = choice.to_dict()
    return choice


class ModelControl(QObject):
    """Keeps track of the active source and asks the worker to build predictors."""

    source_changed = Signal(str)  # description for the status bar
    load_failed = Signal(str)

    def __init__(self, worker: InferenceWorker, settings: Settings, engines: EngineFactories | None,
                 default_engine: str = "") -> None:  # fmt: skip
        super().__init__()
        self.worker = worker
        self.settings = settings
        self.networks: dict[str, Path] = {}  # bundled trained networks, listed with the engines
        if engines is None:
            engines, default_engine = builtin_engines()
            self.networks = shipped_networks()
            if self.networks:
                default_engine = next(iter(self.networks))
                networks = {
                    name: (lambda n=name: self._network_factory(self.networks[n], n)())
                    for name in self.networks
                }
                engines = {**networks, **engines}
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

    def _network_factory(self, path: Path, name: str = "") -> Callable[[], object]:
        """Factory of the network in ``path`` with the device, precision and thread settings in effect now."""
        settings = self.settings
        return checkpoint_factory(
            path, self.device, settings.precision, settings.runtime_choices, name, settings.inference_threads
        )

    def use_engine(self, name: str) -> None:
        """A built-in engine or a bundled network (networks run on the chosen device)."""
        self._requested = ("engine", name)
        if name in self.networks:
            self.worker.load_engine(self._network_factory(self.networks[name], name), name, self.device)
        else:
            self.worker.load_engine(self.engines[name], name, "cpu")

    def load_checkpoint(self, path: str | Path) -> None:
        path = Path(path)
        self._requested = ("checkpoint", str(path))
        self.worker.load_engine(self._network_factory(path), f"checkpoint {path.name}", self.device)

    def set_device(self, device: str) -> bool:
        """Switch CPU/CUDA; reloads an active checkpoint. False if CUDA is unavailable."""
        if device == "cuda" and not cuda_available():
            self.load_failed.emit("CUDA is not available on this machine; staying on the CPU.")
            return False
        self.device = device
        self.settings.device = device
        self._reload_network()
        return True

    def set_precision(self, reduced: bool) -> None:
        """Reduced precision on/off for network checkpoints; reloads an active checkpoint."""
        self.settings.precision = "auto" if reduced else "fp32"
        self._reload_network()

    def _reload_network(self) -> None:
        """Rebuild the active network after a device or precision change (engines are unaffected)."""
        kind, value = self.active
        if kind == "checkpoint":
            self.load_checkpoint(value)
        elif kind == "engine" and value in self.networks:
            self.use_engine(value)

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
