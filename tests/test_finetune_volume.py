"""Training on a volume's annotations: the slices each finished object was annotated on (recorded, undone,
autosaved), exported in their planes as the predictor sees them, and the window's Model menu on a volume."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pytest
from fakes import DiskPredictor

from isegformer_app.state.finetune_job import (
    TrainingInputError,
    installed_model,
    prepare_training,
    volume_source,
)
from isegformer_app.state.imageio import read_png
from isegformer_app.state.labels import LabelList
from isegformer_app.state.sidecar_codec import SidecarError
from isegformer_app.state.volume_autosave import (
    read_volume_sidecar,
    restore_volume_document,
    save_volume_document,
    volume_sidecar_path,
)
from isegformer_app.state.volume_document import VolumeDocument
from isegformer_app.volumes import LabelVolume, open_volume

RADIUS = 3


@pytest.fixture
def nifti(tmp_path) -> Path:
    """30 x 40 x 6 voxels of 0.5 x 1 x 4 mm: coronal pixels are 8 times taller than wide."""
    rng = np.random.default_rng(0)
    data = rng.integers(0, 400, (30, 40, 6)).astype(np.int16)
    data[5:20, 10:30, :] += 600  # something brighter in the middle
    path = tmp_path / "knee.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([0.5, 1.0, 4.0, 1.0])), path)
    return path


def click(doc: VolumeDocument, y: int, x: int) -> None:
    """A positive click on the shown slice, predicted like the app's worker does (a disk)."""
    doc.add_click(y, x, True)
    predictor = DiskPredictor(radius=RADIUS)
    predictor.set_image(doc.model_image())
    assert doc.set_prediction(list(doc.clicks), predictor.predict(doc.clicks))


def annotate(doc: VolumeDocument, where: list[tuple[str, int, int, int]], label: str = "bone") -> int:
    """One object clicked at (axis, index, y, x) of each entry, then finished; returns its uid."""
    for axis, index, y, x in where:
        doc.set_view(axis, index)
        click(doc, y, x)
    return doc.finish_object(label, (200, 0, 0)).uid


def test_finishing_records_the_annotated_slices_undoably_and_the_autosave_keeps_them(tmp_path, nifti):
    volume = open_volume(nifti)
    doc = VolumeDocument(volume, nifti)
    doc.set_view("axial", 5)
    doc.add_click(10, 10, True)
    doc.reset_clicks()  # a slice whose clicks were all taken back: not an annotated slice
    first = annotate(doc, [("axial", 2, 10, 10), ("axial", 4, 10, 10), ("coronal", 20, 3, 15)])
    assert doc.finished_slices == {first: {("axial", 2), ("axial", 4), ("coronal", 20)}}
    assert doc.undo() and doc.finished_slices == {} and doc.active == first  # the finish undone
    assert doc.redo() and doc.finished_slices == {first: {("axial", 2), ("axial", 4), ("coronal", 20)}}
    doc.activate(first)  # edited again on a sagittal slice: its slices add up
    doc.set_view("sagittal", 12)
    click(doc, 2, 25)
    doc.finish_object("bone", (200, 0, 0))
    assert doc.finished_slices[first] == {("axial", 2), ("axial", 4), ("coronal", 20), ("sagittal", 12)}
    doc.undo()
    assert doc.finished_slices[first] == {("axial", 2), ("axial", 4), ("coronal", 20)}
    doc.redo()
    second = annotate(doc, [("axial", 1, 30, 20)])
    doc.delete_object(second)
    assert second not in doc.finished_slices
    doc.undo()
    assert doc.finished_slices[second] == {("axial", 1)}

    sidecar = volume_sidecar_path(nifti, volume, tmp_path / "autosaves")
    save_volume_document(doc, sidecar)
    again = VolumeDocument(volume, nifti)
    restore_volume_document(again, read_volume_sidecar(sidecar))
    assert again.finished_slices == doc.finished_slices and len(again.finished_slices) == 2
    older = read_volume_sidecar(sidecar)
    del older["meta"]["finished_slices"]  # an autosave of an earlier version: it loads, without slices
    restore_volume_document(fresh := VolumeDocument(volume, nifti), older)
    assert fresh.finished_slices == {} and len(fresh.object_list) == 2
    broken = read_volume_sidecar(sidecar)
    broken["meta"]["finished_slices"][0]["slices"] = [["coronal", 40]]  # coronal slices are 0..39
    with pytest.raises(SidecarError, match="coronal slice 40 is outside"):
        restore_volume_document(VolumeDocument(volume, nifti), broken)

    doc.import_labels(LabelVolume(np.ones(volume.shape, np.uint8)))  # a label file: nobody annotated it
    assert doc.finished_slices == {}
    doc.undo()
    assert set(doc.finished_slices) == {first, second}


