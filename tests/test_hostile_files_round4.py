"""Hostile files, round 4: what a fuzz round over every loader found. Each file is built here and must give
the loader's one clear error (ImageLoadError, VolumeError, SidecarError, CheckpointError), not a bare
TypeError / OverflowError / MemoryError, a hang, or a volume with an empty axis."""

from __future__ import annotations

import copy
import gzip
import io
import json
import struct
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from PIL import Image
from pydicom.data import get_testdata_file

from isegformer_app.benchmarks.dicom_write import SeriesOptions, write_dicom_series
from isegformer_app.state.autosave import save_document
from isegformer_app.state.document import Document
from isegformer_app.state.image_sidecar import read_sidecar
from isegformer_app.state.image_status import sidecar_status
from isegformer_app.state.imageio import ImageLoadError, LoadedImage, load_image
from isegformer_app.state.sidecar_codec import SidecarError, read_sidecar_file
from isegformer_app.state.volume_autosave import (
    read_volume_sidecar,
    restore_volume_document,
    save_volume_document,
)
from isegformer_app.state.volume_document import VolumeDocument
from isegformer_app.volumes import VolumeError, load_dicom, load_nifti, open_volume
from model.checkpoint import META_KEY, CheckpointError, read_checkpoint
from model.prediction import Prediction


# ------------------------------------------------------------------------------------------- images
def test_multipage_tiff_whose_later_page_is_gone_is_a_clear_image_error(tmp_path) -> None:
    rgb = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    buf = io.BytesIO()
    second = Image.fromarray(rgb[:, :, 0])
    Image.fromarray(rgb).save(buf, format="TIFF", save_all=True, append_images=[second])
    data = bytearray(buf.getvalue())
    first_ifd = struct.unpack_from("<I", data, 4)[0]
    entries = struct.unpack_from("<H", data, first_ifd)[0]
    struct.pack_into("<I", data, first_ifd + 2 + 12 * entries, len(data) + 4096)  # page 2 lies past the end
    path = tmp_path / "scan.tif"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageLoadError, match="page after the first is damaged"):  # was TypeError
        load_image(path)


# -------------------------------------------------------------------------------------------- DICOM
def _ct_small(tmp_path: Path, change=None) -> Path:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    if change is not None:
        change(ds)
    path = tmp_path / "slice.dcm"
    ds.save_as(path)
    return path


def test_absurd_number_of_frames_is_refused_without_describing_a_billion_frames(tmp_path) -> None:
    path = _ct_small(tmp_path, lambda ds: setattr(ds, "NumberOfFrames", 1_000_000_000))  # was a hang
    with pytest.raises(VolumeError, match="cannot read its pixel data"):
        open_volume(path)


def test_colour_frames_that_number_of_frames_does_not_count_are_refused(tmp_path) -> None:
    ds = pydicom.dcmread(get_testdata_file("SC_rgb_rle_2frame.dcm"))
    ds.decompress()
    ds.NumberOfFrames = 0  # pydicom still decodes both frames
    ds.save_as(tmp_path / "rgb.dcm")
    with pytest.raises(VolumeError, match="NumberOfFrames=1 but 2 frames"):  # was "too many values to unpack"
        open_volume(tmp_path / "rgb.dcm")


def test_a_transfer_syntax_uid_that_is_no_transfer_syntax_is_a_clear_error(tmp_path) -> None:
    path = _ct_small(tmp_path)
    data = path.read_bytes()
    assert data.count(b"1.2.840.10008.1.2.1\x00") == 1
    path.write_bytes(data.replace(b"1.2.840.10008.1.2.1\x00", b"1.2.3.4.5.6.7.8.9.10"))
    with pytest.raises(VolumeError, match="cannot read its pixel data"):  # was ValueError from the hint
        open_volume(path)


def test_an_element_with_a_damaged_value_representation_skips_the_file(tmp_path) -> None:
    path = _ct_small(tmp_path)
    data = path.read_bytes()
    modality = b"\x08\x00\x60\x00CS"
    assert data.count(modality) == 1
    path.write_bytes(data.replace(modality, b"\x08\x00\x60\x00C\xff"))
    with pytest.raises(VolumeError, match="unreadable DICOM"):  # was NotImplementedError (unknown VR)
        open_volume(path)


