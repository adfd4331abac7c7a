"""What a click predictor takes and returns (numpy only, no torch): the caller holds the state.

Like segment-anything's predictor (``mask_input`` in, low-resolution logits out), a predictor keeps
nothing that depends on the clicks between calls: :meth:`ClickPredictor.predict` takes the
:class:`PredictionState` of the click list it continues from and returns a :class:`Prediction`
whose ``state`` the caller passes to the next call (or keeps per click list, for undo)::

    predictor.set_image(rgb)                                   # HxWx3 uint8, cached per image
    first = predictor.predict(clicks[:1])                      # no state: a new object
    second = predictor.predict(clicks[:2], first.state)        # continue from click 1
    again = predictor.predict(clicks[:2], first.state)         # undo + redo: the same map
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from model.clicks import Click

Box = tuple[int, int, int, int]


@dataclass(frozen=True, eq=False)
class PredictionState:
    """Everything a prediction on the same image continues from, besides the clicks.

    ``prob``: (H, W) float32 in [0, 1], the previous probability map at the image's full resolution:
    the network's previous-mask input and the object the zoom box follows. ``zoom_box``: the box the
    predictor zoomed to, in the predictor's own convention (opaque to callers), or None.
    Never change ``prob`` in place (it is the previous :class:`Prediction`'s map, not a copy).
    """

    prob: np.ndarray
    zoom_box: Box | None = None

    def __post_init__(self) -> None:
        if self.prob.ndim != 2 or self.prob.dtype != np.float32:
            raise ValueError(f"a prediction state holds an HxW float32 map, got {self.prob.dtype} "
                             f"{self.prob.shape}")  # fmt: skip

    @classmethod
    def from_mask(cls, mask: np.ndarray) -> PredictionState:
        """The state of a previous mask that no prediction made (an object already drawn, a propagation
        source): HxW bool or float in [0, 1], no zoom box."""
        return cls(np.asarray(mask, np.float32).copy())

    @property
    def nbytes(self) -> int:
        return int(self.prob.nbytes)

    def check_shape(self, shape: tuple[int, int]) -> None:
        """ValueError unless the state is for an image of ``shape`` (H, W)."""
        if self.prob.shape != tuple(shape):
            raise ValueError(f"the prediction state is for an image of shape {self.prob.shape}, not {shape}")


@dataclass(frozen=True, eq=False)
class Prediction:
    """One predictor call's output: ``prob`` (H, W) float32 in [0, 1] at full resolution, and the
    ``state`` to pass to the next call (it holds ``prob`` itself, not a copy: one array for both)."""

    prob: np.ndarray
    state: PredictionState

    @classmethod
    def of(cls, prob: np.ndarray, zoom_box: Box | None = None) -> Prediction:
        """A prediction of the HxW float32 map ``prob`` that zoomed to ``zoom_box``."""
        return cls(prob, PredictionState(prob, zoom_box))

    @property
    def nbytes(self) -> int:
        """Bytes held (the map once: the state shares it)."""
        shared = self.state.prob is self.prob
        return self.state.nbytes + (0 if shared else int(self.prob.nbytes))


@runtime_checkable
class ClickPredictor(Protocol):
    """Clicks in, probability map out, for one image at a time; no click state kept between calls.

    ``set_image(image)``: HxWx3 uint8 RGB (grayscale HxW and RGBA are accepted and converted); the
    predictor may cache what it derives from the image (that is not click state).
    ``predict(clicks, state=None)``: all clicks so far (in order) and the state of the click list it
    continues from (None: a new object) -> :class:`Prediction` at the image's full resolution.
    """

    name: str

    def set_image(self, image: np.ndarray) -> None: ...

    def predict(self, clicks: Sequence[Click], state: PredictionState | None = None) -> Prediction: ...