def test_annotated_slices_are_exported_in_their_planes_on_the_predictors_grid(tmp_path, nifti):
    volume = open_volume(nifti)
    assert volume.shape == (6, 40, 30) and volume.pixel_aspect("coronal") == 8.0
    imported = np.zeros(volume.shape, np.uint8)
    imported[3, 30:35, 5:10] = 9  # from a label file: no annotated slice, not trained on
    doc = VolumeDocument(volume, nifti, labels=LabelVolume(imported))
    bone = annotate(doc, [("axial", 2, 10, 10), ("axial", 4, 10, 10)])
    cartilage = annotate(doc, [("coronal", 20, 3, 15)], "cartilage")
    meniscus = annotate(doc, [("axial", 2, 30, 22)], "meniscus")
    doc.set_view("axial", 4)
    click(doc, 30, 5)  # the active object is not finished: left out
    autosaves = tmp_path / ".isegformer"
    source = volume_source(doc, autosaves)
    assert source.folder == autosaves / "finetuned-volumes" / "knee.nii.gz"
    request = prepare_training(source.copy_objects(), source, None, LabelList())
    assert (request.objects, request.images, request.unit, request.project) == (4, 3, "slice", "knee.nii.gz")
    assert request.run_dir.parent.parent == source.folder and installed_model(source.folder) is None
    images = request.data_dir / "images"
    names = ["knee_nii_gz_axial_0002.png", "knee_nii_gz_axial_0004.png", "knee_nii_gz_coronal_0020.png"]
    assert sorted(p.name for p in images.iterdir()) == names
    expected = {  # (axis, index) -> the objects annotated there, in instance id order
        ("axial", 2): [bone, meniscus], ("axial", 4): [bone], ("coronal", 20): [cartilage]
    }  # fmt: skip
    for name, ((axis, index), uids) in zip(names, expected.items(), strict=True):
        image = cv2.imread(str(images / name), cv2.IMREAD_UNCHANGED)[:, :, ::-1]
        assert np.array_equal(image, volume.slice_image(axis, index))  # exactly the predictor's input
        label_slice = doc.label_slice(axis, index)
        instances = sum(k * (label_slice == uid) for k, uid in enumerate(uids, start=1))
        assert np.array_equal(read_png(request.data_dir / "masks" / name), instances)
    assert image.shape == (6, 30, 3)  # the coronal slice: 6 slices of 4 mm, not stretched to 48 rows
    axial = doc.label_slice("axial", 2)
    assert axial[20, 15] == cartilage and read_png(request.data_dir / "masks" / names[0])[20, 15] == 0
    meta = json.loads((request.data_dir / "labels.json").read_text())
    assert [i["label"] for i in meta["images"]["knee_nii_gz_axial_0002"]["instances"]] == ["bone", "meniscus"]


