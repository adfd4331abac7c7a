"""Pick the fastest precision, CPU thread count and tensor layout for a network by measuring it here.

CPU flags alone mislead: bf16 pays off only where the CPU multiplies it natively, and a 2-thread
forward on 2 cores that another process keeps busy (a user training in the background) runs 10-15x
slower than a 1-thread one. :func:`measure_runtime` times a few forwards of each candidate at the
app's working size; the app caches the choice per model and machine (:func:`runtime_cache_key`) and
measures again when the model changes or the cores were busy when the choice was made.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from model.modeling.interactive import InteractiveModel

MEASURE_SIZE = 400  # px: the predictor's usual working size after zoom-in
BUSY_LOAD_FRACTION = 0.75  # 1-min load average >= this x cores: the machine is busy


@dataclass(frozen=True)
class RuntimeChoice:
    precision: str | None  # None (float32) or "bf16"
    threads: int
    forward_ms: float
    measured_busy: bool = False
    channels_last: bool = False  # NHWC tensors (oneDNN's channels-last convolutions)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RuntimeChoice:
        return cls(
            precision=data.get("precision"),
            threads=int(data["threads"]),
            forward_ms=float(data["forward_ms"]),
            measured_busy=bool(data.get("measured_busy", False)),
            channels_last=bool(data.get("channels_last", False)),
        )


def machine_is_busy(cores: int | None = None) -> bool:
    """Whether other work keeps this machine's cores busy (1-minute load average)."""
    cores = cores or os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):
        return False
    return load >= BUSY_LOAD_FRACTION * cores


def runtime_cache_key(path: str | os.PathLike) -> str:
    """Identifies a model file and this machine: size, modification time, name, cores, torch version."""
    path = Path(path)
    try:
        stat = path.stat()
        ident = f"{path.resolve()}|{stat.st_size}|{int(stat.st_mtime)}"
    except OSError:
        ident = str(path)
    ident += f"|{os.cpu_count()}|{torch.__version__}"
    return hashlib.sha1(ident.encode()).hexdigest()[:16]


def _time_forward(
    model: InteractiveModel, precision: str | None, threads: int, repeats: int, channels_last: bool = False
) -> float:
    size = MEASURE_SIZE
    image = torch.rand(1, model.input_channels, size, size)
    points = torch.tensor([[[size / 2, size / 2, 0.0], [-1.0, -1.0, -1.0]]])
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        image = image.contiguous(memory_format=torch.channels_last)
    try:
        with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
            model(image, points)  # warm-up (allocations, kernel selection)
            best = float("inf")
            for _ in range(repeats):
                started = time.perf_counter()
                model(image, points)
                best = min(best, time.perf_counter() - started)
    finally:
        torch.set_num_threads(previous)
        if channels_last:
            model.to(memory_format=torch.contiguous_format)
    return best * 1000.0


def candidate_settings(cores: int | None = None, threads: int = 0) -> list[tuple[str | None, int]]:
    """(precision, threads) pairs worth measuring on this CPU; ``threads`` > 0 fixes the thread count
    (the user's explicit setting), else 1 and all of torch's threads are tried."""
    cores = cores or os.cpu_count() or 1
    counts = [threads] if threads > 0 else sorted({1, max(1, min(cores, torch.get_num_threads()))})
    precisions: list[str | None] = [None]
    from model.predictor import cpu_has_native_bf16

    if cpu_has_native_bf16():
        precisions.append("bf16")
    return [(p, t) for p in precisions for t in counts]


def measure_runtime(
    model: InteractiveModel, repeats: int = 2, cores: int | None = None, threads: int = 0
) -> RuntimeChoice:
    """The fastest (precision, threads) for ``model`` on the CPU, by timing each candidate
    (``threads`` > 0: only that thread count), then whether channels-last tensors make the fastest one
    faster still (2-3x for the EfficientNet-Lite default network here, about even for MiT)."""
    model = model.eval()
    timings = {
        (precision, count): _time_forward(model, precision, count, repeats)
        for precision, count in candidate_settings(cores, threads)
    }
    (precision, threads), ms = min(timings.items(), key=lambda item: item[1])
    nhwc_ms = _time_forward(model, precision, threads, repeats, channels_last=True)
    return RuntimeChoice(
        precision, threads, min(ms, nhwc_ms), measured_busy=machine_is_busy(cores), channels_last=nhwc_ms < ms
    )
