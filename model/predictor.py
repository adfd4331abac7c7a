"""The predictor: the one object the app and the evaluator hold per image.

:class:`ClickPredictor` is the interface every engine implements (the network predictor below and
the built-in engines that need no weights).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from model.clicks import Click


@runtime_checkable
class ClickPredictor(Protocol):
    """Clicks in, probability map out, for one image at a time.

    ``set_image(image)``: HxWx3 uint8 RGB (grayscale HxW and RGBA are accepted and converted).
    ``predict(clicks, prev_mask=None)``: all clicks so far (in order) -> HxW float32 probabilities
    in [0, 1] at the image's full resolution; the predictor remembers its last prediction and
    feeds it back as the previous mask unless ``prev_mask`` is given.
    ``get_state()`` / ``set_state(state)``: save and restore everything ``predict`` depends on
    (for undo). ``reset()`` forgets the clicks' effects (new object on the same image).
    """

    name: str

    def set_image(self, image: np.ndarray) -> None: ...

    def predict(self, clicks: Sequence[Click], prev_mask: np.ndarray | None = None) -> np.ndarray: ...

    def get_state(self) -> Any: ...

    def set_state(self, state: Any) -> None: ...

    def reset(self) -> None: ...
