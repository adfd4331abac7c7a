"""Checkpoints in the original RITM / iSegFormer format, read without executing pickled code.

The original code saves ``torch.save({'state_dict': net.state_dict(), 'config': net._config})``
where ``config = {'class': 'isegm.model....Model', 'params': {name: {'type', 'value', 'specified'}}}``.
The pickle references classes of the ``isegm`` package (loss objects inside head parameters), so a
plain ``torch.load`` would import (and run) foreign code. :class:`_RestrictedUnpickler` resolves only
tensor-rebuilding functions and a few containers; every other global becomes an inert
:class:`ForeignObject` that records what it was and can be written back unchanged.

Architecture families register an :class:`ArchitectureAdapter` in :mod:`model.build`; the adapter
builds our model from the original parameters and maps state-dict keys in both directions.
"""

from __future__ import annotations

import datetime as _dt
import io
import logging
import os
import pickle
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model.atomic_io import atomic_write_bytes
from model.modeling.interactive import InteractiveModel
from model.modeling.original_format import (  # noqa: F401  (re-exported: the checkpoint API)
    ENCODING_KEYS,
    IGNORABLE_ORIGINAL_PREFIXES,
    ArchitectureAdapter,
    CheckpointError,
    ForeignObject,
    PrefixMap,
    encoding_from_params,
    encoding_to_params,
    foreign_class,
)

log = logging.getLogger(__name__)

META_KEY = "isegformer_meta"


# --------------------------------------------------------------------------------------------- reading


def _allowed_globals() -> dict[tuple[str, str], Any]:
    import torch._utils as tu

    allowed: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): OrderedDict,
        ("builtins", "set"): set,
        ("__builtin__", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "slice"): slice,
        ("torch", "Size"): torch.Size,
        ("torch._utils", "_rebuild_tensor_v2"): tu._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): tu._rebuild_parameter,
        ("torch", "device"): torch.device,
    }
    for name in ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool"):
        allowed[("torch", f"{name}Storage")] = getattr(torch, f"{name}Storage")
    for dtype_name in ("float32", "float16", "bfloat16", "float64", "int64", "int32", "uint8", "bool"):
        allowed[("torch", dtype_name)] = getattr(torch, dtype_name)
    return allowed


class _FrozenCallable:
    """An allowed function as the unpickler hands it out: callable, but no attribute can be set (a
    pickle's BUILD on the real function would change it for every later load of the process)."""

    __slots__ = ("_function",)

    def __init__(self, function: Any) -> None:
        object.__setattr__(self, "_function", function)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._function(*args, **kwargs)

    def __setattr__(self, name: str, value: Any) -> None:
        raise pickle.UnpicklingError(f"the checkpoint tries to modify {self._function.__qualname__}")

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError(f"the checkpoint tries to modify {self._function.__qualname__}")

    def __reduce__(self) -> Any:
        raise TypeError("not picklable")


def _handed_out(value: Any) -> Any:
    return _FrozenCallable(value) if callable(value) and not isinstance(value, type) else value


def _class_attributes(allowed: dict[tuple[str, str], Any]) -> dict[type, dict[str, Any]]:
    """The attributes of the allowed Python classes (compared after each load: a pickle can set
    attributes on a class through BUILD's slot state)."""
    return {v: dict(vars(v)) for v in allowed.values() if isinstance(v, type)}


def _restore_class_attributes(snapshot: dict[type, dict[str, Any]]) -> list[str]:
    """Undo any change to the allowed classes since ``snapshot``; returns what had changed."""
    changed = []
    for cls, before in snapshot.items():
        now = vars(cls)
        for key in [k for k in now if k not in before or now[k] is not before[k]]:
            changed.append(f"{cls.__qualname__}.{key}")
            try:
                if key in before:
                    setattr(cls, key, before[key])
                else:
                    delattr(cls, key)
            except (AttributeError, TypeError):
                pass
    return changed


class _RestrictedUnpickler(pickle.Unpickler):
    _allowed = {key: _handed_out(value) for key, value in _allowed_globals().items()}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._allowed:
            return self._allowed[(module, name)]
        return foreign_class(module, name)


# Entries of a ``torch.save`` zip archive (under its one top folder); anything else, e.g. TorchScript's
# ``code/`` and ``constants.pkl``, means a file that is not a plain checkpoint.
_ZIP_ENTRIES = frozenset(
    {"data.pkl", "version", "byteorder", ".format_version", ".storage_alignment", ".data/version",
     ".data/serialization_id"}
)  # fmt: skip


_LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")  # torch's legacy-format magic number


