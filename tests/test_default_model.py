"""The app starts on the bundled trained network, picks precision/threads by measuring, and keeps the
classical engines selectable."""

from __future__ import annotations

import pytest
import torch

from isegformer_app.settings import Settings
from isegformer_app.ui.main_window import MainWindow
from model.build import build_model
from model.checkpoint import save_checkpoint
from model.runtime_tuning import RuntimeChoice, candidate_settings, measure_runtime


@pytest.fixture
def bundled(tmp_path, monkeypatch):
    import resources

    path = tmp_path / "bundled.pth"
    save_checkpoint(build_model("segformer_b0", head_channels=32), path)
    monkeypatch.setattr(resources, "DEFAULT_MODEL", path)
    return path


def test_measurement_picks_one_of_the_candidates() -> None:
    model = build_model("segformer_b0", head_channels=32)
    choice = measure_runtime(model, repeats=1)
    assert (choice.precision, choice.threads) in candidate_settings()
    assert choice.forward_ms > 0 and torch.get_num_threads() >= 1
    assert RuntimeChoice.from_dict(choice.to_dict()) == choice


def test_app_defaults_to_the_bundled_network(qtbot, tmp_path, bundled, messages) -> None:
    settings = Settings.load(tmp_path / "config")
    window = MainWindow(settings)
    qtbot.addWidget(window)
    names = list(window.models.engines)
    assert names[0] == "isegformer-lite0" and "geo_grabcut" in names  # classical engines stay selectable
    assert "engine_isegformer-lite0" in window.actions_by_name
    qtbot.waitUntil(lambda: window.models.active == ("engine", "isegformer-lite0"), timeout=60000)
    assert type(window.worker.predictor).__name__ == "Predictor"
    assert len(settings.runtime_choices) == 1  # measured once, cached for this model and machine
    choice = RuntimeChoice.from_dict(next(iter(settings.runtime_choices.values())))
    assert window.worker.predictor.autocast == choice.precision
    window.models.use_engine("geo_grabcut")
    qtbot.waitUntil(lambda: window.models.active == ("engine", "geo_grabcut"), timeout=10000)
    window.close()
