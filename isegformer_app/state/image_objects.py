"""A finished object of an image annotation (its mask at the image's working resolution)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from isegformer_app.state.labels import Color
from model.clicks import Click


@dataclass
class AnnotatedObject:
    """A finished instance: ``mask`` HxW bool, ``clicks`` that produced it (kept for reference)."""

    uid: int
    label: str
    color: Color
    mask: np.ndarray
    visible: bool = True
    clicks: list[Click] = field(default_factory=list)
