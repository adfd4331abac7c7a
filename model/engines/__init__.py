"""Built-in click engines: weight-free ``ClickPredictor`` implementations the app uses without a checkpoint.

``build_engine(name)`` makes one; ``ENGINE_NAMES`` lists them; ``DEFAULT_ENGINE`` is the one the
app picks. Engines: ``grabcut`` (click-seeded OpenCV GrabCut), ``geodesic`` (nearest seed along
contrast-weighted paths) and ``geo_grabcut`` (the geodesic split seeding GrabCut). ``geo_grabcut``
is the default: it has the lowest NoC@85/NoC@90 on both the VOC photo and the MR slices of
``python -m model.benchmarks.engines`` and stays within 150 ms per click at 800 px on 2 CPU cores.
"""

from __future__ import annotations

from collections.abc import Callable

from model.engines.base import ClickEngine
from model.engines.geo_grabcut import GeoGrabCutEngine
from model.engines.geodesic import GeodesicEngine
from model.engines.grabcut import GrabCutEngine
from model.prediction import ClickPredictor

_FACTORIES: dict[str, Callable[[], ClickEngine]] = {
    GrabCutEngine.name: GrabCutEngine,
    GeodesicEngine.name: GeodesicEngine,
    GeoGrabCutEngine.name: GeoGrabCutEngine,
}

ENGINE_NAMES: tuple[str, ...] = tuple(_FACTORIES)
DEFAULT_ENGINE = GeoGrabCutEngine.name


def build_engine(name: str) -> ClickPredictor:
    """A fresh engine by name (one of ``ENGINE_NAMES``)."""
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; choose one of {', '.join(ENGINE_NAMES)}") from None
    return factory()


__all__ = ["DEFAULT_ENGINE", "ENGINE_NAMES", "ClickEngine", "build_engine"]
