"""Shared plumbing of the built-in click engines (no network, no weights).

:class:`ClickEngine` does what every engine needs: it converts the image to HxWx3 uint8, picks the
view to work on (the whole image shrunk to a working size at the first click, then a zoomed box
around the object), maps clicks into it (dropping clicks outside the image) and pastes the view's map
back into the full image. The previous probability map and zoom box come in and go out of each call
as a :class:`~model.prediction.PredictionState` (the caller holds them).
Every map it returns honours the clicks (:func:`honour_clicks`): a small disk around each positive
click is in the mask and each negative click's pixel out of it, whatever the engine computed.
A subclass only implements :meth:`ClickEngine._prepare` (per view) and :meth:`ClickEngine._segment`
(per click).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from model.clicks import Click
from model.image import as_rgb_uint8
from model.prediction import Box, Prediction, PredictionState


@dataclass(frozen=True)
class WorkClicks:
    """Clicks in view pixels: ``ys``/``xs`` int arrays (N,), ``positive`` bool (N,), in click order."""

    ys: np.ndarray
    xs: np.ndarray
    positive: np.ndarray

    def __len__(self) -> int:
        return len(self.ys)


@dataclass(frozen=True)
class View:
    """The part of the image an engine works on: ``rect`` = (y0, y1, x0, x1) in full-image pixels
    (end exclusive), ``image`` = that part resized to hxwx3 uint8, ``data`` = the engine's
    per-view precomputation (:meth:`ClickEngine._prepare`)."""

    rect: tuple[int, int, int, int]
    image: np.ndarray
    data: Any


class ClickEngine:
    """Base of the weight-free engines; implements the ``ClickPredictor`` protocol.

    ``work_size``: the longest side of the working image (larger images are shrunk with area
    averaging). From the second click on, the engine zooms in: it works on a box around the previous
    mask and the positive clicks, grown by ``zoom_expansion`` of its size on each side (at least
    ``zoom_min_size`` of the image's longest side), enlarged up to ``max_upscale`` times; the box is
    kept while it still holds the object (it is the state's ``zoom_box``). ``monotone``: 'negative' =
    a negative click only removes area, 'both' = also a positive click only adds, 'none'.
    ``click_disk``: (fraction of the image's longest side, at least this many pixels), the radius of
    the disk around each positive click that is forced into the mask (see :func:`honour_clicks`;
    a negative click's own pixel is forced out — negative disks cost NoC on thin spill-overs).
    """

    name = "base"
    click_disk: tuple[float, int] = (0.005, 3)
    # its clicks follow its own rules (``monotone``, ``click_disk``; a negative seed teaches the background's
    # colours everywhere): the app leaves its answers alone (model.local_edits, measured there)
    own_click_rules = True

    def __init__(
        self,
        work_size: int = 256,
        zoom: bool = True,
        zoom_expansion: float = 0.4,
        zoom_min_size: float = 0.1,
        max_upscale: float = 3.0,
        monotone: str = "negative",
    ) -> None:
        if work_size < 8:
            raise ValueError(f"work_size must be at least 8, got {work_size}")
        self.work_size = int(work_size)
        self.zoom = zoom
        self.zoom_expansion = zoom_expansion
        self.zoom_min_size = zoom_min_size
        if monotone not in ("none", "negative", "both"):
            raise ValueError(f"monotone must be 'none', 'negative' or 'both', got {monotone!r}")
        self.max_upscale = max_upscale
        self.monotone = monotone
        self._image: np.ndarray | None = None
        self._global: View | None = None
        self._zoomed: View | None = None  # the last zoomed view: a cache keyed by its box, not state

    @property
    def _full_shape(self) -> tuple[int, int] | None:
        return None if self._image is None else self._image.shape[:2]

    # -- ClickPredictor protocol ---------------------------------------------------------------
    def set_image(self, image: np.ndarray) -> None:
        """Take a new image (HxW / HxWx3 / HxWx4)."""
        self._image = as_rgb_uint8(image)
        height, width = self._image.shape[:2]
        self._global = self._make_view((0, height, 0, width), upscale=1.0)
        self._zoomed = None

    def predict(self, clicks: Sequence[Click], state: PredictionState | None = None) -> Prediction:
        """All clicks so far and the state they continue from -> HxW float32 probabilities in [0, 1] at
        full image size, with the state for the next call (see :class:`~model.prediction.ClickPredictor`)."""
        if self._image is None or self._global is None:
            raise RuntimeError("predict() called before set_image()")
        full_shape = self._image.shape[:2]
        prev_mask, rect = None, None
        if state is not None:
            state.check_shape(full_shape)
            prev_mask, rect = state.prob, state.zoom_box
        inside = [c for c in clicks if c.is_inside(full_shape)]
        probs = np.zeros(full_shape, np.float32)
        if any(c.is_positive for c in inside):
            view = self._choose_view(inside, prev_mask, rect)
            rect = view.rect if view is not self._global else None
            y0, y1, x0, x1 = view.rect
            work_clicks = _to_view_clicks(inside, view)
            prev_view = None
            if prev_mask is not None:
                prev_view = _resize(prev_mask[y0:y1, x0:x1], view.image.shape[:2])
            if work_clicks.positive.any():
                probs_view = self._segment(view, work_clicks, prev_view)
                probs[y0:y1, x0:x1] = np.clip(_resize(probs_view, (y1 - y0, x1 - x0)), 0.0, 1.0)
            probs = self._monotone(probs, inside[-1], prev_mask)
        fraction, least = self.click_disk
        honour_clicks(probs, inside, max(least, fraction * max(full_shape)))
        return Prediction.of(probs, rect)

    def _monotone(self, probs: np.ndarray, latest: Click, prev_mask: np.ndarray | None) -> np.ndarray:
        """A latest negative click never adds area (``monotone`` 'negative' or 'both'), a latest positive
        one never removes any ('both'), relative to the previous map."""
        if prev_mask is None or self.monotone == "none":
            return probs
        if not latest.is_positive:
            return np.minimum(probs, prev_mask)
        if self.monotone == "both":
            return np.maximum(probs, prev_mask)
        return probs

    # -- to implement --------------------------------------------------------------------------
    def _prepare(self, work_image: np.ndarray) -> Any:
        """Per-view precomputation on the hxwx3 uint8 working image (stored as ``View.data``)."""
        return None

    def _segment(self, view: View, clicks: WorkClicks, prev: np.ndarray | None) -> np.ndarray:
        """Clicks (one positive at least) in view pixels, previous hxw map or None -> hxw float32 [0, 1]."""
        raise NotImplementedError

    # -- views ---------------------------------------------------------------------------------
    def _make_view(self, rect: tuple[int, int, int, int], upscale: float) -> View:
        assert self._image is not None
        y0, y1, x0, x1 = rect
        crop = self._image[y0:y1, x0:x1]
        scale = min(upscale, self.work_size / max(crop.shape[:2]))
        if scale != 1.0:
            size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
            interpolation = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
            crop = cv2.resize(crop, size, interpolation=interpolation)
        crop = np.ascontiguousarray(crop)
        return View(rect, crop, self._prepare(crop))

    def _choose_view(self, clicks: Sequence[Click], prev_mask: np.ndarray | None, rect: Box | None) -> View:
        """The global view at the first click, else the zoom box around the previous mask and clicks
        (``rect``, the box in use, is kept while it still holds them)."""
        assert self._image is not None and self._global is not None
        if not self.zoom or prev_mask is None:
            return self._global
        height, width = self._image.shape[:2]
        region = prev_mask > 0.5
        if not region.any():  # an empty previous mask
            return self._global
        ys, xs = np.nonzero(region)
        pos_y = [int(c.y) for c in clicks if c.is_positive]
        pos_x = [int(c.x) for c in clicks if c.is_positive]
        ys = np.concatenate([ys, pos_y]).astype(int)
        xs = np.concatenate([xs, pos_x]).astype(int)
        needed = (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1)
        if rect is None or not _contains(rect, _expanded_box(needed, 0.05, 0, (height, width))):
            rect = _expanded_box(
                needed, self.zoom_expansion, self.zoom_min_size * max(height, width), (height, width)
            )
        if (rect[1] - rect[0]) * (rect[3] - rect[2]) > 0.6 * height * width:
            return self._global
        if self._zoomed is None or self._zoomed.rect != rect:
            self._zoomed = self._make_view(rect, self.max_upscale)
        return self._zoomed


def honour_clicks(probs: np.ndarray, clicks: Sequence[Click], radius: float,
                  negative_radius: float = 0.0) -> np.ndarray:
    """Make the HxW float map ``probs`` (changed in place, returned) agree with ``clicks``.

    Around each positive click a disk of ``radius`` px becomes 1.0, around each negative click one
    of ``negative_radius`` px (default: the clicked pixel alone) 0.0, so neither the engine's own
    result nor its resizing back to full size can drop the clicked pixel (a few negative clicks
    used to shrink the object to nothing, down to the positive click's own pixel).
    Clicks are applied in order (:func:`paint_click_disk`), so a later click wins on its own pixel.
    Clicks outside the map are ignored.
    """
    inside = [c for c in clicks if c.is_inside(probs.shape)]
    for index, click in enumerate(inside):
        paint_click_disk(probs, inside, index, radius if click.is_positive else negative_radius)
    return probs


def paint_click_disk(probs: np.ndarray, clicks: Sequence[Click], index: int, radius: float) -> None:
    """Set a disk of ``radius`` px around ``clicks[index]`` in the HxW map ``probs`` (in place) to 1.0 for
    a positive click, 0.0 for a negative one. The disk never reaches a click of the other sign among
    ``clicks`` (all inside the map): it stays under half the distance to the nearest one, down to the
    clicked pixel alone."""
    click = clicks[index]
    y, x, positive = int(click.y), int(click.x), bool(click.is_positive)
    others = np.array([(int(c.y), int(c.x)) for c in clicks if bool(c.is_positive) != positive], np.float64)
    r = float(radius)
    if len(others):
        r = min(r, 0.5 * float(np.hypot(others[:, 0] - y, others[:, 1] - x).min()) - 0.5)
    r = max(0, int(np.floor(r)))
    h, w = probs.shape[:2]
    y0, y1, x0, x1 = max(0, y - r), min(h, y + r + 1), max(0, x - r), min(w, x + r + 1)
    yy, xx = np.ogrid[y0:y1, x0:x1]
    disk = (yy - y) ** 2 + (xx - x) ** 2 <= r * r
    probs[y0:y1, x0:x1][disk] = 1.0 if positive else 0.0


def _to_view_clicks(clicks: Sequence[Click], view: View) -> WorkClicks:
    """Full-image clicks -> view pixels (clicks outside the view are dropped), in click order."""
    y0, y1, x0, x1 = view.rect
    h, w = view.image.shape[:2]
    ys, xs, positive = [], [], []
    for click in clicks:
        y, x = float(click.y) - y0, float(click.x) - x0
        if 0 <= y < y1 - y0 and 0 <= x < x1 - x0:
            ys.append(min(h - 1, int((y + 0.5) * h / (y1 - y0))))
            xs.append(min(w - 1, int((x + 0.5) * w / (x1 - x0))))
            positive.append(bool(click.is_positive))
    return WorkClicks(np.array(ys, np.int64), np.array(xs, np.int64), np.array(positive, bool))


def _resize(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """hxw float map -> ``shape`` (area averaging when shrinking, bilinear when enlarging), float32."""
    values = values.astype(np.float32)
    if values.shape == tuple(shape):
        return values
    shrink = shape[0] * shape[1] < values.shape[0] * values.shape[1]
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(values, (shape[1], shape[0]), interpolation=interpolation)


def _contains(outer: tuple[int, int, int, int], inner: tuple[int, int, int, int]) -> bool:
    return outer[0] <= inner[0] and inner[1] <= outer[1] and outer[2] <= inner[2] and inner[3] <= outer[3]


def _expanded_box(
    box: tuple[int, int, int, int], expansion: float, min_size: float, shape: tuple[int, int]
) -> tuple[int, int, int, int]:
    """Grow ``box`` (y0, y1, x0, x1) by ``expansion`` of its size per side, to at least ``min_size``
    per dimension, clipped to the image ``shape``."""
    result = []
    for lo, hi, limit in ((box[0], box[1], shape[0]), (box[2], box[3], shape[1])):
        size = max((hi - lo) * (1 + 2 * expansion), min_size)
        centre = (lo + hi) / 2
        start = int(np.floor(centre - size / 2))
        stop = int(np.ceil(centre + size / 2))
        start, stop = max(0, start), min(limit, stop)
        result.extend([start, max(stop, start + 1)])
    return result[0], result[1], result[2], result[3]


def disk_mask(shape: tuple[int, int], ys: np.ndarray, xs: np.ndarray, radius: float) -> np.ndarray:
    """Bool hxw map of the union of disks of ``radius`` px around the given pixels."""
    mask = np.zeros(shape, np.uint8)
    r = max(0, int(round(radius)))
    for y, x in zip(ys.tolist(), xs.tolist(), strict=True):
        cv2.circle(mask, (int(x), int(y)), r, 1, thickness=-1)
    return mask.astype(bool)
