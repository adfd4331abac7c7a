"""Built-in click engines: weight-free ``ClickPredictor`` implementations the app uses without a checkpoint.

``build_engine(name)`` makes one; ``ENGINE_NAMES`` lists them; ``DEFAULT_ENGINE`` is the one the
app picks (the best NoC of ``python -m model.engine_benchmark`` within the time budget).
"""

from __future__ import annotations

from collections.abc import Callable

from model.engines.base import ClickEngine
from model.engines.geodesic import GeodesicEngine
from model.engines.grabcut import GrabCutEngine
from model.predictor import ClickPredictor

_FACTORIES: dict[str, Callable[[], ClickEngine]] = {
    GrabCutEngine.name: GrabCutEngine,
    GeodesicEngine.name: GeodesicEngine,
}

ENGINE_NAMES: tuple[str, ...] = tuple(_FACTORIES)
DEFAULT_ENGINE = GrabCutEngine.name


def build_engine(name: str) -> ClickPredictor:
    """A fresh engine by name (one of ``ENGINE_NAMES``)."""
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; choose one of {', '.join(ENGINE_NAMES)}") from None
    return factory()


__all__ = ["DEFAULT_ENGINE", "ENGINE_NAMES", "ClickEngine", "build_engine"]
