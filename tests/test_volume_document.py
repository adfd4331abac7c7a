"""Qt-free tests of volume annotation: slices, undo per slice, caches, propagation, export, re-import."""

from __future__ import annotations

import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from fakes import DiskPredictor

from isegformer_app.benchmarks.dicom_write import SeriesOptions, write_dicom_series
from isegformer_app.state.propagation import interior_point, propagate_document
from isegformer_app.state.sidecar_codec import SidecarMismatch
from isegformer_app.state.volume_autosave import (
    read_volume_sidecar,
    restore_volume_document,
    save_volume_document,
    volume_sidecar_path,
)
from isegformer_app.state.volume_document import VolumeDocument
from isegformer_app.state.volume_export import (
    export_volume_labels,
    export_volume_slices,
    import_volume_labels,
    table_paths,
)
from isegformer_app.volumes import (
    LabelVolume,
    VolumeError,
    load_label_nifti,
    open_volume,
    read_itksnap_labels,
)
from isegformer_app.volumes.label_tables import MAX_TABLE_BYTES

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"
RADIUS = 4


def disks(with_prev_mask: bool = False) -> DiskPredictor:
    return DiskPredictor(radius=RADIUS, with_prev_mask=with_prev_mask)


def click(doc: VolumeDocument, predictor: DiskPredictor, y: int, x: int, positive: bool = True) -> None:
    """A user click, predicted like the app's worker does."""
    doc.add_click(y, x, positive)
    if doc.needs_prediction():
        predictor.set_image(doc.model_image())
        prediction = predictor.predict(doc.clicks, doc.prev_state_for_request())
        assert doc.set_prediction(list(doc.clicks), prediction)


def disk(shape, cy, cx, r=RADIUS) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


@pytest.fixture(scope="module")
def dicom_folder(tmp_path_factory) -> Path:
    image = nib.load(NIBABEL_DATA / "anatomical.nii")
    stored = np.asarray(image.dataobj).astype(np.int16)[:, :, :12]
    folder = tmp_path_factory.mktemp("dicom") / "series"
    write_dicom_series(stored, image.affine, folder, SeriesOptions(seed=1))
    return folder


def annotate_and_export(doc: VolumeDocument, tmp_path: Path) -> np.ndarray:
    """Two objects over three axial slices plus one coronal edit; returns the expected display labels."""
    predictor = disks()
    expected = np.zeros(doc.volume.shape, np.uint8)
    for z in (3, 4, 6):
        doc.set_view("axial", z)
        click(doc, predictor, 10, 12)
        expected[z][disk(doc.shape, 10, 12)] = 1
    doc.finish_object("organ", (10, 200, 30))
    doc.set_view("coronal", 5)
    click(doc, predictor, 4, 20)
    coronal = np.zeros((doc.volume.shape[0], doc.volume.shape[2]), bool)
    coronal[disk(doc.shape, 4, 20)] = True
    expected[::-1, 5, :][coronal] = 2
    doc.finish_object("lesion", (250, 0, 0))
    assert np.array_equal(doc.labels.data, expected)
    return expected