def test_too_few_finished_objects_on_a_volume_say_so_with_the_number(tmp_path, nifti):
    doc = VolumeDocument(open_volume(nifti), nifti)
    annotate(doc, [("axial", 2, 10, 10), ("axial", 3, 10, 10)])
    doc.set_view("axial", 4)
    click(doc, 20, 20)  # not finished
    source = volume_source(doc, tmp_path / ".isegformer")
    with pytest.raises(TrainingInputError, match=r"This volume has 2 finished objects on annotated slices "
                       r"\(one per object and slice\); training needs at least 4\."):  # fmt: skip
        prepare_training(source.copy_objects(), source, None, LabelList())
    one_slice = VolumeDocument(open_volume(nifti), nifti)
    annotate(one_slice, [("axial", 2, 10, 10)])
    annotate(one_slice, [("axial", 2, 30, 20)])
    source = volume_source(one_slice, tmp_path / ".isegformer")
    with pytest.raises(TrainingInputError, match="in one slice; training needs objects in at least 2 slices"):
        prepare_training(source.copy_objects(), source, None, LabelList(), min_objects=2)
    assert not source.folder.exists()  # nothing was started


def test_the_window_trains_on_the_open_volume_and_offers_its_model(qtbot, tmp_path, nifti, monkeypatch):
    from PySide6.QtCore import QProcess

    from isegformer_app.settings import Settings
    from isegformer_app.ui.main_window import MainWindow

    started = []
    monkeypatch.setattr(QProcess, "start", lambda process, *command: started.append(command))
    window = MainWindow(Settings.load(tmp_path / "config"), engines={"disks": lambda: DiskPredictor(RADIUS)})
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: window.models.active == ("engine", "disks"), timeout=10_000)
    assert window.open_path(nifti)
    qtbot.waitUntil(lambda: window.volume.active, timeout=10_000)
    doc = window.volume.doc
    for index in (1, 3):
        for y, x in ((10, 10), (30, 20)):
            window.volume.show_slice("axial", index)
            doc.add_click(y, x, True)
            qtbot.waitUntil(lambda: doc.prob is not None and not doc.needs_prediction(), timeout=5000)
            window.finish_object()
    assert len(doc.finished_slices) == 4

    window.actions_by_name["train_project"].trigger()
    qtbot.waitUntil(lambda: window.training.dialog is not None, timeout=10_000)
    dialog = window.training.dialog
    request = dialog.request
    folder = tmp_path / ".isegformer" / "finetuned-volumes" / "knee.nii.gz"
    assert (request.model_dir, request.objects, request.images, request.weights) == (folder, 4, 2, None)
    assert "4 finished objects in 2 slices" in dialog.summary.text()
    assert started and "--data-root" in started[0][1]
    assert len(list((request.data_dir / "masks").iterdir())) == 2
    model_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Model")
    model_menu.aboutToShow.emit()
    assert not window.actions_by_name["project_model"].isEnabled()

    (folder / "model.pth").write_bytes(b"the volume's model")  # as a finished run installs it
    model_menu.aboutToShow.emit()
    assert window.actions_by_name["project_model"].isEnabled()
    dialog.running = False
    window.actions_by_name["train_project"].trigger()  # a second run starts from the volume's model
    qtbot.waitUntil(lambda: window.training.dialog is not dialog, timeout=10_000)
    second = window.training.dialog
    assert second.request.weights == folder / "model.pth"

    # the run ends and its model cannot be saved (a full disk): said, and the earlier model stays
    (second.request.run_dir / "checkpoints").mkdir(parents=True)
    (second.request.run_dir / "checkpoints" / "last_checkpoint.pth").write_bytes(b"new")
    (second.request.run_dir / "finetune.json").write_text("{}")
    (second.request.run_dir / "finetune.md").write_text("# new")
    second.monitor.result = {"minutes": 1.0}

    def full_disk(src, dst) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", full_disk)
    second._finished(0, QProcess.ExitStatus.NormalExit)
    monkeypatch.undo()
    assert second.status.text() == (
        f"Could not save the new model ([Errno {errno.ENOSPC}] {os.strerror(errno.ENOSPC)}); "
        "the active model is unchanged."
    )
    assert (folder / "model.pth").read_bytes() == b"the volume's model"
    assert window.models.active == ("engine", "disks")
    qtbot.waitUntil(lambda: not second.request.run_dir.parent.exists(), timeout=5000)
