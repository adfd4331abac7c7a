"""One object's annotation on one slice of one view (Qt-free), and the undoable commands on it.

A :class:`SliceSession` holds what the user did to object ``value`` on slice ``(axis, index)``: clicks,
the prediction cache (probability per click list), brush corrections, and its own undo history.
Its mask is written *live* into the label volume by the document (see ``VolumeDocument._sync``):

* ``base``: the label slice when the session started; ``written``: the pixels the session claims now.
* mask = ``prob >= threshold`` once predicted (while clicks wait for a prediction the last written mask
  stays), else the object's own pixels in ``base``; brush +1/-1 corrections are applied last.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from isegformer_app.state.document import ClickKey, click_key
from isegformer_app.state.history import History
from model.clicks import Click

SessionKey = tuple[int, str, int]  # (label value, axis, slice index)
CACHE_PER_SESSION = 16  # predicted click lists kept per session (undo/redo without recomputing)


@dataclass
class SliceSession:
    """``base`` HxW label slice (uint8/uint16); ``written`` / ``brush`` HxW bool / int8."""

    value: int
    axis: str
    index: int
    base: np.ndarray
    written: np.ndarray
    clicks: list[Click] = field(default_factory=list)
    prob: np.ndarray | None = None
    brush: np.ndarray | None = None
    prob_cache: OrderedDict[ClickKey, np.ndarray] = field(default_factory=OrderedDict)
    init_prev: np.ndarray | None = None  # previous mask of the first prediction: propagation source or the
    # object's pixels already on the slice (import, finished object being corrected)
    history: History = field(default_factory=History)

    def __post_init__(self) -> None:
        if self.brush is None:
            self.brush = np.zeros(self.base.shape, np.int8)

    @property
    def key(self) -> SessionKey:
        return self.value, self.axis, self.index

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.base.shape[0]), int(self.base.shape[1])

    def has_content(self) -> bool:
        return bool(self.clicks) or bool(self.brush.any())

    def restore_prob(self) -> None:
        self.prob = self.prob_cache.get(click_key(self.clicks)) if self.clicks else None

    def needs_prediction(self) -> bool:
        return bool(self.clicks) and click_key(self.clicks) not in self.prob_cache

    def prev_mask(self) -> np.ndarray:
        """Probability of the longest predicted prefix of the clicks, else ``init_prev``, else zeros."""
        for n in range(len(self.clicks) - 1, 0, -1):
            found = self.prob_cache.get(click_key(self.clicks[:n]))
            if found is not None:
                return found
        if self.init_prev is not None:
            return self.init_prev
        return np.zeros(self.shape, np.float32)

    def store(self, clicks: list[Click], prob: np.ndarray) -> bool:
        """Cache a prediction; True if it is for the current clicks (``prob`` updated)."""
        if prob.shape != self.shape:
            raise ValueError(f"prediction shape {prob.shape} != slice {self.shape}")
        key = click_key(clicks)
        self.prob_cache[key] = prob.astype(np.float32, copy=False)
        self.prob_cache.move_to_end(key)
        while len(self.prob_cache) > CACHE_PER_SESSION:
            self.prob_cache.popitem(last=False)
        if key == click_key(self.clicks):
            self.prob = self.prob_cache[key]
            return True
        return False

    def mask(self, threshold: float) -> np.ndarray:
        """HxW bool mask of the object on this slice (see the module docstring)."""
        if self.prob is not None:
            mask = self.prob >= threshold
        elif self.clicks:
            mask = self.written.copy()
        else:
            mask = self.base == self.value
        return (mask | (self.brush > 0)) & ~(self.brush < 0)


class _Snapshot:
    def __init__(self, s: SliceSession) -> None:
        self.clicks, self.prob, self.brush = list(s.clicks), s.prob, s.brush.copy()
        self.cache, self.init_prev = OrderedDict(s.prob_cache), s.init_prev

    def restore(self, s: SliceSession) -> None:
        s.clicks, s.prob, s.brush = list(self.clicks), self.prob, self.brush.copy()
        s.prob_cache, s.init_prev = OrderedDict(self.cache), self.init_prev


class AddClick:
    text = "Click"

    def __init__(self, click: Click) -> None:
        self.click = click

    def do(self, s: SliceSession) -> None:
        s.clicks.append(self.click)
        s.restore_prob()

    def undo(self, s: SliceSession) -> None:
        s.clicks.pop()
        s.restore_prob()


class ResetSlice:
    """Drop the session's clicks, prediction and corrections (the object's slice goes back to ``base``)."""

    text = "Reset clicks"

    def do(self, s: SliceSession) -> None:
        self.before = _Snapshot(s)
        s.clicks, s.prob, s.init_prev = [], None, None
        s.brush = np.zeros(s.shape, np.int8)
        s.prob_cache = OrderedDict()

    def undo(self, s: SliceSession) -> None:
        self.before.restore(s)


class SetPropagated:
    """Replace the session by a propagation result: automatic clicks and their probability."""

    text = "Propagate"

    def __init__(self, clicks: list[Click], prob: np.ndarray, source_mask: np.ndarray) -> None:
        self.clicks, self.prob, self.source = list(clicks), prob.astype(np.float32), source_mask

    def do(self, s: SliceSession) -> None:
        self.before = _Snapshot(s)
        s.clicks, s.brush = list(self.clicks), np.zeros(s.shape, np.int8)
        s.prob_cache = OrderedDict({click_key(self.clicks): self.prob})
        s.prob, s.init_prev = self.prob, self.source.astype(np.float32)

    def undo(self, s: SliceSession) -> None:
        self.before.restore(s)


class SessionBrush:
    """Paint (+1) or erase (-1) ``area`` in the session's corrections."""

    def __init__(self, area: np.ndarray, erase: bool) -> None:
        ys, xs = np.nonzero(area)
        self.box = (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1)
        y0, y1, x0, x1 = self.box
        self.area, self.erase = area[y0:y1, x0:x1].copy(), erase
        self.text = "Eraser" if erase else "Brush"

    def do(self, s: SliceSession) -> None:
        y0, y1, x0, x1 = self.box
        crop = s.brush[y0:y1, x0:x1]
        self.before = crop.copy()
        crop[self.area] = -1 if self.erase else 1

    def undo(self, s: SliceSession) -> None:
        y0, y1, x0, x1 = self.box
        s.brush[y0:y1, x0:x1] = self.before