def _is_legacy_torch_pickle(head: bytes) -> bool:
    """True when ``head`` starts like a legacy ``torch.save`` file: a pickle PROTO opcode, then (after an
    optional protocol-4 frame header) the pickled magic number. Anything else never reaches the unpickler,
    so random bytes cannot ask it for huge allocations."""
    if len(head) < 2 or head[0] != 0x80:
        return False
    body = head[2:]
    if body[:1] == b"\x95":  # FRAME opcode + 8-byte length (protocol >= 4)
        body = body[9:]
    return body[:2] == b"\x8a\n" and body[2:12] == _LEGACY_MAGIC


def check_container(path: str) -> None:
    """Refuse files that a torch loader would hand to code-running readers before our restricted
    unpickler sees them: TorchScript archives (``torch.load`` passes them to ``torch.jit.load``),
    zip archives with entries other than tensor data, and the legacy tar format."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    if len(head) >= 262 and head[257:262] == b"ustar":
        raise CheckpointError(f"{path}: a tar archive (legacy torch format) is not accepted as a checkpoint")
    if not head.startswith(b"PK"):
        if not _is_legacy_torch_pickle(head):
            raise CheckpointError(
                f"{path}: not a readable PyTorch checkpoint (neither a torch.save zip archive "
                "nor a legacy torch.save pickle)"
            )
        return  # a plain (legacy) pickle: read by the restricted unpickler
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({exc})") from exc
    prefixes = {name.split("/", 1)[0] for name in names}
    if len(prefixes) != 1:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint archive (several top folders)")
    for name in names:
        inner = name.split("/", 1)[1] if "/" in name else ""
        if inner in _ZIP_ENTRIES or (inner.startswith("data/") and inner[5:].isdigit()):
            continue
        if inner.startswith("code/") or inner == "constants.pkl":
            raise CheckpointError(
                f"{path}: a TorchScript archive, which can run code when loaded; refused. "
                "Checkpoints must be plain torch.save files of the RITM/iSegFormer format."
            )
        raise CheckpointError(f"{path}: unexpected entry {name!r} in the checkpoint archive; refused")


class _RestrictedPickleModule:
    """The ``pickle_module`` handed to ``torch.load``: same API, restricted ``Unpickler``."""

    Unpickler = _RestrictedUnpickler
    Pickler = pickle.Pickler
    load = staticmethod(lambda f, **kw: _RestrictedUnpickler(f, **kw).load())
    __name__ = "isegformer_restricted_pickle"


@dataclass
class OriginalCheckpoint:
    """The contents of a checkpoint file: original class name, parameters and weights."""

    path: str
    class_name: str
    params: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, Any] = field(default_factory=dict)


def _config_params(config: dict[str, Any], path: str) -> dict[str, Any]:
    entries = config.get("params", {})
    if not isinstance(entries, dict):
        raise CheckpointError(f"{path}: the config's 'params' is not a mapping ({type(entries).__name__})")
    params = {}
    for name, entry in entries.items():
        if not isinstance(entry, dict) or "value" not in entry:
            raise CheckpointError(f"{path}: parameter {name!r} of the config is not in the original format")
        params[name] = entry["value"]
    return params


def read_checkpoint(path: str | os.PathLike) -> OriginalCheckpoint:
    """Read an original-format checkpoint without importing foreign code.

    Raises :class:`CheckpointError` for a missing, truncated or non-checkpoint file.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    check_container(path)
    snapshot = _class_attributes(_allowed_globals())
    changed: list[str] = []
    try:
        try:
            raw = torch.load(
                path, map_location="cpu", weights_only=False, pickle_module=_RestrictedPickleModule
            )
        finally:
            changed = _restore_class_attributes(snapshot)  # also when the load failed half-way
        if changed:
            raise pickle.UnpicklingError(f"the checkpoint tries to modify {', '.join(changed[:3])}")
    except (zipfile.BadZipFile, pickle.UnpicklingError, EOFError, RuntimeError, ValueError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({exc})") from exc
    except Exception as exc:  # any other failure of a foreign file is still the file's fault
        reason = f"{type(exc).__name__}: {exc}"
        raise CheckpointError(f"{path}: could not be read as a checkpoint ({reason})") from exc
    if isinstance(raw, list):
        raise CheckpointError(f"{path}: holds a list of models (click-count ensembles are not supported)")
    if not isinstance(raw, dict) or "state_dict" not in raw or "config" not in raw:
        keys = sorted(map(str, raw))[:8] if isinstance(raw, dict) else type(raw).__name__
        raise CheckpointError(
            f"{path}: not an interactive-segmentation checkpoint: expected keys 'state_dict' and 'config' "
            f"(RITM/iSegFormer format), found {keys}"
        )
    config = raw["config"]
    if not isinstance(config, dict) or not isinstance(config.get("class"), str):
        raise CheckpointError(f"{path}: 'config' has no model class name")
    state_dict = raw["state_dict"]
    if not isinstance(state_dict, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()):
        raise CheckpointError(f"{path}: 'state_dict' is not a mapping of names to tensors")
    metadata = raw.get(META_KEY)
    if metadata is not None and not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: '{META_KEY}' is not a mapping (found {type(metadata).__name__})")
    return OriginalCheckpoint(
        path=path,
        class_name=config["class"],
        params=_config_params(config, path),
        state_dict=dict(state_dict),
        metadata=dict(metadata or {}),
    )


# --------------------------------------------------------------------------------------------- adapters


# The largest integer a config may hold, relative to its weights: no size a file's tensors can hold is
# much beyond their largest dimension; a generous floor keeps image sizes, radii and the like (a few hundred).
CONFIG_INT_FACTOR = 4
CONFIG_INT_FLOOR = 4096


def _config_ints(value: Any, where: str = "") -> list[tuple[str, int]]:
    """Every integer of a (nested) config value, with where it sits (``backbone_params.embed_dims``)."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [(where, value)]
    if isinstance(value, dict):
        return [hit for k, v in value.items() for hit in _config_ints(v, f"{where}.{k}" if where else str(k))]
    if isinstance(value, (list, tuple)):
        return [hit for i, v in enumerate(value) for hit in _config_ints(v, f"{where}[{i}]")]
    return []


def check_config_bounds(ckpt: OriginalCheckpoint) -> None:
    """Refuse a config holding an integer far beyond anything its weights could hold (a width of 20000, a
    million layers): the model it asks for would take gigabytes and minutes before any shape is compared."""
    largest = max((max(t.shape, default=1) for t in ckpt.state_dict.values()), default=1)
    bound = max(CONFIG_INT_FACTOR * max(largest, len(ckpt.state_dict)), CONFIG_INT_FLOOR)
    for where, value in _config_ints(ckpt.params):
        if abs(value) > bound:
            raise CheckpointError(f"{ckpt.path}: config value {where} = {value} is out of bounds (the "
                                  f"checkpoint's largest weight dimension is {largest})")  # fmt: skip


def _build(adapter: ArchitectureAdapter, ckpt: OriginalCheckpoint) -> InteractiveModel:
    """``adapter.build`` with its failures as :class:`CheckpointError` (naming the file)."""
    try:
        return adapter.build(ckpt.params, ckpt.state_dict)
    except CheckpointError as exc:
        if ckpt.path in str(exc):
            raise
        raise CheckpointError(f"{ckpt.path}: {str(exc).lstrip(': ')}") from exc
    except (KeyError, TypeError, ValueError, AssertionError, IndexError, RuntimeError, OverflowError,
            ZeroDivisionError, NotImplementedError) as exc:  # fmt: skip
        raise CheckpointError(f"{ckpt.path}: cannot build {ckpt.class_name} from its config ({exc})") from exc


def check_weights_fit(model: nn.Module, ours: dict[str, torch.Tensor], path: str) -> list[str]:
    """Raise :class:`CheckpointError` unless ``ours`` has every weight of ``model`` with its shape and
    nothing else but ignorable modules; returns the ignorable surplus. ``model`` may live on the meta
    device (nothing allocated): only names and shapes are compared."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    surplus = [k for k in ours if k not in expected]
    bad = [k for k in surplus if not k.startswith(IGNORABLE_ORIGINAL_PREFIXES)]
    if bad:
        raise CheckpointError(
            f"{path}: the checkpoint does not match its declared architecture ({model.arch}): "
            f"{len(bad)} unexpected weights, e.g. {sorted(bad)[:3]}"
        )
    missing = sorted(set(expected) - set(ours))
    if missing:
        raise CheckpointError(
            f"{path}: the checkpoint does not match its declared architecture ({model.arch}): "
            f"{len(missing)} weights missing, e.g. {missing[:3]}"
        )
    for key, shape in expected.items():
        if tuple(ours[key].shape) != shape:
            raise CheckpointError(
                f"{path}: weight {key!r} has shape {tuple(ours[key].shape)} but the declared "
                f"architecture ({model.arch}) needs {shape}"
            )
    return surplus


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> InteractiveModel:
    """Build the model an original-format checkpoint describes and load its weights (strictly).

    Nothing is allocated before the config is known to fit the weights: its integers are bounded by the
    tensors' sizes, and the model is first built on the meta device (no memory) and its weight names and
    shapes compared with the file's. Weights of the original that our model has no place for are allowed
    only for modules the original keeps unused (``maps_transform.*`` of naive-concat models and the like);
    any other surplus, missing or mis-shaped weight raises :class:`CheckpointError`.
    """
    from model.build import adapter_for

    ckpt = read_checkpoint(path)
    adapter = adapter_for(ckpt.class_name)
    if adapter is None:
        raise CheckpointError(f"{ckpt.path}: unsupported model class {ckpt.class_name!r}")
    check_config_bounds(ckpt)
    ours = adapter.to_ours(ckpt.state_dict)
    with torch.device("meta"):
        skeleton = _build(adapter, ckpt)
    check_weights_fit(skeleton, ours, ckpt.path)
    del skeleton
    model = _build(adapter, ckpt)
    surplus = check_weights_fit(model, ours, ckpt.path)
    model.load_state_dict({k: ours[k] for k in model.state_dict()}, strict=True)
    if surplus:
        shown = ", ".join(sorted(surplus)[:4])
        log.info("%s: ignored %d unused weights (%s)", ckpt.path, len(surplus), shown)
    check_finite(model, ckpt.path)
    model.original_class = ckpt.class_name
    model.original_params = ckpt.params
    model.metadata = ckpt.metadata
    return model.to(device).eval()


def check_finite(model: InteractiveModel, path: str) -> None:
    """Refuse weights that hold NaN/inf, and a model whose output on a small input is not finite
    (it would silently give empty masks)."""
    bad = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(
            f"{path}: {len(bad)} weight tensors hold NaN or infinite values (e.g. {bad[0]}); "
            "the checkpoint is broken (diverged training or a damaged file)"
        )
    was_training = model.training
    model.eval()
    size = 64
    image = torch.full((1, model.input_channels, size, size), 0.5)
    points = torch.tensor([[[size / 2, size / 2, 0.0], [-1.0, -1.0, -1.0]]])
    try:
        with torch.no_grad():
            logits = model(image, points)["instances"]
    except Exception as exc:  # noqa: BLE001 - a model that cannot run is the file's fault
        reason = f"{type(exc).__name__}: {exc}"
        raise CheckpointError(f"{path}: the model fails on a test input ({reason})") from exc
    finally:
        model.train(was_training)
    if not torch.isfinite(logits).all():
        raise CheckpointError(f"{path}: the model's output on a test input is not finite (broken checkpoint)")


# --------------------------------------------------------------------------------------------- writing


class _OriginalPickler(pickle._Pickler):  # type: ignore[name-defined]
    """Python pickler that writes :class:`ForeignObject` classes back under their original names."""

    def save_global(self, obj: Any, name: str | None = None) -> None:
        if isinstance(obj, type) and issubclass(obj, ForeignObject) and obj is not ForeignObject:
            self.write(pickle.GLOBAL + f"{obj.foreign_module}\n{obj.foreign_name}\n".encode())
            self.memoize(obj)
            return
        super().save_global(obj, name)

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, ForeignObject):
            return (obj.__class__, obj.args, obj.state)
        return NotImplemented