@pytest.mark.parametrize("source", ["nifti", "dicom"])
def test_annotate_export_nifti_keeps_geometry_and_voxels(source, tmp_path, dicom_folder) -> None:
    path = NIBABEL_DATA / "anatomical.nii" if source == "nifti" else dicom_folder
    volume = open_volume(path)
    doc = VolumeDocument(volume, path)
    expected = annotate_and_export(doc, tmp_path)
    out = tmp_path / "labels.nii.gz"
    written = export_volume_labels(doc.export_labels(), volume, out)
    assert written == [out, *table_paths(out)]
    saved = nib.load(out)
    assert saved.shape == volume.source.shape
    np.testing.assert_allclose(saved.affine, volume.source.affine, atol=1e-5)
    on_disk = np.asarray(saved.dataobj)
    assert on_disk.dtype == np.uint8
    assert np.array_equal(volume.source.to_display_array(on_disk), expected)
    counts = np.bincount(expected.ravel(), minlength=3)
    assert np.array_equal(np.bincount(on_disk.ravel(), minlength=3), counts)
    table = read_itksnap_labels(written[1])
    assert table[1].name == "organ" and table[1].color == (10, 200, 30) and table[2].name == "lesion"
    assert "2 lesion 250 0 0 255" in written[2].read_text()
    # re-import for correction: same labels; names, colours and visibility from the ITK-SNAP file beside it
    again = VolumeDocument(volume, path)
    imported = import_volume_labels(out, volume)
    assert imported.table == written[1] and "labels_itksnap.txt" in imported.summary()
    again.import_labels(imported.labels)
    assert np.array_equal(again.labels.data, expected) and [o.uid for o in again.object_list] == [1, 2]
    assert [(o.label, o.color) for o in again.object_list] == [(o.label, o.color) for o in doc.object_list]
    assert [o.label for o in again.object_list] == ["organ", "lesion"]
    again.activate(1)  # correction of an imported object: its pixels are the previous mask of the first click
    again.set_view("axial", 3)
    again.add_click(30, 20, True)
    assert again.prev_state_for_request().prob.sum() == (expected[3] == 1).sum() > 20
    assert np.array_equal(again.prev_state_for_request().prob > 0.5, expected[3] == 1)
    again.undo(), again.undo()
    assert not again.labels.data.any() and again.object_list == []


def test_reimport_reads_a_hand_edited_or_damaged_label_table_safely(tmp_path) -> None:
    volume = open_volume(NIBABEL_DATA / "anatomical.nii")
    labels = LabelVolume.empty(volume.shape)
    labels.data[3, 10:20, 10:20], labels.data[4, 10:20, 10:20] = 1, 2
    out = tmp_path / "edited.nii.gz"
    export_volume_labels(labels, volume, out)
    itk, _ = table_paths(out)
    itk.write_bytes(
        # Latin-1 name, colour and opacity out of range; an opacity not a number; a value beyond uint16
        b'    1   300   10   20  9999999  1  1    "caf\xe9 \xff"\n'
        b'    2   10   20   30   1.2.3  1  1    "bad opacity"\n'
        b'70000   10   20   30   1.0  1  1    "beyond uint16"\n'
    )
    table = read_itksnap_labels(itk)
    assert sorted(table) == [1] and table[1].color == (255, 10, 20) and table[1].opacity == 1.0
    imported = import_volume_labels(out, volume)
    assert imported.table == itk
    names = {value: info.name for value, info in imported.labels.labels.items()}
    assert names == {1: "caf\ufffd \ufffd", 2: "Label 2"}

    itk.write_bytes(b"#" * (MAX_TABLE_BYTES + 1))  # not a label table: the map still imports
    imported = import_volume_labels(out, volume)
    assert imported.table is None and "could not be read" in imported.summary()
    assert imported.labels.labels[1].name == "Label 1" and imported.labels.present_values() == [1, 2]
    itk.unlink()
    assert "no label description file" in import_volume_labels(out, volume).summary()


def test_reimport_mismatch_is_a_clear_error(tmp_path) -> None:
    volume = open_volume(NIBABEL_DATA / "anatomical.nii")
    wrong_shape = tmp_path / "small.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), volume.source.affine), wrong_shape)
    with pytest.raises(VolumeError, match="shape"):
        load_label_nifti(wrong_shape, volume)
    shifted = volume.source.affine.copy()
    shifted[0, 3] += 7.0
    wrong_affine = tmp_path / "shifted.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(volume.source.shape, np.uint8), shifted), wrong_affine)
    with pytest.raises(VolumeError, match="not aligned"):
        load_label_nifti(wrong_affine, volume)