@pytest.mark.parametrize("change", [
    lambda ds: setattr(ds, "PixelSpacing", ["1e-300", "1e-300"]),  # rounds to 0 in the float32 affine
    lambda ds: setattr(ds, "PixelSpacing", ["1e308", "1e308"]),  # inf
    lambda ds: setattr(ds, "ImageOrientationPatient", [1, 0, 0, 1, 0, 0]),  # rows parallel to columns
    lambda ds: setattr(ds, "ImagePositionPatient", ["1e308", "1e308", "1e308"]),  # accepted, then NaN indices
    lambda ds: setattr(ds, "SpacingBetweenSlices", "1e308"),
], ids=["spacing-1e-300", "spacing-1e308", "parallel-orientation", "position-1e308", "slice-spacing-1e308"])
def test_singular_or_non_finite_dicom_geometry_is_a_volume_error(tmp_path, change) -> None:
    path = _ct_small(tmp_path, change)
    with pytest.raises(VolumeError, match="invalid geometry"):  # was LinAlgError / ValueError, or accepted
        open_volume(path)


def test_slices_drifting_far_in_plane_are_refused_before_the_grid_is_allocated(tmp_path) -> None:
    stored = np.zeros((24, 20, 6), np.int16)
    affine = np.diag([0.8, 0.8, 2.0, 1.0])
    affine[0, 2] = 1e6  # each slice 2000 km further along x: a "tilt" whose corrected grid needs terabytes
    write_dicom_series(stored, affine, tmp_path, SeriesOptions(modality="CT"))
    with pytest.raises(VolumeError, match="far beyond a gantry tilt"):  # was MemoryError / "array is too big"
        load_dicom(tmp_path)


# -------------------------------------------------------------------------------------------- NIfTI
def _nifti(path: Path, data: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data, np.diag([0.9, 1.1, 2.0, 1.0])), path)
    return path


def _patch_header(path: Path, offset: int, fmt: str, value) -> None:
    gz = path.name.endswith(".gz")
    raw = bytearray(gzip.decompress(path.read_bytes()) if gz else path.read_bytes())
    struct.pack_into(fmt, raw, offset, value)
    path.write_bytes(gzip.compress(bytes(raw)) if gz else bytes(raw))


@pytest.mark.parametrize("name", ["v.nii", "v.nii.gz"])
@pytest.mark.parametrize("size", [0, -1])
def test_nifti_declaring_an_axis_without_voxels_is_refused(tmp_path, name, size) -> None:
    path = _nifti(tmp_path / name, np.ones((6, 5, 4), np.int16))
    _patch_header(path, 42, "<h", size)  # dim[1]
    with pytest.raises(VolumeError, match="an axis without voxels"):  # was a (z, y, 0) volume / OverflowError
        load_nifti(path)


def test_nifti_with_an_absurd_vox_offset_is_a_clear_error(tmp_path) -> None:
    path = _nifti(tmp_path / "v.nii", np.ones((6, 5, 4), np.int16))
    _patch_header(path, 108, "<f", 1e38)  # nibabel's header copy shows 0, the reader uses 1e38
    with pytest.raises(VolumeError, match="truncated"):  # was OverflowError from np.memmap
        load_nifti(path)


@pytest.mark.parametrize("frames", [1, 3])
def test_4d_float_nifti_with_nan_opens(tmp_path, frames) -> None:
    data = np.random.default_rng(1).random((6, 5, 4, frames)).astype(np.float32)
    data[0, 0, 0, 0] = np.nan
    path = _nifti(tmp_path / "f.nii", data)
    volume = load_nifti(path)  # was "assignment destination is read-only"
    assert volume.shape == (4, 5, 6) and np.isfinite(volume.voxels).all()
    assert any("non-finite" in w for w in volume.warnings)


# ----------------------------------------------------------------------------------------- sidecars
def _image_sidecar(tmp_path: Path) -> Path:
    doc = Document(LoadedImage(path=tmp_path / "x.png", rgb=np.full((40, 60, 3), 100, np.uint8),
                               full_size=(40, 60)))  # fmt: skip
    prob = np.zeros(doc.shape, np.float32)
    prob[5:20, 5:30] = 1.0
    doc.add_click(10, 10, True)
    doc.set_prediction(list(doc.clicks), Prediction.of(prob))
    assert doc.finish_object("cat", (200, 10, 10)) is not None
    path = tmp_path / "x.png.isegformer.npz"
    save_document(doc, path)
    return path


def _rewrite(path: Path, change_meta) -> None:
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    meta = json.loads(bytes(arrays.pop("meta")).decode())
    change_meta(meta)
    np.savez_compressed(path, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)


@pytest.mark.parametrize("width", [10**12, 2**64])
def test_autosave_declaring_a_huge_width_is_refused_before_unpacking(tmp_path, width) -> None:
    path = _image_sidecar(tmp_path)
    _rewrite(path, lambda meta: meta.__setitem__("working_size", [40, width]))
    with pytest.raises(SidecarError, match="inconsistent"):  # was MemoryError (terabytes) / OverflowError
        read_sidecar(path)


def _patch_zip_headers(data: bytes, local: int, central: int, value: int) -> bytes:
    buf = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", local), (b"PK\x01\x02", central)):
        start = 0
        while (start := buf.find(signature, start)) != -1:
            struct.pack_into("<H", buf, start + offset, value)
            start += 4
    return bytes(buf)


