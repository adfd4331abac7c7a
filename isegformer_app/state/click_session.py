"""The click session of one object on one 2-D plane (Qt-free), shared by images and volume slices.

A :class:`ClickSession` holds what the user did to the object being edited: the clicks, the prediction
of each click list (a :class:`PrefixCache` of :class:`~model.prediction.Prediction`: the probability
and the predictor state the next click continues from, the app's one cache of either), brush
corrections and the previous mask of the first prediction. Its commands (:class:`AddClick`,
:class:`ResetClicks`, :class:`BrushCorrection`, :class:`SetPropagated`) are defined here once. An image
:class:`~isegformer_app.state.document.Document` has one session for its current object; a
:class:`~isegformer_app.state.volume_document.VolumeDocument` has one per (object, axis, slice).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import cv2
import numpy as np

from model.clicks import Click
from model.prediction import Prediction, PredictionState
from model.threshold import probability_mask

ClickKey = tuple[tuple[float, float, bool], ...]
T = TypeVar("T")


def click_key(clicks: Sequence[Click]) -> ClickKey:
    """The hashable identity of a click list (position and sign of each click, in order)."""
    return tuple((c.y, c.x, c.is_positive) for c in clicks)


def stroke_mask(shape: tuple[int, int], points: Sequence[tuple[float, float]], radius: float) -> np.ndarray:
    """HxW bool mask of a brush stroke through ``points`` ((y, x) pixels) of the given radius."""
    canvas = np.zeros(shape, np.uint8)
    r = max(1, round(radius))
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    dense = [pts[:1]]
    for a, b in zip(pts[:-1], pts[1:], strict=True):
        steps = max(1, int(np.ceil(np.abs(b - a).max())))
        dense.append(a + (b - a) * (np.arange(1, steps + 1)[:, None] / steps))
    for y, x in np.rint(np.concatenate(dense)).astype(int):
        cv2.circle(canvas, (int(x), int(y)), r, 1, thickness=-1)
    return canvas.astype(bool)


class PrefixCache(Generic[T]):
    """Values keyed by click lists, least recently stored dropped first, bounded by count and bytes.

    A session's predictions: :meth:`longest_prefix` finds what an undone, redone or extended click list
    can continue from.
    """

    def __init__(self, max_items: int, max_bytes: int | None = None,
                 nbytes: Callable[[T], int] = lambda v: int(getattr(v, "nbytes", 0))) -> None:  # fmt: skip
        self.max_items, self.max_bytes, self._nbytes = max_items, max_bytes, nbytes
        self._items: OrderedDict[ClickKey, T] = OrderedDict()
        self._held = 0

    def __contains__(self, key: ClickKey) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: ClickKey) -> T | None:
        return self._items.get(key)

    def put(self, key: ClickKey, value: T) -> None:
        """Store ``value``; older entries go while over a bound (the newest one always stays)."""
        old = self._items.pop(key, None)
        if old is not None:
            self._held -= self._nbytes(old)
        self._items[key] = value
        self._held += self._nbytes(value)
        while len(self._items) > 1 and (
            len(self._items) > self.max_items or (self.max_bytes is not None and self._held > self.max_bytes)
        ):
            self._held -= self._nbytes(self._items.popitem(last=False)[1])

    def longest_prefix(self, key: ClickKey) -> tuple[ClickKey, T] | None:
        """The entry of the longest proper prefix of ``key`` (at least one click), or None."""
        for n in range(len(key) - 1, 0, -1):
            if key[:n] in self._items:
                return key[:n], self._items[key[:n]]
        return None

    def values(self) -> list[T]:
        return list(self._items.values())

    def clear(self) -> None:
        self._items.clear()
        self._held = 0

    def copy(self) -> PrefixCache[T]:
        out = PrefixCache(self.max_items, self.max_bytes, self._nbytes)
        out._items, out._held = OrderedDict(self._items), self._held
        return out


SESSION_CACHE_ITEMS = 64  # predicted click lists kept per session (undo/redo without recomputing) ...
SESSION_CACHE_BYTES = 512 * 2**20  # ... and at most this much memory (large images keep fewer)


def new_prediction_cache(max_items: int = SESSION_CACHE_ITEMS) -> PrefixCache[Prediction]:
    return PrefixCache(max_items, SESSION_CACHE_BYTES)


@dataclass(eq=False)
class ClickSession:
    """Clicks, predictions and brush corrections of one object on one HxW plane.

    ``brush`` is HxW int8: +1 painted, -1 erased, 0 = the model decides. ``init_prev`` is the previous
    mask handed to the first prediction (a propagation source or the object's pixels already there).
    ``predictions`` holds the prediction of each predicted click list; ``prob`` is the current clicks'.
    """

    shape: tuple[int, int]
    clicks: list[Click] = field(default_factory=list)
    prob: np.ndarray | None = None
    brush: np.ndarray | None = None
    predictions: PrefixCache[Prediction] = field(default_factory=new_prediction_cache)
    init_prev: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.shape = (int(self.shape[0]), int(self.shape[1]))
        if self.brush is None:
            self.brush = np.zeros(self.shape, np.int8)

    def has_content(self) -> bool:
        return bool(self.clicks) or bool(self.brush.any())

    def restore_prob(self) -> None:
        """Set ``prob`` from the cache for the current clicks (None when not predicted yet)."""
        found = self.predictions.get(click_key(self.clicks)) if self.clicks else None
        self.prob = found.prob if found is not None else None

    def needs_prediction(self) -> bool:
        return bool(self.clicks) and click_key(self.clicks) not in self.predictions

    def prev_state(self) -> PredictionState | None:
        """What a prediction of the current clicks continues from: the state of the longest predicted
        prefix of the clicks, else ``init_prev`` (no zoom box), else None (a new object)."""
        found = self.predictions.longest_prefix(click_key(self.clicks))
        if found is not None:
            return found[1].state
        if self.init_prev is not None:
            return PredictionState(np.asarray(self.init_prev, np.float32))
        return None

    def store(self, clicks: Sequence[Click], prediction: Prediction) -> bool:
        """Cache a finished prediction; True if it is for the current clicks (``prob`` updated)."""
        if prediction.prob.shape != self.shape:
            raise ValueError(f"prediction shape {prediction.prob.shape} != plane {self.shape}")
        key = click_key(clicks)
        self.predictions.put(key, prediction)
        if key == click_key(self.clicks):
            self.prob = prediction.prob
            return True
        return False

    def mask(self, threshold: float, unpredicted: np.ndarray | None = None) -> np.ndarray:
        """HxW bool: the thresholded probability (``unpredicted`` or empty while there is none) with the
        brush corrections applied last."""
        if self.prob is not None:
            mask = probability_mask(self.prob, threshold)
        elif unpredicted is not None:
            mask = unpredicted.copy()
        else:
            mask = np.zeros(self.shape, bool)
            if not self.brush.any():
                return mask  # nothing yet (a freshly opened 4096² image: no full-size passes)
        return (mask | (self.brush > 0)) & ~(self.brush < 0)

    def snapshot(self) -> SessionSnapshot:
        return SessionSnapshot(list(self.clicks), self.prob, self.brush.copy(), self.predictions.copy(),
                               self.init_prev)  # fmt: skip

    def restore(self, snap: SessionSnapshot) -> None:
        self.clicks, self.prob, self.brush = list(snap.clicks), snap.prob, snap.brush.copy()
        self.predictions, self.init_prev = snap.cache.copy(), snap.init_prev

    def clear(self) -> None:
        """No clicks, prediction, corrections or previous mask."""
        self.clicks, self.prob, self.init_prev = [], None, None
        self.brush = np.zeros(self.shape, np.int8)
        self.predictions = new_prediction_cache(self.predictions.max_items)

    def load(self, clicks: list[Click], brush: np.ndarray, prob: np.ndarray | None,
             init_prev: np.ndarray | None = None) -> None:  # fmt: skip
        """Put a saved state back (an autosave): the probability is cached for ``clicks`` (the next
        click continues from it without a zoom box: the predictor chooses a new one)."""
        if brush.shape != self.shape:
            raise ValueError(f"brush {brush.shape} != plane {self.shape}")
        self.clear()
        self.clicks, self.brush, self.init_prev = list(clicks), brush.astype(np.int8), init_prev
        if clicks and prob is not None:
            self.store(clicks, Prediction.of(np.asarray(prob, np.float32)))


@dataclass
class SessionSnapshot:
    clicks: list[Click]
    prob: np.ndarray | None
    brush: np.ndarray
    cache: PrefixCache[Prediction]
    init_prev: np.ndarray | None


# ------------------------------------------------------------------------- commands on a session
class AddClick:
    text = "Click"

    def __init__(self, click: Click) -> None:
        self.click = click

    def do(self, s: ClickSession) -> None:
        s.clicks.append(self.click)
        s.restore_prob()

    def undo(self, s: ClickSession) -> None:
        s.clicks.pop()
        s.restore_prob()


class ResetClicks:
    """Drop the session's clicks, prediction and corrections."""

    text = "Reset clicks"

    def do(self, s: ClickSession) -> None:
        self.before = s.snapshot()
        s.clear()

    def undo(self, s: ClickSession) -> None:
        s.restore(self.before)


class BrushCorrection:
    """Paint (+1) or erase (-1) ``area`` (HxW bool) in the session's corrections."""

    def __init__(self, area: np.ndarray, erase: bool) -> None:
        ys, xs = np.nonzero(area)
        self.box = (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1)
        y0, y1, x0, x1 = self.box
        self.area, self.erase = area[y0:y1, x0:x1].copy(), erase
        self.text = "Eraser" if erase else "Brush"

    def do(self, s: ClickSession) -> None:
        y0, y1, x0, x1 = self.box
        crop = s.brush[y0:y1, x0:x1]
        self.before = crop.copy()
        crop[self.area] = -1 if self.erase else 1

    def undo(self, s: ClickSession) -> None:
        y0, y1, x0, x1 = self.box
        s.brush[y0:y1, x0:x1] = self.before


class SetPropagated:
    """Replace the session by a propagation result: automatic clicks and their prediction."""

    text = "Propagate"

    def __init__(self, clicks: list[Click], prediction: Prediction, source_mask: np.ndarray) -> None:
        self.clicks, self.prediction, self.source = list(clicks), prediction, source_mask

    def do(self, s: ClickSession) -> None:
        self.before = s.snapshot()
        s.clear()
        s.clicks = list(self.clicks)
        s.store(self.clicks, self.prediction)
        s.init_prev = self.source.astype(np.float32)

    def undo(self, s: ClickSession) -> None:
        s.restore(self.before)
