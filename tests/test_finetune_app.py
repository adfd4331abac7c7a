"""Model > Train on this project's annotations: the Qt-free job logic and the dialog around a real process."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from isegformer_app.settings import Settings
from isegformer_app.state.document import Document
from isegformer_app.state.finetune_job import (
    TrainingInputError,
    TrainingMonitor,
    discard_run,
    image_folder_source,
    install_model,
    installed_model,
    prepare_training,
    training_command,
)
from isegformer_app.state.imageio import load_image
from isegformer_app.state.labels import LabelList
from isegformer_app.state.project import Project
from model.prediction import Prediction
from training.data.pack import initial_checkpoint
from training.finetune_events import FinetuneEvent


def annotated_project(root: Path, objects_per_image: tuple[int, ...]) -> Project:
    """A folder of images with finished disk objects saved in their autosaves."""
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(len(objects_per_image)):
        image = rng.integers(0, 50, (80, 80, 3), dtype=np.uint8)
        Image.fromarray(image).save(root / f"img{i}.png")
    project = Project.from_path(root)
    for i, count in enumerate(objects_per_image):
        doc = Document(load_image(project.paths[i]))
        for k in range(count):
            prob = np.zeros(doc.shape, np.float32)
            cv2.circle(prob, (15 + 20 * k, 20 + 10 * i % 40), 7, 1.0, -1)
            doc.add_click(20 + 10 * i % 40, 15 + 20 * k, True)
            doc.set_prediction(list(doc.clicks), Prediction.of(prob))
            assert doc.finish_object("cell", (200, 0, 0)) is not None
        project.doc, project.index = doc, i
        project.save()
    project.doc = None
    return project


def prepare(project: Project, weights=None):
    source = image_folder_source(project)
    return prepare_training(source.copy_objects(), source, weights, LabelList())


def model_folder(project: Project) -> Path:
    return image_folder_source(project).folder


def project_model_path(project: Project) -> Path | None:
    return installed_model(model_folder(project))


QUICK_CONFIG = """
[data]
dataset = "app-export"
crop_size = [96, 96]
scale_range = [1.0, 1.0]
min_object_area = 20
epoch_len = 64
workers = 0
[train]
epochs = 100000
batch_size = 2
checkpoint_interval = 0
[validation]
every = 0
max_clicks = 3
[finetune]
enabled = true
eval_max_objects = 1
eval_with_flip = false
"""


def quick_request(project: Project, tmp_path: Path):
    """A run of the real job, sized for a test (small crops, one held-out object, three clicks)."""
    weights = tmp_path / "base.pth"
    weights.write_bytes(initial_checkpoint(""))
    config = tmp_path / "quick.toml"
    config.write_text(QUICK_CONFIG)
    return dataclasses.replace(prepare(project, weights), config=str(config), max_minutes=2.0)


def test_too_few_finished_objects_names_the_number_and_starts_nothing(tmp_path):
    project = annotated_project(tmp_path / "cells", (1, 2))
    with pytest.raises(TrainingInputError, match="has 3 finished objects; training needs at least 4"):
        prepare(project)
    assert not model_folder(project).exists() or not any(model_folder(project).iterdir())
    one_image = annotated_project(tmp_path / "one", (3, 0, 0))
    with pytest.raises(TrainingInputError, match="in one image"):
        source = image_folder_source(one_image)
        prepare_training(source.copy_objects(), source, None, LabelList(), min_objects=3)


def test_prepare_exports_finished_objects_into_a_run_folder_beside_the_autosaves(tmp_path):
    project = annotated_project(tmp_path / "cells", (2, 2, 1))
    request = prepare(project, Path("/models/base.pth"))
    assert request.objects == 5 and request.images == 3 and request.project == "cells"
    assert request.run_dir.parent.parent == model_folder(project)
    assert model_folder(project).parent == project.sidecar_for(project.paths[0]).parent
    assert sorted(p.name for p in (request.data_dir / "masks").iterdir()) == [
        "img0.png",
        "img1.png",
        "img2.png",
    ]
    command = training_command(request)
    assert command[1:4] == ["-m", "training.train", "finetune"] and "--events" in command
    assert command[command.index("--weights") + 1] == "/models/base.pth"


def test_monitor_reads_progress_and_tells_a_killed_process_from_a_cancel():
    monitor = TrainingMonitor()
    step = FinetuneEvent("step", samples=1240, steps=310, loss=0.2134, elapsed_s=62, remaining_s=238)
    text = "some warning\n" + step.to_line()
    assert monitor.feed(text[:20]) is False  # a partial line waits for the rest
    assert monitor.feed(text[20:]) is True
    assert monitor.status_text() == "training · 1,240 samples · loss 0.213 · 1:02 elapsed · 3:58 left"
    assert abs(monitor.fraction() - 62 / 300) < 1e-9
    assert "killed or crashed" in monitor.outcome(-9, crashed=True, cancelled=False)
    assert monitor.outcome(-9, crashed=True, cancelled=True).startswith("Training cancelled")
    monitor.feed(FinetuneEvent("error", "3 finished objects: fine-tuning needs at least 4").to_line())
    assert monitor.outcome(2, crashed=False, cancelled=False) == (
        "Training stopped: 3 finished objects: fine-tuning needs at least 4"
    )
    monitor.feed(FinetuneEvent("done", result={"minutes": 1.0}).to_line())
    assert monitor.outcome(0, crashed=False, cancelled=False) == ""


def test_install_model_makes_it_the_projects_model_and_a_failed_copy_keeps_the_old_one(tmp_path):
    project = annotated_project(tmp_path / "cells", (2, 2))
    request = prepare(project)
    (request.run_dir / "checkpoints").mkdir(parents=True)
    (request.run_dir / "checkpoints" / "last_checkpoint.pth").write_bytes(b"new model")
    (request.run_dir / "finetune.json").write_text(json.dumps({"after": {}}))
    (request.run_dir / "finetune.md").write_text("# card")
    assert project_model_path(project) is None
    path = install_model(request)
    assert project_model_path(project) == path and path.read_bytes() == b"new model"
    assert (model_folder(project) / "finetune.md").is_file()
    discard_run(request)  # the dialog does it in the background
    assert not request.run_dir.parent.exists()
    second = prepare(project)
    with pytest.raises(OSError):
        install_model(second)  # nothing written: the run produced no model
    assert path.read_bytes() == b"new model"


def finished_run(request, model: bytes, card: str):
    """The files a finished run leaves in its output folder."""
    (request.run_dir / "checkpoints").mkdir(parents=True)
    (request.run_dir / "checkpoints" / "last_checkpoint.pth").write_bytes(model)
    (request.run_dir / "finetune.json").write_text(json.dumps({"card": card}))
    (request.run_dir / "finetune.md").write_text(f"# {card}")
    return request


def full_disk_at(monkeypatch, request, name: str) -> list[str]:
    """``os.replace`` fails with ENOSPC when the run's ``name`` (model.pth, finetune.json, finetune.md) is
    moved into the model folder; returns the names the model folder receives, in order."""
    run = request.run_dir
    incoming = {"model.pth": run / "checkpoints" / "last_checkpoint.pth",
                "finetune.json": run / "finetune.json", "finetune.md": run / "finetune.md"}  # fmt: skip
    real_replace, received = os.replace, []

    def replace(src, dst) -> None:
        if Path(src) == incoming.get(name):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_replace(src, dst)
        if Path(dst).parent == request.model_dir:
            received.append(Path(dst).name)

    monkeypatch.setattr(os, "replace", replace)
    return received


@pytest.mark.parametrize("failing", ["finetune.json", "finetune.md", "model.pth"])
def test_a_full_disk_while_installing_keeps_the_earlier_model_and_its_card(tmp_path, monkeypatch, failing):
    project = annotated_project(tmp_path / "cells", (2, 2))
    folder = model_folder(project)
    first = finished_run(prepare(project), b"first model", "first")
    install_model(first)
    second = finished_run(prepare(project), b"second model", "second")
    full_disk_at(monkeypatch, second, failing)
    with pytest.raises(OSError, match="No space left"):
        install_model(second)
    assert project_model_path(project).read_bytes() == b"first model"
    assert json.loads((folder / "finetune.json").read_text()) == {"card": "first"}
    assert (folder / "finetune.md").read_text() == "# first"


def test_the_model_moves_in_after_its_card_and_a_failed_first_install_leaves_none(tmp_path, monkeypatch):
    project = annotated_project(tmp_path / "cells", (2, 2))
    request = finished_run(prepare(project), b"model", "ok")
    received = full_disk_at(monkeypatch, request, "")
    install_model(request)
    assert received == ["finetune.json", "finetune.md", "model.pth"]  # a model.pth always has its card
    project = annotated_project(tmp_path / "other", (2, 2))
    request = finished_run(prepare(project), b"model", "first")
    full_disk_at(monkeypatch, request, "model.pth")
    with pytest.raises(OSError):
        install_model(request)
    assert [p.name for p in model_folder(project).iterdir()] == [request.run_dir.parent.name]  # no card


@pytest.fixture
def window(qtbot, tmp_path):
    from isegformer_app.ui.main_window import MainWindow
    from tests.fakes import DiskPredictor

    win = MainWindow(Settings.load(tmp_path / "config"), engines={"disks": lambda: DiskPredictor()})
    qtbot.addWidget(win)
    return win


def test_dialog_runs_a_separate_process_and_cancel_stops_it_within_a_second(qtbot, window, tmp_path):
    from isegformer_app.ui.training_run import TrainingDialog

    project = annotated_project(tmp_path / "cells", (2, 2, 2))
    request = quick_request(project, tmp_path)
    qtbot.waitUntil(lambda: window.models.active[0] != "", timeout=10_000)
    before = window.models.active
    dialog = TrainingDialog(window, window, request)
    qtbot.addWidget(dialog)
    assert dialog.process.processId() > 0  # not this process
    qtbot.waitUntil(lambda: dialog.monitor.last_step is not None or not dialog.running, timeout=120_000)
    assert dialog.running, dialog.status.text()
    assert "samples" in dialog.status.text() and "left" in dialog.status.text()
    started = time.perf_counter()
    dialog.cancel()
    qtbot.waitUntil(lambda: not dialog.running, timeout=5000)
    assert time.perf_counter() - started < 1.0
    assert dialog.status.text().startswith("Training cancelled")
    assert window.models.active == before and project_model_path(project) is None
    qtbot.waitUntil(lambda: not request.run_dir.parent.exists(), timeout=5000)  # removed in the background


def test_a_killed_training_process_is_noticed_and_said(qtbot, window, tmp_path):
    from isegformer_app.ui.training_run import TrainingDialog

    project = annotated_project(tmp_path / "cells", (2, 2, 2))
    dialog = TrainingDialog(window, window, quick_request(project, tmp_path))
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: dialog.process.processId() > 0, timeout=5000)
    import os
    import signal

    os.kill(dialog.process.processId(), signal.SIGKILL)  # not through Cancel: "the process died"
    qtbot.waitUntil(lambda: not dialog.running, timeout=5000)
    assert "ended unexpectedly" in dialog.status.text()
    assert project_model_path(project) is None


def test_a_finished_run_shows_the_table_saves_the_model_and_switches_on_request(qtbot, window, tmp_path):
    from isegformer_app.ui.training_run import TrainingDialog

    project = annotated_project(tmp_path / "cells", (2, 2, 2))
    request = dataclasses.replace(quick_request(project, tmp_path), max_minutes=0.02)
    dialog = TrainingDialog(window, window, request)
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: not dialog.running, timeout=180_000)
    assert dialog.status.text().startswith("Done"), dialog.status.text()
    rows = {
        dialog.table.item(r, 0).text(): dialog.table.item(r, 2).text() for r in range(dialog.table.rowCount())
    }
    assert rows["held-out objects"] == "1" and {"NoC@85", "NoC@90", "mIoU@1"} <= set(rows)
    assert dialog.model_path == project_model_path(project) and not dialog.use_button.isHidden()
    card = json.loads((model_folder(project) / "finetune.json").read_text())
    assert card["project"] == "cells" and card["objects"]["train"] == 4
    dialog.use_button.click()
    qtbot.waitUntil(lambda: window.models.active == ("checkpoint", str(dialog.model_path)), timeout=60_000)
    window.open_path(str(tmp_path / "cells"))
    qtbot.waitUntil(lambda: window.project is not None, timeout=10_000)
    model_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Model")
    model_menu.aboutToShow.emit()
    assert window.actions_by_name["project_model"].isEnabled()


def test_closing_the_window_during_a_run_asks_then_cancels_it(qtbot, window, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    from isegformer_app.ui.training_run import TrainingDialog

    project = annotated_project(tmp_path / "cells", (2, 2, 2))
    window.training.dialog = dialog = TrainingDialog(window, window, quick_request(project, tmp_path))
    qtbot.waitUntil(lambda: dialog.process.processId() > 0, timeout=5000)
    asked = []
    monkeypatch.setattr(
        QMessageBox, "question", lambda *args: asked.append(args) or QMessageBox.StandardButton.No
    )
    assert window.close() is False and dialog.running  # "No": the window and the run stay
    monkeypatch.setattr(
        QMessageBox, "question", lambda *args: asked.append(args) or QMessageBox.StandardButton.Yes
    )
    assert window.close() is True
    assert (
        len(asked) == 2
        and not dialog.running
        and dialog.process.state() == dialog.process.ProcessState.NotRunning
    )


def test_train_on_an_open_folder_goes_through_the_same_start(qtbot, window, tmp_path, monkeypatch):
    from PySide6.QtCore import QProcess
    from PySide6.QtWidgets import QMessageBox

    started = []
    monkeypatch.setattr(QProcess, "start", lambda process, *command: started.append(command))
    window.actions_by_name["train_project"].trigger()  # nothing open: one message, nothing starts
    assert window.training.dialog is None
    assert window.message_label.text() == "Open a folder of images or a volume first."
    project = annotated_project(tmp_path / "cells", (2, 1, 1))
    window.open_path(str(tmp_path / "cells"))
    qtbot.waitUntil(lambda: window.project is not None and window.doc is not None, timeout=10_000)
    window.actions_by_name["train_project"].trigger()
    qtbot.waitUntil(lambda: window.training.dialog is not None, timeout=10_000)
    request = window.training.dialog.request
    assert request.model_dir == model_folder(project)
    assert (request.objects, request.images, request.unit) == (4, 3, "image")
    assert "4 finished objects in 3 images" in window.training.dialog.summary.text() and len(started) == 1
    # the run never ends (its process was not started): closing the window asks, and the answer cancels it
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
