"""DICOM series loading (isegformer_app.volumes): pydicom test files, series written from real volumes."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate

from isegformer_app.benchmarks.dicom_write import SeriesOptions, write_dicom_series
from isegformer_app.volumes import (
    LabelVolume,
    LoadCancelled,
    VolumeError,
    load_dicom,
    load_label_nifti,
    open_volume,
    save_label_nifti,
    scan_dicom_folder,
)

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"
DICOMDIR_TESTS = Path(pydicom.__file__).parent / "data" / "test_files" / "dicomdirtests"


def dicom_world_lps(path: Path, row: int, column: int) -> np.ndarray:
    """LPS position of pixel (row, column) computed straight from the file's own tags."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    position = np.array([float(v) for v in ds.ImagePositionPatient])
    orientation = np.array([float(v) for v in ds.ImageOrientationPatient])
    row_spacing, column_spacing = (float(v) for v in ds.PixelSpacing)
    return position + column * column_spacing * orientation[:3] + row * row_spacing * orientation[3:]


def lps_to_ras_point(point: np.ndarray) -> np.ndarray:
    return point * np.array([-1.0, -1.0, 1.0])


def assert_matches_reference(volume, reference_data: np.ndarray, reference_affine: np.ndarray,
                             scale: float = 1.0, offset: float = 0.0) -> None:
    """Every display voxel has the value of the reference voxel at the same world position."""
    z, y, x = np.meshgrid(*(np.arange(s) for s in volume.shape), indexing="ij")
    homogeneous = np.stack([x.ravel(), y.ravel(), z.ravel(), np.ones(x.size)])
    ijk = (np.linalg.inv(reference_affine) @ volume.affine @ homogeneous)[:3]
    rounded = np.rint(ijk).astype(int)
    assert np.abs(ijk - rounded).max() < 1e-3
    expected = reference_data[tuple(rounded)] * scale + offset
    np.testing.assert_array_equal(volume.voxels.ravel(), expected.astype(np.float32))


@pytest.fixture(scope="module")
def anatomical() -> nib.Nifti1Image:
    return nib.load(NIBABEL_DATA / "anatomical.nii")


@pytest.fixture(scope="module")
def series40(tmp_path_factory, anatomical) -> tuple[Path, list[Path]]:
    """40 coronal slices of nibabel's anatomical.nii (slope 0.5, intercept -100), shuffled file names."""
    data = np.asarray(anatomical.dataobj).astype(np.int16)
    stored = np.ascontiguousarray(data.transpose(0, 2, 1)[:, :, :40])
    affine = anatomical.affine[:, [0, 2, 1, 3]]
    folder = tmp_path_factory.mktemp("series40")
    paths = write_dicom_series(stored, affine, folder, SeriesOptions(slope=0.5, intercept=-100.0))
    return folder, paths


@pytest.fixture(scope="module")
def oblique(tmp_path_factory) -> tuple[Path, list[Path], nib.Nifti1Image]:
    """Frame 0 of nibabel's example4d.nii.gz (an oblique acquisition) as a 24-slice CT series."""
    image = nib.load(NIBABEL_DATA / "example4d.nii.gz")
    stored = np.asarray(image.dataobj[..., 0]).astype(np.int16)
    folder = tmp_path_factory.mktemp("oblique")
    paths = write_dicom_series(stored, image.affine, folder, SeriesOptions(modality="CT", seed=3))
    return folder, paths, image


def test_ct_small_rescale_geometry_and_single_slice_warning() -> None:
    path = Path(get_testdata_file("CT_small.dcm"))
    ds = pydicom.dcmread(path)
    volume = load_dicom(path)
    assert volume.shape == (1, 128, 128) and volume.modality == "CT"
    expected = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(volume.voxels[0], expected)
    assert volume.voxels.min() == -896.0
    assert any("only one slice" in w and "SpacingBetweenSlices (5 mm)" in w for w in volume.warnings)
    assert volume.spacing == pytest.approx((5.0, 0.661468, 0.661468), abs=1e-5)
    for row, column in ((0, 0), (17, 99), (127, 5)):
        world = volume.index_to_world(0, row, column)
        np.testing.assert_allclose(world, lps_to_ras_point(dicom_world_lps(path, row, column)), atol=1e-3)
    assert [p.name for p in volume.window_presets[:2]] == ["CT soft tissue", "CT brain"]


