"""The app starts on the bundled trained network, picks precision/threads by measuring, and keeps the
classical engines selectable."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from isegformer_app.settings import Settings
from isegformer_app.ui.main_window import MainWindow
from model.build import build_model
from model.checkpoint import save_checkpoint
from model.predictor import INTERACTIVE_MAX_SIZE
from model.runtime_tuning import RuntimeChoice, candidate_settings, measure_runtime


@pytest.fixture
def bundled(tmp_path, monkeypatch):
    """A bundled network measured better on photos than the classical engine, not on volumes."""
    import resources

    path = tmp_path / "bundled.pth"
    save_checkpoint(build_model("segformer_b0", head_channels=32), path)
    monkeypatch.setattr(resources, "DEFAULT_MODEL", path)
    defaults = tmp_path / "bundled.json"
    decisions = {
        "photo": {"engine": "isegformer-lite0", "reason": "beats geo_grabcut on voc"},
        "volume": {"engine": "geo_grabcut", "reason": "does not beat it on mni"},
    }
    defaults.write_text(json.dumps({"defaults": decisions}))
    monkeypatch.setattr(resources, "MODEL_DEFAULTS", defaults)
    return path


def test_measurement_picks_one_of_the_candidates() -> None:
    model = build_model("segformer_b0", head_channels=32)
    choice = measure_runtime(model, repeats=1)
    assert (choice.precision, choice.threads) in candidate_settings()
    assert choice.forward_ms > 0 and torch.get_num_threads() >= 1
    assert RuntimeChoice.from_dict(choice.to_dict()) == choice
    assert isinstance(choice.channels_last, bool)
    stem = next(p for p in model.parameters() if p.ndim == 4)
    assert stem.is_contiguous()  # measuring the channels-last layout leaves the model as it was


def test_channels_last_predictor_gives_the_same_probabilities() -> None:
    """The layout the measurement may pick changes speed, not the mask (the shipped network's family)."""
    from model.clicks import Click
    from model.predictor import Predictor
    from training.data.pack import initial_checkpoint

    model = load_checkpoint_bytes(initial_checkpoint(""))
    image = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    clicks = [Click(60, 80, True, 0), Click(20, 30, False, 1)]
    probs = {}
    for channels_last in (False, True):
        predictor = Predictor(model, "cpu", channels_last=channels_last)
        predictor.set_image(image)
        probs[channels_last] = predictor.predict(clicks).prob
    assert np.abs(probs[True] - probs[False]).max() < 1e-4
    cached_before = {"precision": None, "threads": 1, "forward_ms": 5.0}  # a cache entry of older versions
    assert RuntimeChoice.from_dict(cached_before).channels_last is False


def load_checkpoint_bytes(data: bytes):
    import tempfile
    from pathlib import Path

    from model.checkpoint import load_checkpoint

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "net.pth"
        path.write_bytes(data)
        return load_checkpoint(path)


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
    # a camera photo reaches the network at most INTERACTIVE_MAX_SIZE on its longer side (the limit's
    # effect on the network input is test_predictor's test_max_size_limits_the_network_input)
    assert window.worker.predictor.limit.max_size == INTERACTIVE_MAX_SIZE == 800
    window.models.use_engine("geo_grabcut")
    qtbot.waitUntil(lambda: window.models.active == ("engine", "geo_grabcut"), timeout=10000)
    window.close()


def test_engine_follows_the_kind_of_data_until_the_user_picks_one(qtbot, tmp_path, bundled, messages) -> None:
    """Photos start on the network, volumes on the classical engine (as measured); the Model menu says
    which is whose default; a pick by hand holds for both kinds and across sessions until "Default"."""
    nifti = tmp_path / "head.nii.gz"
    data = np.zeros((32, 40, 8), np.int16)
    data[8:24, 10:30, 2:6] = 500
    nib.save(nib.Nifti1Image(data, np.eye(4)), nifti)
    config = tmp_path / "config"
    window = MainWindow(Settings.load(config))
    qtbot.addWidget(window)
    menu = window.actions_by_name
    assert menu["engine_default_photo"].text() == "Photos: isegformer-lite0"
    assert menu["engine_default_volume"].text() == "Volumes: geo_grabcut"
    assert "does not beat it on mni" in menu["engine_default_volume"].toolTip()
    qtbot.waitUntil(lambda: window.models.active == ("engine", "isegformer-lite0"), timeout=60000)
    assert window.engine_text.endswith("photo default")

    assert window.open_path(nifti)
    qtbot.waitUntil(lambda: window.models.active == ("engine", "geo_grabcut"), timeout=10000)
    assert window.engine_text == "geo_grabcut · cpu · volume default"

    menu["engine_isegformer-lite0"].trigger()  # picked by hand: it holds for volumes too
    qtbot.waitUntil(lambda: window.models.active == ("engine", "isegformer-lite0"), timeout=60000)
    assert not window.engine_text.endswith("default")
    window.settings.save()
    window.close()

    again = MainWindow(Settings.load(config))
    qtbot.addWidget(again)
    qtbot.waitUntil(lambda: again.models.active == ("engine", "isegformer-lite0"), timeout=60000)
    assert again.open_path(nifti)
    qtbot.waitUntil(lambda: again.volume.doc is not None, timeout=10000)
    assert again.models.active == ("engine", "isegformer-lite0")
    again.actions_by_name["engine_defaults"].trigger()
    qtbot.waitUntil(lambda: again.models.active == ("engine", "geo_grabcut"), timeout=10000)
    assert again.settings.engine == "" and not messages
    again.close()