def test_undo_redo_is_per_slice_and_cache_avoids_predictions() -> None:
    volume = open_volume(NIBABEL_DATA / "anatomical.nii")
    doc = VolumeDocument(volume, NIBABEL_DATA / "anatomical.nii")
    predictor = disks()
    doc.set_view("axial", 5)
    click(doc, predictor, 10, 10)
    click(doc, predictor, 20, 20)
    doc.set_view("axial", 8)
    click(doc, predictor, 30, 15)
    on_8 = doc.labels.data[8].copy()
    doc.set_view("axial", 5)
    assert doc.undo()  # undoes the second click of slice 5, not the click on slice 8
    assert len(doc.clicks) == 1 and not doc.labels.data[5][20, 20] and doc.labels.data[5][10, 10]
    assert np.array_equal(doc.labels.data[8], on_8)
    calls = len(predictor.calls)
    assert doc.redo() and doc.labels.data[5][20, 20] and not doc.needs_prediction()
    doc.set_view("axial", 8)  # revisit: the prediction comes from the slice's cache
    assert not doc.needs_prediction() and doc.prob is not None and doc.current_mask()[30, 15]
    doc.set_view("axial", 5)
    doc.undo(), doc.undo()
    assert not doc.labels.data[5].any() and doc.labels.data[8].any()
    doc.redo()
    assert not doc.needs_prediction() and doc.labels.data[5][10, 10]
    assert len(predictor.calls) == calls  # no prediction needed for any of it
    # negative click shrinks the mask and gives the pixels back; an eraser stroke is undone per slice
    click(doc, predictor, 10, 10, positive=False)
    assert not doc.labels.data[5][10, 10]
    doc.brush_stroke([(30, 5), (30, 25)], radius=1, erase=False)
    assert doc.labels.data[5][30, 5:26].all()
    doc.undo()
    assert not doc.labels.data[5][30, 12]
    assert doc.object_list[0].uid == 1 and doc.active == 1


def test_finish_delete_and_volume_undo() -> None:
    volume = open_volume(NIBABEL_DATA / "anatomical.nii")
    doc = VolumeDocument(volume, NIBABEL_DATA / "anatomical.nii")
    predictor = disks()
    click(doc, predictor, 15, 15)
    first = doc.finish_object("a", (1, 2, 3))
    assert first.uid == 1 and doc.active is None and doc.sessions == {}
    click(doc, predictor, 15, 20)  # starts object 2, on top of object 1 where they overlap
    assert doc.active == 2 and doc.label_slice()[15, 20] == 2 and doc.label_slice()[15, 13] == 1
    doc.reset_clicks()
    assert doc.label_slice()[15, 16] == 1  # object 1's pixels come back
    doc.undo()
    doc.finish_object("b", (4, 5, 6))
    doc.delete_object(1)
    assert 1 not in doc.labels.data and [o.uid for o in doc.object_list] == [2]
    doc.undo()
    assert doc.label_slice()[15, 13] == 1 and doc.label_slice()[15, 20] == 2
    doc.undo()  # finish of object 2 undone: its clicks are back
    assert doc.active == 2 and len(doc.clicks) == 1