def test_mr_small_dicom_window_is_first_preset_and_model_input() -> None:
    volume = load_dicom(get_testdata_file("MR_small.dcm"))
    preset = volume.window_presets[0]
    assert (preset.center, preset.width) == (600.0, 1600.0)
    image = volume.slice_image("axial", 0)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[..., 0], image[..., 2])
    values = volume.voxels[0]
    expected = np.rint(np.clip((values - (600 - 800)) / 1600, 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(image[..., 1], expected)
    assert image.max() > 200 and image.min() < 60


def test_enhanced_ct_per_frame_positions_and_shared_rescale() -> None:
    path = Path(get_testdata_file("eCT_Supplemental.dcm"))
    ds = pydicom.dcmread(path)
    volume = load_dicom(path)
    assert volume.shape == (2, 512, 512)
    assert volume.spacing == pytest.approx((10.0, 0.388672, 0.388672), abs=1e-5)
    assert volume.warnings == []
    stored = ds.pixel_array.astype(np.float32) - 1024.0  # shared PixelValueTransformation
    orientation = np.array([float(v) for v in ds.SharedFunctionalGroupsSequence[0]
                            .PlaneOrientationSequence[0].ImageOrientationPatient])
    for frame in range(2):
        position = np.array([float(v) for v in ds.PerFrameFunctionalGroupsSequence[frame]
                             .PlanePositionSequence[0].ImagePositionPatient])
        for row, column in ((3, 400), (250, 20)):
            lps = position + column * 0.388672 * orientation[:3] + row * 0.388672 * orientation[3:]
            z, y, x = np.rint(volume.world_to_index(lps_to_ras_point(lps))).astype(int)
            assert volume.voxels[z, y, x] == stored[frame, row, column]
    assert (volume.window_presets[0].center, volume.window_presets[0].width) == (49.0, 102.0)


def test_multiframe_without_geometry_warns_and_guesses() -> None:
    path = Path(get_testdata_file("emri_small.dcm"))
    volume = load_dicom(path)
    assert volume.shape == (10, 64, 64)
    np.testing.assert_array_equal(volume.voxels, pydicom.dcmread(path).pixel_array.astype(np.float32))
    joined = " | ".join(volume.warnings)
    assert "ImageOrientationPatient is missing" in joined
    assert "PixelSpacing is missing: assuming 1 mm" in joined
    assert "SpacingBetweenSlices (1.2 mm)" in joined
    assert volume.spacing == pytest.approx((1.2, 1.0, 1.0))


def test_rt_dose_grid_frame_offsets_and_dose_scaling() -> None:
    path = Path(get_testdata_file("rtdose.dcm"))
    ds = pydicom.dcmread(path)
    volume = load_dicom(path)
    assert volume.shape == (15, 10, 10) and volume.warnings == []
    assert volume.spacing == pytest.approx((5.0, 10.0, 10.0))
    np.testing.assert_allclose(volume.voxels, ds.pixel_array * float(ds.DoseGridScaling), rtol=1e-6)
    first = np.array([float(v) for v in ds.ImagePositionPatient])
    last_lps = first + np.array([0.0, 0.0, 70.0])
    np.testing.assert_allclose(volume.index_to_world(14, 0, 0), lps_to_ras_point(last_lps), atol=1e-4)


def test_colour_image_becomes_grey_and_undecodable_pixels_fail_clearly(tmp_path) -> None:
    rgb_path = Path(get_testdata_file("SC_rgb.dcm"))
    rgb = pydicom.dcmread(rgb_path).pixel_array.astype(np.float32)
    volume = load_dicom(rgb_path)
    np.testing.assert_allclose(volume.voxels[0], rgb @ np.array([0.299, 0.587, 0.114], np.float32), rtol=1e-6)
    assert "colour DICOM images were converted to grey (luminance)" in volume.warnings
    broken = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    broken.file_meta.TransferSyntaxUID = pydicom.uid.JPEG2000Lossless
    broken.PixelData = encapsulate([b"not a jpeg 2000 codestream" * 4])
    broken["PixelData"].VR = "OB"
    broken.save_as(tmp_path / "broken.dcm")
    with pytest.raises(VolumeError, match=r"(?s)cannot read its pixel data .*JPEG 2000 .*pylibjpeg"):
        load_dicom(tmp_path / "broken.dcm")


def test_shuffled_40_slice_series_sorted_by_position(series40, anatomical) -> None:
    folder, paths = series40
    assert sorted(p.name for p in paths) != [p.name for p in paths]  # names do not follow slice order
    volume = open_volume(folder)
    assert volume.warnings == []
    assert volume.shape == (25, 40, 33)
    assert volume.spacing == pytest.approx((2.0, 2.0, 2.0))
    assert nib.aff2axcodes(volume.affine) == ("L", "P", "S")
    data = np.asarray(anatomical.dataobj)
    assert_matches_reference(volume, data, anatomical.affine, scale=0.5, offset=-100.0)
    assert volume.metadata["slice_files"] == [str(p) for p in paths]


def test_oblique_series_geometry(oblique) -> None:
    folder, _, image = oblique
    volume = load_dicom(folder)
    assert volume.warnings == []
    # This affine's k axis points against row x column cosines, so sorting along the normal reverses it.
    reverse_k = np.diag([1.0, 1.0, -1.0, 1.0])
    reverse_k[2, 3] = image.shape[2] - 1
    np.testing.assert_allclose(volume.source.affine, image.affine @ reverse_k, atol=1e-4)
    assert abs(volume.source.affine[1, 2]) > 0.3  # really oblique
    assert_matches_reference(volume, np.asarray(image.dataobj[..., 0]), image.affine)


def test_label_roundtrip_keeps_geometry_and_world_position(oblique, tmp_path) -> None:
    folder, paths, _ = oblique
    volume = load_dicom(folder)
    chosen_file, row, column = paths[7], 10, 20
    expected_lps = dicom_world_lps(chosen_file, row, column)
    index = volume.world_to_index(lps_to_ras_point(expected_lps))
    assert np.abs(index - np.rint(index)).max() < 1e-3
    z, y, x = np.rint(index).astype(int)
    assert volume.voxels[z, y, x] == pydicom.dcmread(chosen_file).pixel_array[row, column]

    labels = LabelVolume.empty(volume.shape)
    labels.data[2:5, 30:40, 50:60] = 1
    labels.data[z, y, x] = 3
    out = save_label_nifti(labels, volume, tmp_path / "labels.nii.gz")
    assert [p.name for p in tmp_path.iterdir()] == ["labels.nii.gz"]  # no temporary file left
    saved = nib.load(out)
    assert saved.shape == volume.source.shape == (128, 96, 24)
    np.testing.assert_allclose(saved.affine, volume.source.affine, atol=1e-5)
    assert (int(saved.header["qform_code"]), int(saved.header["sform_code"])) == (1, 1)
    stored = np.asarray(saved.dataobj)
    assert stored.dtype == np.uint8
    assert np.count_nonzero(stored == 1) == np.count_nonzero(labels.data == 1) >= 299
    assert np.count_nonzero(stored == 3) == 1
    ijk = np.argwhere(stored == 3)[0]
    world_ras = (saved.affine @ np.r_[ijk, 1.0])[:3]
    np.testing.assert_allclose(lps_to_ras_point(world_ras), expected_lps, atol=1e-3)
    # The file grid of a DICOM series is (column, row, sorted slice).
    assert tuple(ijk) == (column, row, 23 - 7)
    np.testing.assert_array_equal(load_label_nifti(out, volume).data, labels.data)


def test_monochrome1_is_inverted(tmp_path, anatomical) -> None:
    data = np.asarray(anatomical.dataobj)[:, :, 10:14].astype(np.int16)
    write_dicom_series(data, anatomical.affine, tmp_path,
                       SeriesOptions(photometric="MONOCHROME1", window=(3000.0, 2000.0)))
    volume = load_dicom(tmp_path)
    low, high = float(data.min()), float(data.max())
    assert_matches_reference(volume, low + high - data.astype(np.float64), anatomical.affine)
    assert any("MONOCHROME1" in w for w in volume.warnings)
    assert volume.window_presets[0].center == pytest.approx(low + high - 3000.0)


def test_mixed_series_folder_lists_series_for_a_chooser() -> None:
    folder = DICOMDIR_TESTS / "98892001"
    scan = scan_dicom_folder(folder)
    summary = sorted((info.description, info.modality, info.n_slices) for info in scan.series)
    assert summary == [("Scout", "CT", 2), ("SmartScore - Gated 0.5 sec", "CT", 5)]
    with pytest.raises(VolumeError, match="contains 2 image series; choose one"):
        load_dicom(folder)
    five = next(info for info in scan.series if info.n_slices == 5)
    volume = load_dicom(folder, series_uid=five.uid)
    assert volume.shape == (5, 16, 16)
    assert volume.spacing[0] == pytest.approx(2.5)
    with pytest.raises(VolumeError, match="no series 'nope'"):
        load_dicom(folder, series_uid="nope")


def test_dicomdir_and_readme_are_skipped_with_reasons() -> None:
    scan = scan_dicom_folder(DICOMDIR_TESTS)
    reasons = {str(item.path.relative_to(DICOMDIR_TESTS)): item.reason for item in scan.skipped}
    assert reasons["DICOMDIR"] == reasons["TINY_ALPHA/DICOMDIR"] == "DICOMDIR index file"
    assert reasons["README.txt"] == "not a DICOM file"
    assert reasons["TINY_ALPHA/PT000000/ST000000/SE000000/IM00000A"] == "no pixel data (CT Image Storage)"
    assert len(scan.series) == 13
    assert sum(info.n_files for info in scan.series) == 31


def test_non_volume_files_in_folder_are_noted(series40, tmp_path) -> None:
    _, paths = series40
    ordered = sorted(paths, key=lambda p: pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber)
    for path in ordered[:5]:
        shutil.copy(path, tmp_path / path.name)
    shutil.copy(get_testdata_file("rtplan.dcm"), tmp_path / "rtplan.dcm")
    shutil.copy(get_testdata_file("liver.dcm"), tmp_path / "seg.dcm")
    (tmp_path / "notes.txt").write_text("scanner export\n")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    volume = load_dicom(tmp_path)
    assert volume.shape == (25, 5, 33)
    notes = volume.warnings
    assert "skipped notes.txt: not a DICOM file" in notes
    assert "skipped image.png: not a DICOM file" in notes
    assert "skipped rtplan.dcm: RT plan (RTPLAN), not an image" in notes
    assert "skipped seg.dcm: segmentation object (SEG), not an image" in notes


def test_folder_without_pixel_data_gives_clear_error(tmp_path) -> None:
    stripped = DICOMDIR_TESTS / "TINY_ALPHA" / "PT000000" / "ST000000" / "SE000000"
    with pytest.raises(VolumeError, match=r"no DICOM image series .*IM000000: no pixel data \(CT Image"):
        load_dicom(stripped)
    shutil.copy(get_testdata_file("rtplan.dcm"), tmp_path / "plan.dcm")
    shutil.copy(get_testdata_file("rtstruct.dcm"), tmp_path / "struct.dcm")
    with pytest.raises(VolumeError, match=r"skipped plan.dcm: RT plan \(RTPLAN\), not an image"):
        load_dicom(tmp_path)
    with pytest.raises(VolumeError, match="is not a folder"):
        scan_dicom_folder(tmp_path / "plan.dcm")


def test_mixed_modalities_in_one_series_is_an_error(tmp_path) -> None:
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    mr = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    mr.SeriesInstanceUID = ct.SeriesInstanceUID
    ct.save_as(tmp_path / "a.dcm")
    mr.save_as(tmp_path / "b.dcm")
    scan = scan_dicom_folder(tmp_path)
    assert [info.modality for info in scan.series] == ["CT/MR"]
    with pytest.raises(VolumeError, match="mixes modalities CT, MR"):
        load_dicom(tmp_path)


def test_truncated_files(tmp_path, series40) -> None:
    with pytest.raises(VolumeError, match="cannot read its pixel data"):
        load_dicom(get_testdata_file("MR_truncated.dcm"))
    _, paths = series40
    ordered = sorted(paths, key=lambda p: pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber)[:6]
    for path in ordered:
        shutil.copy(path, tmp_path / path.name)
    victim = tmp_path / ordered[2].name
    victim.write_bytes(victim.read_bytes()[: os.path.getsize(victim) - 300])
    volume = load_dicom(tmp_path)
    assert volume.shape == (25, 6, 33)  # the unreadable slice stays a (blank) gap: nothing is shifted
    joined = " | ".join(volume.warnings)
    assert f"skipped {victim.name}: cannot read its pixel data" in joined
    assert "1 slice(s) are missing from the series" in joined
    kept = [str(tmp_path / p.name) for p in ordered]
    kept[2] = ""
    assert volume.metadata["slice_files"] == kept


def test_progress_reports_and_cancel(series40) -> None:
    folder, _ = series40
    reports: list[tuple[float, str]] = []
    load_dicom(folder, progress=lambda fraction, message: reports.append((fraction, message)))
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(reports) > 10
    assert any(message.startswith("reading IM") for _, message in reports)
    cancel = threading.Event()

    def cancel_midway(fraction: float, message: str) -> None:
        if fraction > 0.5:
            cancel.set()

    with pytest.raises(LoadCancelled):
        load_dicom(folder, progress=cancel_midway, cancel=cancel)


# -- slice placement from the files' own positions (issue: rounded positions, missing tags, tilt) ------


def _marker_series(folder: Path, affine_ras: np.ndarray, shape=(24, 20, 40)) -> tuple[list[Path], np.ndarray]:
    """A CT series whose every slice k has a bright marker at a k-dependent pixel; returns the paths
    (k order) and the stored (column, row, slice) values."""
    columns, rows, count = shape
    stored = np.zeros(shape, np.int16)
    for k in range(count):
        stored[4 + k % 12, 5 + (k * 7) % 10, k] = 1000 + k
    paths = write_dicom_series(stored, affine_ras, folder, SeriesOptions(modality="CT", seed=1))
    return paths, stored


def _voxel_at_file_pixel(volume, path: Path, row: int, column: int) -> float:
    """Our volume's value at the world position of (row, column) of ``path``, by its own tags."""
    z, y, x = np.rint(volume.world_to_index(lps_to_ras_point(dicom_world_lps(path, row, column)))).astype(int)
    return float(volume.voxels[z, y, x])


def _edit(path: Path, change) -> None:
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path)


def test_rounded_slice_positions_do_not_accumulate_along_the_stack(tmp_path) -> None:
    affine = np.diag([0.7, 0.7, 0.625, 1.0])
    affine[:3, 3] = (-8.0, -7.0, -30.0)
    paths, stored = _marker_series(tmp_path, affine, shape=(24, 20, 121))
    for path in paths:  # positions written to 0.1 mm, as some scanners do
        _edit(path, lambda ds: setattr(ds, "ImagePositionPatient",
                                       [f"{float(v):.1f}" for v in ds.ImagePositionPatient]))
    volume = load_dicom(tmp_path)
    assert volume.warnings == [] and volume.shape.count(121) == 1
    assert volume.spacing[volume.shape.index(121)] == pytest.approx(0.625, abs=2e-4)
    last = paths[-1]
    true_last = affine @ np.array([0.0, 0.0, 120.0, 1.0])  # where the last slice really is (RAS)
    index_of_last = np.rint(volume.world_to_index(true_last[:3])).astype(int)
    placed = volume.index_to_world(*index_of_last)
    assert np.linalg.norm(placed - true_last[:3]) < 0.1  # median-of-gaps spacing put it 3.0 mm off
    for k in (0, 60, 120):
        c, r = 4 + k % 12, 5 + (k * 7) % 10
        assert _voxel_at_file_pixel(volume, paths[k], r, c) == 1000 + k
    assert "slice_files" in volume.metadata and volume.metadata["slice_files"][-1] == str(last)


def test_a_file_without_position_keeps_every_other_files_position(tmp_path) -> None:
    affine = np.diag([0.8, 0.8, 3.0, 1.0])
    paths, _ = _marker_series(tmp_path, affine, shape=(24, 20, 12))
    _edit(paths[5], lambda ds: delattr(ds, "ImagePositionPatient"))
    volume = load_dicom(tmp_path)
    assert any("placed by their InstanceNumber" in w for w in volume.warnings)
    assert sorted(volume.spacing) == pytest.approx([0.8, 0.8, 3.0])
    for k in range(12):
        if k != 5:
            c, r = 4 + k % 12, 5 + (k * 7) % 10
            assert _voxel_at_file_pixel(volume, paths[k], r, c) == 1000 + k  # was off by the fallback


def test_gantry_tilt_is_resampled_onto_an_orthogonal_grid(tmp_path) -> None:
    tilt = np.radians(12.0)
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    affine[1, 2] = 2.0 * np.tan(tilt)  # each slice moves 0.43 mm along y: a sheared stack
    paths, _ = _marker_series(tmp_path, affine, shape=(24, 40, 16))
    volume = load_dicom(tmp_path)
    assert any("gantry tilt of 12.00°" in w for w in volume.warnings)
    columns = volume.source.affine[:3, :3]
    gram = columns.T @ columns
    assert np.abs(gram - np.diag(np.diag(gram))).max() < 1e-6  # orthogonal: qform == sform, no shear to drop
    for k in (0, 7, 15):  # each file's marker sits where that file says it is (linear resampling)
        c, r = 4 + k % 12, 5 + (k * 7) % 10
        lps = dicom_world_lps(paths[k], r, c)
        z, y, x = volume.world_to_index(lps_to_ras_point(lps))
        zi, yi, xi = np.floor([z, y, x]).astype(int)
        patch = volume.voxels[max(zi - 1, 0): zi + 3, max(yi - 1, 0): yi + 3, max(xi - 1, 0): xi + 3]
        assert patch.max() > 0.4 * (1000 + k)
    label = LabelVolume.empty(volume.shape)
    label.data[volume.shape[0] // 2, 10, 10] = 1
    out = save_label_nifti(label, volume, tmp_path / "labels.nii.gz")
    saved = nib.load(out)
    np.testing.assert_allclose(saved.header.get_qform(), saved.header.get_sform(), atol=1e-4)


def test_enhanced_multiframe_keeps_the_file_frame_order(tmp_path) -> None:
    source = pydicom.dcmread(get_testdata_file("eCT_Supplemental.dcm"))
    frames = source.PerFrameFunctionalGroupsSequence
    normal = np.cross(*(np.array([float(v) for v in source.SharedFunctionalGroupsSequence[0]
                                  .PlaneOrientationSequence[0].ImageOrientationPatient]).reshape(2, 3)))
    along = [float(np.array([float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient]) @ normal)
             for f in frames]
    if along[0] < along[1]:  # make the file run against the normal
        source.PerFrameFunctionalGroupsSequence = pydicom.Sequence([frames[1], frames[0]])
        source.PixelData = source.pixel_array[::-1].copy().tobytes()
    source.save_as(tmp_path / "reversed.dcm")
    volume = load_dicom(tmp_path / "reversed.dcm")
    assert volume.metadata["slice_frames"] == [0, 1]  # k follows the file, as ITK tools read it
    stored = pydicom.dcmread(tmp_path / "reversed.dcm").pixel_array.astype(np.float32) - 1024.0
    assert volume.source.affine[:3, 2] @ lps_to_ras_point(normal) < 0
    for frame in range(2):
        position = np.array([float(v) for v in source.PerFrameFunctionalGroupsSequence[frame]
                             .PlanePositionSequence[0].ImagePositionPatient])
        z, y, x = np.rint(volume.world_to_index(lps_to_ras_point(position))).astype(int)
        assert volume.voxels[z, y, x] == stored[frame, 0, 0]


def test_a_stray_far_slice_is_refused_instead_of_a_huge_blank_grid(tmp_path) -> None:
    paths, _ = _marker_series(tmp_path, np.diag([0.8, 0.8, 2.0, 1.0]), shape=(24, 20, 6))
    _edit(paths[5], lambda ds: setattr(ds, "ImagePositionPatient", ["0", "0", "2000"]))  # 2 m away
    with pytest.raises(VolumeError, match="not one evenly spaced stack"):
        load_dicom(tmp_path)


AXIAL = np.array([[1.0, 0, 0, -8], [0, 1.0, 0, -8], [0, 0, 2.0, 0], [0, 0, 0, 1]])
CORONAL = np.array([[1.0, 0, 0, -8], [0, 0, 2.0, 0], [0, -1.0, 0, 8], [0, 0, 0, 1]])  # rows run S -> I


def test_series_sharing_a_description_and_size_read_differently_in_the_chooser(tmp_path) -> None:
    stored = np.arange(16 * 16 * 3, dtype=np.int16).reshape(16, 16, 3)
    for prefix, affine, uid, time in (("AX", AXIAL, "1.2.826.0.1.3680043.99.100001", "101500"),
                                      ("CO", CORONAL, "1.2.826.0.1.3680043.99.200002", "103010")):
        write_dicom_series(stored, affine, tmp_path, SeriesOptions(
            series_description="T/S/C RF FAST PILOT", series_uid=uid, series_time=time, name_prefix=prefix))
    series = sorted(scan_dicom_folder(tmp_path).series, key=lambda info: info.uid)
    labels = [info.label() for info in series]
    assert len(set(labels)) == 2  # the chooser entries no longer read identically
    assert "axial" in labels[0] and "10:15:00" in labels[0] and labels[0].endswith("UID …9.100001")
    assert "coronal" in labels[1] and "10:30:10" in labels[1] and labels[1].endswith("UID …9.200002")
    assert all("T/S/C RF FAST PILOT" in label and "3 slice(s), 16x16" in label for label in labels)


@pytest.mark.parametrize("odd_affine, odd_size, wording", [
    (CORONAL, 16, "2 different orientations (e.g. a localizer)"),
    (AXIAL, 12, "2 different sizes (e.g. a localizer)"),
])  # fmt: skip
def test_a_mixed_series_note_names_only_what_differs(tmp_path, odd_affine, odd_size, wording) -> None:
    uid = "1.2.826.0.1.3680043.99.300003"
    main = np.zeros((16, 16, 5), np.int16)
    write_dicom_series(main, AXIAL, tmp_path, SeriesOptions(series_uid=uid, name_prefix="MAIN"))
    odd = AXIAL.copy() if odd_affine is AXIAL else odd_affine
    if odd_affine is AXIAL:
        odd[2, 3] = 40.0  # a separate slice position, beyond the main stack
    write_dicom_series(np.zeros((odd_size, odd_size, 1), np.int16), odd, tmp_path,
                       SeriesOptions(series_uid=uid, name_prefix="ODD"))  # fmt: skip
    volume = load_dicom(tmp_path)
    note = next(w for w in volume.warnings if "mixes slices" in w)
    assert wording in note and "sizes and orientations" not in note
    assert "kept the 5 slices" in note and volume.shape == (5, 16, 16)