def _garbage_deflate(data: bytes) -> bytes:
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo("meta.npy")
    local_extra = struct.unpack_from("<H", data, info.header_offset + 28)[0]
    start = info.header_offset + 30 + len(info.filename) + local_extra
    return data[:start] + b"\xff" * 4 + data[start + 4:]  # a deflate block of the reserved type


@pytest.mark.parametrize("damage", [
    _garbage_deflate,  # zlib.error
    lambda data: _patch_zip_headers(data, 6, 8, 1),  # "encrypted": RuntimeError
    lambda data: _patch_zip_headers(data, 8, 10, 99),  # unknown compression: NotImplementedError
    lambda data: _patch_zip_headers(data, 4, 6, 84),  # "zip file version 8.4": NotImplementedError
], ids=["garbage-deflate", "encrypted-flag", "compression-99", "zip-version"])
def test_autosave_with_damaged_zip_data_is_a_sidecar_error(tmp_path, damage) -> None:
    path = _image_sidecar(tmp_path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(SidecarError, match="unreadable"):
        read_sidecar_file(path, 1)
    assert sidecar_status(path) == "autosave unreadable"  # the files dock's scan reads it too


def test_volume_autosave_with_labels_beyond_uint16_is_refused(tmp_path) -> None:
    data = np.full((60, 40, 5), 100, np.int16)
    volume_path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), volume_path)
    volume = open_volume(volume_path)
    doc = VolumeDocument(volume, volume_path)
    path = tmp_path / "v.isegformer-volume.npz"
    save_volume_document(doc, path)
    _rewrite(path, lambda meta: meta.__setitem__("next_value", 70000))
    fresh = VolumeDocument(volume, volume_path)
    before = (fresh.next_value, copy.copy(fresh.object_list))
    with pytest.raises(SidecarError, match="label values"):  # was accepted: the next new object failed
        restore_volume_document(fresh, read_volume_sidecar(path))
    assert (fresh.next_value, fresh.object_list) == before


# -------------------------------------------------------------------------------------- checkpoints
CONFIG = {"class": "isegm.model.is_segformer_model.SegFormerModel", "params": {}}


@pytest.mark.parametrize(("payload", "message"), [
    ({1: 2, "a": 3}, "expected keys"),  # sorting the keys for the message raised TypeError
    ({"state_dict": {}, "config": {**CONFIG, "params": [1, 2]}}, "'params' is not a mapping"),
    ({"state_dict": {5: torch.zeros(1)}, "config": CONFIG}, "not a mapping of names to tensors"),
    ({"state_dict": {"w": torch.zeros(1)}, "config": CONFIG, META_KEY: 5}, "is not a mapping"),
    ({"state_dict": {"w": torch.zeros(1)}, "config": CONFIG, META_KEY: torch.zeros(3)}, "is not a mapping"),
    ({"state_dict": {"w": torch.zeros(1)}, "config": CONFIG, META_KEY: "ab"}, "is not a mapping"),
], ids=["mixed-keys", "params-list", "int-weight-name", "meta-int", "meta-tensor", "meta-str"])
def test_malformed_checkpoint_structure_is_a_checkpoint_error(tmp_path, payload, message) -> None:
    path = tmp_path / "model.pth"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=message):  # were TypeError / AttributeError / RuntimeError
        read_checkpoint(path)


SHIPPED = Path(__file__).resolve().parents[1] / "resources" / "models" / "isegformer_lite0.pth"


@pytest.mark.parametrize(("name", "value", "message"), [
    ("norm_radius", float("nan"), "norm_radius must be a finite number above 0"),
    ("norm_radius", -5.0, "norm_radius must be a finite number above 0"),
    ("norm_radius", "five", "norm_radius is not a number"),
    ("norm_mean_std", [[0.5, 0.5, 0.5], [0.2, 0.0, 0.2]], "standard deviation of norm_mean_std"),
    ("norm_mean_std", [[0.5, 0.5], [0.2, 0.2]], "two rows of three finite numbers"),
    ("norm_mean_std", 7, "not two rows of three numbers"),
], ids=["radius-nan", "radius-negative", "radius-text", "std-zero", "two-channels", "not-rows"])
def test_click_encoding_parameters_that_would_ignore_clicks_are_refused(
    tmp_path, name, value, message
) -> None:
    from model.checkpoint import load_checkpoint

    payload = torch.load(SHIPPED, map_location="cpu", weights_only=True)
    assert payload["config"]["params"][name]["value"] is not None
    payload["config"]["params"][name]["value"] = value
    path = tmp_path / "model.pth"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=message):  # NaN / -5 loaded into a model blind to clicks
        load_checkpoint(path)
