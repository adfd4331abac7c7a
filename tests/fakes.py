"""The one fake click predictor of the test suite (Qt-free): disks at clicks, configurable timing."""

from __future__ import annotations

import threading
import time

import numpy as np

RADIUS = 12


class DiskPredictor:
    """Fake ClickPredictor: probability 0.9 in a disk of ``radius`` at each positive click, ``negative``
    at negative ones (later clicks win), optionally 0.3 in a ``halo`` ring and 0.8 where ``prev_mask``
    is set (``with_prev_mask``).

    Records ``calls`` (click count of each prediction), ``prev_given`` (whether a previous mask came),
    ``thread_ids`` (threads it predicted in) and ``events`` (``("reset",)`` / ``("set_state", s)``).
    ``delay`` / ``state_delay`` sleep in ``predict`` / ``get_state`` (to tell model time from overhead).
    """

    name = "disks"

    def __init__(
        self, radius: float = RADIUS, delay: float = 0.0, state_delay: float = 0.0,
        with_prev_mask: bool = False, halo: float = 0.0, negative: float = 0.05,
    ) -> None:  # fmt: skip
        self.radius, self.delay, self.state_delay = radius, delay, state_delay
        self.with_prev_mask, self.halo, self.negative = with_prev_mask, halo, negative
        self.calls: list[int] = []
        self.prev_given: list[bool] = []
        self.thread_ids: set[int] = set()
        self.events: list[tuple] = []
        self.state: tuple = ()  # the clicks of the last prediction
        self.shape = (0, 0)

    def set_image(self, image: np.ndarray) -> None:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        self.shape = image.shape[:2]

    def predict(self, clicks, prev_mask=None) -> np.ndarray:
        self.thread_ids.add(threading.get_ident())
        time.sleep(self.delay)
        yy, xx = np.mgrid[: self.shape[0], : self.shape[1]]
        prob = np.zeros(self.shape, np.float32)
        if prev_mask is not None and self.with_prev_mask:
            prob = np.where(prev_mask > 0.5, 0.8, 0.0).astype(np.float32)
        for c in clicks:
            d2 = (yy - c.y) ** 2 + (xx - c.x) ** 2
            if self.halo:
                ring = d2 <= self.halo**2
                prob[ring] = np.maximum(prob[ring], 0.3)
            prob[d2 <= self.radius**2] = 0.9 if c.is_positive else self.negative
        self.calls.append(len(clicks))
        self.prev_given.append(prev_mask is not None)
        self.state = tuple(c.coords for c in clicks)
        return prob

    def get_state(self):
        time.sleep(self.state_delay)
        return self.state

    def set_state(self, state) -> None:
        self.events.append(("set_state", state))
        self.state = state

    def reset(self) -> None:
        self.events.append(("reset",))
        self.state = ()
