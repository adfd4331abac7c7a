"""Progress reporting and cancellation for long loads.

A loader takes ``progress: ProgressCallback | None`` (called with a fraction in [0, 1] and a message)
and ``cancel: CancelFlag | None`` (anything with ``is_set() -> bool``, e.g. ``threading.Event``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .errors import LoadCancelled

ProgressCallback = Callable[[float, str], None]


class CancelFlag(Protocol):
    """A cancel request; ``threading.Event`` satisfies it."""

    def is_set(self) -> bool: ...


class LoadMonitor:
    """Reports progress for the sub-range [start, end] of a load and raises ``LoadCancelled`` on request."""

    def __init__(self, progress: ProgressCallback | None = None, cancel: CancelFlag | None = None,
                 start: float = 0.0, end: float = 1.0) -> None:
        self.progress = progress
        self.cancel = cancel
        self.start = start
        self.end = end

    def check(self) -> None:
        """Raise ``LoadCancelled`` if cancellation was requested."""
        if self.cancel is not None and self.cancel.is_set():
            raise LoadCancelled("loading was cancelled")

    def report(self, fraction: float, message: str) -> None:
        """Check for cancellation, then report ``fraction`` (of this sub-range) with ``message``."""
        self.check()
        if self.progress is not None:
            clamped = min(max(fraction, 0.0), 1.0)
            self.progress(self.start + (self.end - self.start) * clamped, message)

    def sub(self, start: float, end: float) -> LoadMonitor:
        """A monitor for the part [start, end] (fractions of this monitor's range)."""
        span = self.end - self.start
        return LoadMonitor(self.progress, self.cancel, self.start + span * start, self.start + span * end)

    def progress_callback(self) -> ProgressCallback | None:
        """A plain callback that maps [0, 1] onto this monitor's range (``None`` without a callback)."""
        if self.progress is None:
            return None
        callback, start, span = self.progress, self.start, self.end - self.start
        return lambda fraction, message: callback(start + span * min(max(fraction, 0.0), 1.0), message)
