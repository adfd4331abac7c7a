"""NIfTI/BraTS loading, slice views, label export/re-import, label tables and PNG slice export."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pytest

from isegformer_app.volumes import (
    LabelInfo,
    LabelVolume,
    ModelInput,
    VolumeError,
    WindowPreset,
    apply_window,
    export_slices_png,
    find_brats_files,
    itksnap_label_text,
    load_brats_case,
    load_label_nifti,
    load_nifti,
    nifti_frame_count,
    open_volume,
    read_itksnap_labels,
    save_label_nifti,
    slicer_color_table_text,
    write_itksnap_labels,
    write_slicer_color_table,
)
from model.atomic_io import atomic_write_with

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"


def world_lookup(volume, reference_data: np.ndarray, reference_affine: np.ndarray) -> np.ndarray:
    """Reference values at the world position of every display voxel, shaped like the volume."""
    z, y, x = np.meshgrid(*(np.arange(s) for s in volume.shape), indexing="ij")
    homogeneous = np.stack([x.ravel(), y.ravel(), z.ravel(), np.ones(x.size)])
    ijk = (np.linalg.inv(reference_affine) @ volume.affine @ homogeneous)[:3]
    rounded = np.rint(ijk).astype(int)
    assert np.abs(ijk - rounded).max() < 1e-4
    return reference_data[tuple(rounded)].reshape(volume.shape)


def save(image: nib.Nifti1Image, path: Path) -> Path:
    nib.save(image, path)
    return path


@pytest.fixture(scope="module")
def anatomical() -> nib.Nifti1Image:
    return nib.load(NIBABEL_DATA / "anatomical.nii")


@pytest.fixture(scope="module")
def brats_folder(tmp_path_factory, anatomical) -> Path:
    """A BraTS-style case built from anatomical.nii: four modalities (intensity transforms) and a seg."""
    folder = tmp_path_factory.mktemp("BraTS20_Training_001")
    data = np.asarray(anatomical.dataobj).astype(np.float32)
    transforms = {"t1": data, "t1ce": data * 2.0 + 5.0, "t2": data.max() - data,
                  "flair": np.sqrt(data + 700.0)}
    for name, values in transforms.items():
        save(nib.Nifti1Image(values.astype(np.float32), anatomical.affine, anatomical.header),
             folder / f"BraTS20_Training_001_{name}.nii.gz")
    seg = np.zeros(data.shape, dtype=np.uint8)
    seg[10:20, 15:25, 8:14] = 2
    seg[13:17, 18:22, 10:12] = 4
    seg[14, 19, 10] = 1
    save(nib.Nifti1Image(seg, anatomical.affine), folder / "BraTS20_Training_001_seg.nii.gz")
    return folder


def test_anatomical_is_display_oriented_and_matches_file(anatomical) -> None:
    volume = load_nifti(NIBABEL_DATA / "anatomical.nii")
    assert volume.shape == (25, 41, 33) and volume.voxels.dtype == np.float32
    assert nib.aff2axcodes(volume.affine) == ("L", "P", "S")
    assert volume.spacing == (2.0, 2.0, 2.0) and volume.modality == "MR" and volume.warnings == []
    data = np.asarray(anatomical.dataobj).astype(np.float32)
    np.testing.assert_array_equal(volume.voxels, world_lookup(volume, data, anatomical.affine))
    assert volume.source.shape == (33, 41, 25)
    assert (volume.source.qform_code, volume.source.sform_code) == (2, 2)


def test_4d_frames(tmp_path) -> None:
    path = NIBABEL_DATA / "example4d.nii.gz"
    image = nib.load(path)
    assert nifti_frame_count(path) == 2
    second = load_nifti(path, frame=1)
    assert second.warnings == []
    expected = np.asarray(image.dataobj[..., 1]).astype(np.float32)
    np.testing.assert_array_equal(second.voxels, world_lookup(second, expected, image.affine))
    default = load_nifti(path)
    assert default.warnings == ["example4d.nii.gz: 4-D file with 2 frames; showing frame 0"]
    assert not np.array_equal(default.voxels, second.voxels)
    with pytest.raises(VolumeError, match=r"frame 5 is out of range 0..1"):
        load_nifti(path, frame=5)
    single = save(nib.Nifti1Image(np.asarray(image.dataobj[..., :1]), image.affine), tmp_path / "one.nii.gz")
    volume = load_nifti(single)
    assert volume.shape == (24, 96, 128)
    assert volume.warnings == ["one.nii.gz: 4-D file with a single frame, treated as 3-D"]
    nifti2 = load_nifti(NIBABEL_DATA / "example_nifti2.nii.gz", frame=0)
    assert nifti2.shape == (12, 20, 32)


def test_non_finite_voxels_are_replaced_with_warning(tmp_path, anatomical) -> None:
    data = np.asarray(anatomical.dataobj).astype(np.float32)
    data[1, 2, 3], data[4, 5, 6], data[7, 8, 9] = np.nan, np.inf, -np.inf
    volume = load_nifti(save(nib.Nifti1Image(data, anatomical.affine), tmp_path / "nan.nii"))
    assert np.isfinite(volume.voxels).all()
    finite = data[np.isfinite(data)]
    assert volume.warnings == [f"3 non-finite voxel(s) replaced (1 NaN -> 0, +/-Inf -> {finite.max():g}/"
                               f"{finite.min():g})"]
    index = np.rint(volume.world_to_index(nib.affines.apply_affine(anatomical.affine, (1, 2, 3)))).astype(int)
    assert volume.voxels[tuple(index)] == 0.0
    assert np.count_nonzero(volume.voxels == finite.max()) == np.count_nonzero(finite == finite.max()) + 1


def test_bad_nifti_inputs_give_clear_errors(tmp_path) -> None:
    (tmp_path / "broken.nii.gz").write_bytes(b"not gzip at all")
    with pytest.raises(VolumeError, match="cannot read NIfTI file broken.nii.gz"):
        load_nifti(tmp_path / "broken.nii.gz")
    with pytest.raises(VolumeError, match="is not a NIfTI file"):
        load_nifti(Path(__file__))
    with pytest.raises(VolumeError, match="does not exist"):
        load_nifti(tmp_path / "missing.nii")
    whole = tmp_path / "whole.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((40, 40, 20), np.float32), np.eye(4)), whole)
    (tmp_path / "cut.nii.gz").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(VolumeError, match="cut.nii.gz is damaged or truncated"):
        load_nifti(tmp_path / "cut.nii.gz")
    flat = tmp_path / "flat.nii"
    nib.save(nib.Nifti1Image(np.zeros((40, 40, 20), np.float32), np.eye(4)), flat)
    (tmp_path / "short.nii").write_bytes(flat.read_bytes()[:-1000])
    with pytest.raises(VolumeError, match="short.nii is truncated"):
        load_nifti(tmp_path / "short.nii")
    header = nib.Nifti1Header()
    header.set_data_shape((2000, 2000, 2000))
    header.set_data_dtype(np.float32)
    (tmp_path / "huge.nii").write_bytes(header.binaryblock + b"\0" * 1000)  # a header that lies
    with pytest.raises(VolumeError, match=r"declares 2000 x 2000 x 2000 voxels \(30 GiB"):
        load_nifti(tmp_path / "huge.nii")


def test_brats_case_channels_composite_and_seg(brats_folder, anatomical) -> None:
    files = find_brats_files(brats_folder)
    assert sorted(files) == ["flair", "seg", "t1", "t1ce", "t2"]
    case = load_brats_case(brats_folder)
    volume = case.volume
    assert volume.channel_names == ("t1", "t1ce", "t2", "flair") and volume.voxels.shape == (4, 25, 41, 33)
    assert volume.description == "BraTS20_Training_001"
    np.testing.assert_allclose(volume.channel("t1ce"), volume.channel("t1") * 2 + 5, rtol=1e-6)
    assert volume.default_model_input() == ModelInput.single("flair")
    flair_window = volume.channel_windows["flair"]
    single = volume.slice_image("axial", 12)
    np.testing.assert_array_equal(single[..., 0], apply_window(volume.slice_values("axial", 12, "flair"),
                                                                flair_window))
    composite = volume.slice_image("axial", 12, model_input=ModelInput.rgb("t1ce", "t2", "flair"))
    for plane, name in enumerate(("t1ce", "t2", "flair")):
        expected = apply_window(volume.slice_values("axial", 12, name), volume.channel_windows[name])
        np.testing.assert_array_equal(composite[..., plane], expected)
    assert not np.array_equal(composite[..., 0], composite[..., 1])
    seg = np.asarray(nib.load(files["seg"]).dataobj)
    np.testing.assert_array_equal(case.labels.data, world_lookup(volume, seg, anatomical.affine))
    assert case.labels.present_values() == [1, 2, 4]
    assert case.labels.labels[2].name == "peritumoral edema"


def test_brats_grid_mismatch_and_2023_names(tmp_path, anatomical) -> None:
    data = np.asarray(anatomical.dataobj).astype(np.float32)
    save(nib.Nifti1Image(data, anatomical.affine), tmp_path / "BraTS-GLI-00000-000-t1n.nii.gz")
    save(nib.Nifti1Image(data, anatomical.affine), tmp_path / "BraTS-GLI-00000-000-t2f.nii.gz")
    assert sorted(find_brats_files(tmp_path)) == ["flair", "t1"]
    save(nib.Nifti1Image(data[:, :, :20], anatomical.affine), tmp_path / "BraTS-GLI-00000-000-t2w.nii.gz")
    with pytest.raises(VolumeError, match=r"has shape \(33, 41, 20\) but .* has \(33, 41, 25\)"):
        load_brats_case(tmp_path)
    shifted = anatomical.affine.copy()
    shifted[0, 3] += 5
    save(nib.Nifti1Image(data, shifted), tmp_path / "BraTS-GLI-00000-000-t2w.nii.gz")
    with pytest.raises(VolumeError, match="different affines"):
        load_brats_case(tmp_path)


@pytest.mark.parametrize("name", ["anatomical.nii", "standard.nii.gz", "reoriented_anat_moved.nii"])
def test_label_export_roundtrip_keeps_header_geometry(tmp_path, name) -> None:
    source = nib.load(NIBABEL_DATA / name)
    volume = load_nifti(NIBABEL_DATA / name)
    labels = LabelVolume.empty(volume.shape)
    labels.paint("axial", 1, volume.slice_values("axial", 1) > np.median(volume.voxels), 5)
    labels.data[0, 0, 0] = 2
    out = save_label_nifti(labels, volume, tmp_path / "labels.nii.gz")
    saved = nib.load(out)
    assert saved.shape == source.shape[:3]
    np.testing.assert_allclose(saved.affine, source.affine, atol=1e-5)
    for code in ("qform_code", "sform_code"):
        assert int(saved.header[code]) == int(source.header[code])
    assert saved.header.get_intent()[0] == "label"
    stored = np.asarray(saved.dataobj)
    assert stored.dtype == np.uint8
    # Every labelled voxel sits at the world position of the display voxel it was painted on.
    np.testing.assert_array_equal(world_lookup(volume, stored, saved.affine), labels.data)
    np.testing.assert_array_equal(load_label_nifti(out, volume).data, labels.data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.nii.gz"]
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # the usual permissions, not mkstemp's 0600


def test_label_reimport_errors(tmp_path, anatomical) -> None:
    volume = load_nifti(NIBABEL_DATA / "anatomical.nii")
    other = save(nib.Nifti1Image(np.zeros((33, 41, 24), np.uint8), anatomical.affine), tmp_path / "a.nii.gz")
    with pytest.raises(VolumeError, match=r"\(33, 41, 24\) but the volume's file grid is \(33, 41, 25\)"):
        load_label_nifti(other, volume)
    moved = anatomical.affine.copy()
    moved[2, 3] += 1.5
    shifted = save(nib.Nifti1Image(np.zeros((33, 41, 25), np.uint8), moved), tmp_path / "b.nii.gz")
    with pytest.raises(VolumeError, match=r"not aligned .* up to 1.5 mm from the volume's"):
        load_label_nifti(shifted, volume)
    # 0.0009 per matrix element is under the old per-element tolerance but moves far corners ~0.06 mm
    tilted = anatomical.affine.copy()
    tilted[:3, :3] += 0.0009
    sheared = save(nib.Nifti1Image(np.zeros((33, 41, 25), np.uint8), tilted), tmp_path / "d.nii.gz")
    with pytest.raises(VolumeError, match="not aligned"):
        load_label_nifti(sheared, volume)
    # the float32 rounding of a re-saved header is accepted
    rounded = save(nib.Nifti1Image(np.zeros((33, 41, 25), np.uint8), anatomical.affine.astype(np.float32)),
                   tmp_path / "e.nii.gz")  # fmt: skip
    assert load_label_nifti(rounded, volume).data.shape == volume.shape
    fractional = save(nib.Nifti1Image(np.full((33, 41, 25), 0.5, np.float32), anatomical.affine),
                      tmp_path / "c.nii.gz")
    with pytest.raises(VolumeError, match="non-integer values"):
        load_label_nifti(fractional, volume)


def test_more_than_255_labels_use_uint16(tmp_path) -> None:
    volume = load_nifti(NIBABEL_DATA / "anatomical.nii")
    labels = LabelVolume.empty(volume.shape)
    labels.data[3, 4, 5] = 200
    assert labels.data.dtype == np.uint8
    mask = np.zeros((41, 33), bool)
    mask[10, 11] = True
    labels.paint("axial", 6, mask, 300)
    assert labels.data.dtype == np.uint16 and labels.data[6, 10, 11] == 300 and labels.data[3, 4, 5] == 200
    saved = nib.load(save_label_nifti(labels, volume, tmp_path / "many.nii"))
    assert saved.get_data_dtype() == np.uint16
    assert sorted(np.unique(np.asarray(saved.dataobj)).tolist()) == [0, 200, 300]
    with pytest.raises(VolumeError, match=r"label values must be in 0..65535, got 70000"):
        labels.ensure_value(70000)
    with pytest.raises(VolumeError, match="PNG masks hold label ids up to 255"):
        export_slices_png(volume, labels, tmp_path / "png", "case")


def test_views_orientation_aspect_and_painting() -> None:
    volume = load_nifti(NIBABEL_DATA / "functional.nii", frame=0)
    assert volume.shape == (3, 21, 17) and volume.spacing == (8.0, 4.0, 4.0)
    assert volume.pixel_aspect("axial") == 1.0 and volume.pixel_aspect("coronal") == 2.0
    assert volume.pixel_aspect("sagittal") == 2.0
    coronal = volume.slice_values("coronal", 5)
    assert coronal.shape == (3, 17)
    np.testing.assert_array_equal(coronal[0], volume.voxels[2, 5, :])  # superior slice on top
    sagittal = volume.slice_values("sagittal", 4)
    np.testing.assert_array_equal(sagittal[-1], volume.voxels[0, :, 4])
    assert volume.slice_image("sagittal", 4).shape == (3, 21, 3)
    labels = LabelVolume.empty(volume.shape)
    mask = np.zeros((3, 17), bool)
    mask[0, 2] = True
    labels.paint("coronal", 5, mask, 1)
    assert np.argwhere(labels.data).tolist() == [[2, 5, 2]]
    with pytest.raises(IndexError, match="coronal slice 21 is out of range 0..20"):
        volume.slice_values("coronal", 21)
    with pytest.raises(ValueError, match="unknown view axis 'oblique'"):
        volume.slice_image("oblique", 0)


def test_window_mapping_numbers() -> None:
    window = WindowPreset("test", 50.0, 100.0)
    values = np.array([-10.0, 0.0, 25.0, 50.0, 99.0, 100.0, 1e6], dtype=np.float32)
    np.testing.assert_array_equal(apply_window(values, window), [0, 0, 64, 128, 252, 255, 255])
    with pytest.raises(ValueError, match="width > 0"):
        WindowPreset("bad", 0.0, 0.0)


def test_label_tables(tmp_path) -> None:
    labels = LabelVolume.empty((2, 3, 4))
    labels.data[0, 0, 0], labels.data[1, 2, 3] = 1, 7
    labels.labels[1] = LabelInfo(1, "tumour core", (200, 10, 20), 0.5)
    snap = write_itksnap_labels(labels, tmp_path / "labels.txt")
    table = read_itksnap_labels(snap)
    assert sorted(table) == [0, 1, 7]
    assert (table[1].name, table[1].color, table[1].opacity) == ("tumour core", (200, 10, 20), 0.5)
    assert table[7].name == "Label 7" and table[0].name == "Clear Label" and not table[0].visible
    assert '    1   200   10   20     0.50  1  1    "tumour core"' in itksnap_label_text(labels)
    ctbl = write_slicer_color_table(labels, tmp_path / "labels.ctbl")
    lines = ctbl.read_text().splitlines()
    assert lines[1] == "# 3 values"
    assert lines[2:] == ["0 Clear_Label 0 0 0 0", "1 tumour_core 200 10 20 128", "7 Label_7 255 239 213 255"]
    assert slicer_color_table_text(labels) == ctbl.read_text()


@pytest.mark.parametrize("layout", ["brats", "oai_zib"])
def test_png_slice_export_layout_readable_like_the_evaluation_readers(tmp_path, brats_folder, layout) -> None:
    case = load_brats_case(brats_folder)
    written = export_slices_png(case.volume, case.labels, tmp_path, "BraTS20.Training_001", layout=layout)
    labelled = [z for z in range(case.volume.shape[0]) if case.labels.data[z].any()]
    assert [item.index for item in written] == labelled
    images_dir = tmp_path / ("image" if layout == "brats" else "test/image")
    masks_dir = tmp_path / ("annotation" if layout == "brats" else "test/annotations")
    assert sorted(p.name for p in images_dir.glob("*.png")) == sorted(p.name for p in masks_dir.glob("*.png"))
    for item in written:
        name = item.image_path.name
        assert name == f"BraTS20_Training_001_axial_{item.index:04d}.png" and name.count(".") == 1
        image = cv2.cvtColor(cv2.imread(str(images_dir / name)), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(image, case.volume.slice_image("axial", item.index))
        mask = cv2.imread(str(masks_dir / name.split(".")[0]) + ".png")[:, :, 0]
        np.testing.assert_array_equal(mask, case.labels.get_slice("axial", item.index))


def test_atomic_write_keeps_old_file_on_failure(tmp_path) -> None:
    target = tmp_path / "labels.nii.gz"
    target.write_bytes(b"old")

    def failing_writer(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write_with(target, failing_writer)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["labels.nii.gz"]


def test_open_volume_dispatch_and_2d_file(tmp_path, brats_folder, anatomical) -> None:
    brats = open_volume(brats_folder)
    assert brats.channel_names == ("t1", "t1ce", "t2", "flair")
    assert brats.metadata["files"]["seg"].endswith("_seg.nii.gz")
    reports: list[float] = []
    single = open_volume(NIBABEL_DATA / "anatomical.nii", progress=lambda f, _: reports.append(f))
    assert single.shape == (25, 41, 33) and reports[0] == 0.0 and reports[-1] == 1.0
    flat = save(nib.Nifti1Image(np.asarray(anatomical.dataobj)[:, :, 3], np.eye(4)), tmp_path / "flat.nii")
    volume = open_volume(flat)
    assert volume.shape == (1, 41, 33)
    assert volume.warnings == ["flat.nii: a 2-D image, loaded as a single slice"]
    with pytest.raises(VolumeError, match="does not exist"):
        open_volume(tmp_path / "nothing")
