"""One object's click session on one slice of one view of a volume (Qt-free).

A :class:`SliceSession` is a :class:`~isegformer_app.state.click_session.ClickSession` (clicks,
prediction cache, brush corrections, the commands on them) for object ``value`` on slice
``(axis, index)``, with its own undo history. Its mask is written *live* into the label volume by the
document (see ``VolumeDocument._sync``):

* ``base``: the label slice when the session started; ``written``: the pixels the session claims now.
* mask = the thresholded probability once predicted (while clicks wait for a prediction the last written
  mask stays), else the object's own pixels in ``base``; brush +1/-1 corrections are applied last.
"""

from __future__ import annotations

import numpy as np

from isegformer_app.state.click_session import ClickSession, new_prediction_cache
from isegformer_app.state.history import History
from model.clicks import Click

SessionKey = tuple[int, str, int]  # (label value, axis, slice index)
CACHE_PER_SESSION = 16  # predicted click lists kept per slice session


class SliceSession(ClickSession):
    """``base`` HxW label slice (uint8/uint16); ``written`` HxW bool."""

    def __init__(self, value: int, axis: str, index: int, base: np.ndarray, written: np.ndarray,
                 clicks: list[Click] | None = None, brush: np.ndarray | None = None,
                 init_prev: np.ndarray | None = None) -> None:  # fmt: skip
        super().__init__(shape=base.shape[:2], clicks=list(clicks or []), brush=brush, init_prev=init_prev,
                         predictions=new_prediction_cache(CACHE_PER_SESSION))  # fmt: skip
        self.value, self.axis, self.index = int(value), axis, int(index)
        self.base, self.written = base, written
        self.history: History[ClickSession] = History()

    @property
    def key(self) -> SessionKey:
        return self.value, self.axis, self.index

    def mask(self, threshold: float, unpredicted: np.ndarray | None = None) -> np.ndarray:
        """HxW bool mask of the object on this slice (see the module docstring)."""
        if unpredicted is None:
            unpredicted = self.written if self.clicks else self.base == self.value
        return super().mask(threshold, unpredicted)