class _OriginalPickleModule:
    Pickler = _OriginalPickler
    Unpickler = pickle.Unpickler
    __name__ = "isegformer_original_pickle"


def _config_entry(value: Any) -> dict[str, Any]:
    if isinstance(value, type):
        return {"type": "class", "value": f"{value.__module__}.{value.__qualname__}", "specified": True}
    return {"type": "builtin", "value": value, "specified": True}


def save_checkpoint(
    model: InteractiveModel,
    path: str | os.PathLike,
    metadata: dict[str, Any] | None = None,
    half: bool = False,
) -> None:
    """Write ``model`` in the original format (loadable by the original code) plus our metadata;
    ``half`` stores floating-point tensors as float16 (half the size; loading casts them back).

    The file is written to a temporary file and renamed, so an interrupted save never leaves a
    truncated checkpoint behind.
    """
    from model.build import adapter_for

    class_name = getattr(model, "original_class", None)
    adapter = adapter_for(class_name) if class_name else None
    if adapter is None:
        raise CheckpointError(f"{path}: model {model.arch} has no original-format adapter")
    params = adapter.original_params(model)
    config = {"class": class_name, "params": {k: _config_entry(v) for k, v in params.items()}}
    state = OrderedDict(
        (k, v.detach().cpu().half() if half and v.is_floating_point() else v.detach().cpu())
        for k, v in adapter.to_original(model.state_dict()).items()
    )
    meta = {
        "arch": model.arch,
        "input_channels": model.input_channels,
        "saved": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **(metadata or {}),
    }
    payload = {"state_dict": state, "config": config, META_KEY: meta}
    buffer = io.BytesIO()
    torch.save(payload, buffer, pickle_module=_OriginalPickleModule)
    atomic_write_bytes(Path(path), buffer.getvalue())


