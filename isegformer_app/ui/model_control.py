"""Which predictor the worker runs: a built-in engine or a loaded checkpoint, on CPU or CUDA.

The model modules are imported lazily (torch is slow to import and the app opens without it).
A checkpoint that fails to load produces one message; the previous predictor stays active.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from isegformer_app.settings import Settings
from isegformer_app.ui.worker import InferenceWorker

EngineFactories = dict[str, Callable[[], object]]
MODALITIES = ("photo", "volume")
# what building a network or an engine imports: imported once at start-up, in the worker thread
INFERENCE_STACK = ("timm", "model.build", "model.checkpoint", "model.predictor", "model.runtime_tuning",
                   "model.engines")  # fmt: skip


def preload_inference_stack(between: Callable[[], object] | None = None) -> None:
    """Import Pillow's image plugins and :data:`INFERENCE_STACK` (``isegformer_app.main``: on the GUI
    thread before the window shows; the worker does it again at its start, a no-op then, for windows
    built otherwise). ``between()`` runs after each module (a splash screen's events).

    Later, neither a model load nor an image load imports them: Pillow imports its plugins on the first
    file it cannot identify, and an image load task doing that while the worker imports timm waited on
    the interpreter with it. A module that cannot be imported is left to the engine that needs it, which
    reports the error when it is built.
    """
    from PIL import Image

    Image.init()
    for name in INFERENCE_STACK:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
        if between is not None:
            between()


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
    """Builds the network predictor (in the worker thread, where it will run); the network sees the
    image with its longer side at most :data:`model.predictor.INTERACTIVE_MAX_SIZE`, zoomed as
    :func:`model.predictor.interactive_zoom_in` says (this project's networks refine the first click).

    ``precision`` "fp32": full precision. "auto": on CUDA bf16/fp16 where supported; on the CPU the
    precision, torch thread count and tensor layout that a short measurement found fastest on this machine
    (:func:`model.runtime_tuning.measure_runtime`; ``threads`` > 0, the user's explicit setting, fixes the
    thread count), cached in ``runtime_cache`` per model file, machine and thread setting, and measured
    again when it was made while the cores were busy or they are busy now.
    """

    def build() -> object:
        import torch

        from model.checkpoint import CheckpointError, load_checkpoint
        from model.predictor import fast_autocast, interactive_predictor

        try:
            model = load_checkpoint(path, device=device)
        except CheckpointError as exc:
            raise RuntimeError(str(exc)) from exc
        except (OSError, EOFError, ValueError, KeyError) as exc:
            raise RuntimeError(f"cannot load {path.name} as an iSegFormer/RITM checkpoint ({exc})") from exc
        autocast, channels_last = None, False
        if precision != "auto":
            pass
        elif torch.device(device).type != "cpu":
            autocast = fast_autocast(device)
        else:
            choice = _measured_choice(model, path, runtime_cache, threads)
            torch.set_num_threads(choice.threads)
            autocast, channels_last = choice.precision, choice.channels_last
        return interactive_predictor(
            model, device, name=name or path.name, autocast=autocast, channels_last=channels_last
        )

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
    """Keeps track of the active source and asks the worker to build predictors.

    Each kind of data ("photo", "volume") has its default engine, measured when the network was shipped
    (``resources.modality_defaults``: the bundled network where it beat the classical engine on that
    modality's evaluation sets). Until the user picks an engine or a checkpoint, the active engine follows
    the shown kind of data; a pick (``choose_engine``, remembered in the settings) holds for every kind
    until ``follow_defaults``.
    """

    source_changed = Signal(str)  # description for the status bar
    load_failed = Signal(str)

    def __init__(self, worker: InferenceWorker, settings: Settings, engines: EngineFactories | None,
                 default_engine: str = "") -> None:  # fmt: skip
        super().__init__()
        self.worker = worker
        self.settings = settings
        self.networks: dict[str, Path] = {}  # bundled trained networks, listed with the engines
        defaults: dict[str, tuple[str, str]] = {}
        if engines is None:
            from resources import modality_defaults

            engines, default_engine = builtin_engines()
            self.networks = shipped_networks()
            if self.networks:
                networks = {
                    name: (lambda n=name: self._network_factory(self.networks[n], n)())
                    for name in self.networks
                }
                engines = {**networks, **engines}
            defaults = modality_defaults()
        self.engines = engines
        fallback = default_engine or next(iter(engines), "")
        self.defaults: dict[str, tuple[str, str]] = {
            modality: defaults[modality] if defaults.get(modality, ("",))[0] in engines else (fallback, "")
            for modality in MODALITIES
        }
        self.modality = "photo"
        self.active: tuple[str, str] = ("", "")  # ("engine", name) | ("checkpoint", path)
        self._requested: tuple[str, str] = ("", "")
        self.device = settings.device if settings.device in ("cpu", "cuda") else "cpu"
        if self.device == "cuda" and not cuda_available():
            self.device = "cpu"
        worker.engine_ready.connect(self._on_ready)
        worker.failed.connect(self._on_failed)

    @property
    def chosen_engine(self) -> str:
        """The engine the user picked ("" while the engine follows the kind of data)."""
        return self.settings.engine if self.settings.engine in self.engines else ""

    @property
    def default_engine(self) -> str:
        """The default engine of the kind of data shown now."""
        return self.defaults[self.modality][0]

    def describe_default(self, modality: str) -> str:
        """'isegformer-lite0 (why)' for the Model menu and the status bar's tooltip."""
        name, why = self.defaults[modality]
        return f"{name} ({why})" if why else name

    def start(self) -> None:
        """Start with the picked engine or the photo default; reload the last checkpoint if that was
        active at exit."""
        name = self.chosen_engine or self.default_engine
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

    def choose_engine(self, name: str) -> None:
        """The user's pick: it holds for photos and volumes alike (and across sessions)."""
        self.settings.engine = name
        self.use_engine(name)

    def follow_defaults(self) -> None:
        """Back to each kind of data's default engine."""
        self.settings.engine = ""
        self.settings.model_source = "engine"
        self.use_engine(self.default_engine)

    def set_modality(self, modality: str) -> None:
        """The shown kind of data changed: switch to its default unless the user picked an engine or
        loaded a checkpoint."""
        if modality not in MODALITIES or modality == self.modality:
            return
        self.modality = modality
        if self.chosen_engine or self._requested[0] == "checkpoint":
            return
        if self._requested != ("engine", self.default_engine):
            self.use_engine(self.default_engine)

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
        if kind == "checkpoint":
            self.settings.last_checkpoint = value
        if kind:
            self.settings.model_source = kind
        following = kind == "engine" and not self.chosen_engine and value == self.default_engine
        self.source_changed.emit(f"{name} · {device}" + (f" · {self.modality} default" if following else ""))

    def _on_failed(self, what: str, message: str) -> None:
        if what != "engine":
            return
        self._requested = self.active
        self.load_failed.emit(f"Could not load {message}\nThe previous model stays active.")
