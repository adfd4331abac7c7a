"""The one fake click predictor of the test suite (Qt-free): disks at clicks, configurable timing."""

from __future__ import annotations

import threading
import time

import numpy as np

from model.prediction import Prediction, PredictionState

RADIUS = 12


class DiskPredictor:
    """Fake ClickPredictor: probability 0.9 in a disk of ``radius`` at each positive click, ``negative``
    at negative ones (later clicks win), optionally 0.3 in a ``halo`` ring and 0.8 where the given
    state's map is above 0.5 (``with_prev_mask``); ``only_last``: the last click's disk alone (a network
    that forgets the object at its second click). Keeps no click state: its zoom box is the clicks'
    coordinates, handed back in the returned state.

    Records ``calls`` (click count of each prediction), ``prev_given`` (whether a state came),
    ``states`` (the state each prediction got) and ``thread_ids`` (threads it predicted in).
    ``delay`` sleeps in ``predict`` (model time).
    """

    name = "disks"

    def __init__(
        self, radius: float = RADIUS, delay: float = 0.0, with_prev_mask: bool = False, halo: float = 0.0,
        negative: float = 0.05, only_last: bool = False,
    ) -> None:  # fmt: skip
        self.radius, self.delay = radius, delay
        self.with_prev_mask, self.halo, self.negative = with_prev_mask, halo, negative
        self.only_last = only_last
        self.calls: list[int] = []
        self.prev_given: list[bool] = []
        self.states: list[PredictionState | None] = []
        self.thread_ids: set[int] = set()
        self.shape = (0, 0)

    def set_image(self, image: np.ndarray) -> None:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        self.shape = image.shape[:2]

    def predict(self, clicks, state: PredictionState | None = None) -> Prediction:
        self.thread_ids.add(threading.get_ident())
        time.sleep(self.delay)
        yy, xx = np.mgrid[: self.shape[0], : self.shape[1]]
        prob = np.zeros(self.shape, np.float32)
        if state is not None and self.with_prev_mask:
            prob = np.where(state.prob > 0.5, 0.8, 0.0).astype(np.float32)
        for c in clicks[-1:] if self.only_last else clicks:
            d2 = (yy - c.y) ** 2 + (xx - c.x) ** 2
            if self.halo:
                ring = d2 <= self.halo**2
                prob[ring] = np.maximum(prob[ring], 0.3)
            prob[d2 <= self.radius**2] = 0.9 if c.is_positive else self.negative
        self.calls.append(len(clicks))
        self.prev_given.append(state is not None)
        self.states.append(state)
        box = (int(clicks[-1].y), int(clicks[-1].y), int(clicks[-1].x), int(clicks[-1].x)) if clicks else None
        return Prediction.of(prob, box)