def test_propagation_uses_prev_mask_or_auto_clicks_and_cancel_keeps_done(tmp_path) -> None:
    volume = open_volume(NIBABEL_DATA / "anatomical.nii")
    for with_prev in (True, False):
        doc = VolumeDocument(volume, NIBABEL_DATA / "anatomical.nii")
        predictor = disks(with_prev_mask=with_prev)
        doc.set_view("axial", 10)
        click(doc, predictor, 20, 16)
        click(doc, predictor, 20, 22)
        source = doc.current_mask()
        predictor.calls.clear(), predictor.prev_given.clear()
        assert propagate_document(doc, predictor, 11) == 1
        doc.set_view("axial", 11)
        first = doc.clicks[0]
        assert first.is_positive and (first.y, first.x) == interior_point(source)
        assert source[int(first.y), int(first.x)]
        if with_prev:  # one pass with the source as previous mask: the mask is copied exactly
            assert (predictor.calls, predictor.prev_given) == ([1], [True])
            assert np.array_equal(doc.current_mask(), source)
        else:  # a second, automatic error click covers the rest of the source mask
            assert predictor.calls == [1, 2] and len(doc.clicks) == 2
            assert (doc.current_mask() & source).sum() / (doc.current_mask() | source).sum() > 0.85
        click(doc, predictor, 5, 5)  # the propagated slice stays editable with clicks
        assert doc.current_mask()[5, 5] and len(doc.clicks) == 3 - int(with_prev)
    # a range with cancel: stops early, keeps the slices already done, each undoable on its slice
    doc.set_view("axial", 10)
    cancel = threading.Event()
    seen = []

    def progress(fraction: float, message: str) -> None:  # the one progress contract: fraction, message
        seen.append((fraction, message))
        if len(seen) == 4:  # reported before slice 4 of 8: three are done
            cancel.set()

    assert propagate_document(doc, disks(with_prev_mask=True), 2, progress, cancel) == 3
    assert seen[0] == (0.0, "slice 9 (1 of 8)") and seen[3] == (3 / 8, "slice 6 (4 of 8)")
    assert seen[-1] == (1.0, "3 of 8 slices") and all(doc.labels.data[z].any() for z in (7, 8, 9))
    assert not doc.labels.data[6].any() and not doc.labels.data[2].any()
    doc.set_view("axial", 8)
    doc.undo()
    assert not doc.labels.data[8].any() and doc.labels.data[7].any()


def test_autosave_round_trip_and_mismatch(tmp_path) -> None:
    path = NIBABEL_DATA / "anatomical.nii"
    volume = open_volume(path)
    doc = VolumeDocument(volume, path)
    predictor = disks()
    doc.set_view("sagittal", 12)
    click(doc, predictor, 8, 9)
    sidecar = volume_sidecar_path(path, volume, tmp_path)
    save_volume_document(doc, sidecar)
    assert not doc.dirty and sidecar.name == "anatomical.nii.isegformer-volume.npz"
    again = VolumeDocument(volume, path)
    restore_volume_document(again, read_volume_sidecar(sidecar))
    assert np.array_equal(again.labels.data, doc.labels.data)
    assert (again.axis, again.index) == ("sagittal", 12)
    assert again.active == 1 and len(again.clicks) == 1 and not again.needs_prediction()
    click(again, predictor, 20, 20)  # annotation goes on where it stopped
    assert again.current_mask()[8, 9] and again.current_mask()[20, 20]
    other = open_volume(NIBABEL_DATA / "example4d.nii.gz", frame=1)
    with pytest.raises(SidecarMismatch, match="shape"):  # made for other data, as for images
        restore_volume_document(VolumeDocument(other, "x.nii"), read_volume_sidecar(sidecar))


def test_slice_png_export_with_cancel(tmp_path) -> None:
    path = NIBABEL_DATA / "anatomical.nii"
    doc = VolumeDocument(open_volume(path), path)
    predictor = disks()
    for z in (2, 4, 9):
        doc.set_view("axial", z)
        click(doc, predictor, 12, 12)
    written = export_volume_slices(doc.export_labels(), doc.volume, tmp_path / "brats", "case 1", "brats")
    assert [w.index for w in written] == [2, 4, 9]
    assert written[0].mask_path == tmp_path / "brats" / "annotation" / "case_1_axial_0002.png"
    import cv2

    mask = cv2.imread(str(written[1].mask_path), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(mask, doc.labels.data[4])
    class StopAfterOnePair:  # the user cancels once the first image/mask pair is on disk
        def is_set(self) -> bool:
            return len(list((tmp_path / "oai").rglob("*.png"))) >= 2

    stopped = export_volume_slices(doc.export_labels(), doc.volume, tmp_path / "oai", "c", "oai_zib",
                                   cancel=StopAfterOnePair())
    assert [w.index for w in stopped] == [2]
    with pytest.raises(VolumeError, match="empty"):
        empty = VolumeDocument(doc.volume, path).export_labels()
        export_volume_slices(empty, doc.volume, tmp_path, "c", "brats")
