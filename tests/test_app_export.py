"""Export: PNG instance/class masks, labels.json, COCO RLE, per-object PNGs, full-size output."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from isegformer_app.state.document import Document
from isegformer_app.state.export import export_items, item_from_document
from isegformer_app.state.imageio import load_image, read_png
from isegformer_app.state.labels import LabelList
from isegformer_app.state.project import Project


def rect(shape: tuple[int, int], y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros(shape, np.float32)
    m[y0:y1, x0:x1] = 1.0
    return m


def add_object(doc: Document, prob: np.ndarray, label: str, color=(10, 20, 30)) -> None:
    ys, xs = np.nonzero(prob)
    doc.add_click(int(ys.mean()), int(xs.mean()), True)
    doc.set_prediction(list(doc.clicks), prob)
    assert doc.finish_object(label, color) is not None


def test_export_round_trip_pixel_exact(tmp_path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(np.full((30, 50, 3), 100, np.uint8)).save(src / "img.png")
    doc = Document(load_image(src / "img.png"))
    add_object(doc, rect(doc.shape, 2, 20, 2, 30), "person", (200, 0, 0))
    add_object(doc, rect(doc.shape, 10, 28, 20, 45), "animal", (0, 200, 0))  # overlaps, on top
    add_object(doc, rect(doc.shape, 0, 5, 45, 50), "person", (0, 0, 200))
    labels = LabelList()
    out = tmp_path / "out"
    assert export_items([item_from_document(doc)], out, labels) == 1

    inst = read_png(out / "masks" / "img.png")
    assert inst.dtype == np.uint8 and np.array_equal(inst, doc.instance_map())
    assert inst[15, 25] == 2 and inst[5, 5] == 1 and inst[2, 47] == 3 and inst[29, 0] == 0
    classes = read_png(out / "classes" / "img.png")
    with Image.open(out / "classes" / "img.png") as im:
        assert im.mode == "P"
        assert im.getpalette()[3 * 2: 3 * 3] == list(labels.get("person").color)
    pid, aid = labels.class_id("person"), labels.class_id("animal")
    assert classes[5, 5] == pid and classes[15, 25] == aid and classes[2, 47] == pid and classes[29, 0] == 0
    assert (out / "images" / "img.png").read_bytes() == (src / "img.png").read_bytes()
    umask = os.umask(0)
    os.umask(umask)
    assert (out / "masks" / "img.png").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600

    meta = json.loads((out / "labels.json").read_text())
    assert meta["images"]["img"]["instances"][1] == {"id": 2, "class_id": aid, "label": "animal",
                                                     "color": [0, 200, 0]}
    assert {c["name"]: c["id"] for c in meta["classes"]}["animal"] == aid

    coco = json.loads((out / "annotations_coco.json").read_text())
    assert coco["images"] == [{"id": 1, "file_name": "img.png", "width": 50, "height": 30}]
    assert len(coco["annotations"]) == 3
    for ann, obj in zip(coco["annotations"], doc.objects, strict=True):
        seg = dict(ann["segmentation"], counts=ann["segmentation"]["counts"].encode())
        assert np.array_equal(mask_utils.decode(seg).astype(bool), obj.mask)  # whole masks, overlap kept
        assert ann["area"] == int(obj.mask.sum())
        png = read_png(out / "objects" / "img" / f"{ann['instance_id']:03d}.png")
        assert np.array_equal(png > 0, obj.mask) and set(np.unique(png)) <= {0, 255}
    assert coco["annotations"][1]["bbox"] == [20, 10, 25, 18]


def test_uint16_when_more_than_255_objects(tmp_path) -> None:
    Image.fromarray(np.zeros((20, 300, 3), np.uint8)).save(tmp_path / "many.png")
    doc = Document(load_image(tmp_path / "many.png"))
    for i in range(260):
        add_object(doc, rect(doc.shape, 0, 20, i, i + 1), "object")
    export_items([item_from_document(doc)], tmp_path / "out", LabelList())
    inst = read_png(tmp_path / "out" / "masks" / "many.png")
    assert inst.dtype == np.uint16 and inst[0, 259] == 260 and inst[0, 0] == 1 and inst[0, 299] == 0
    assert np.array_equal(inst, doc.instance_map())


def test_huge_image_exported_at_full_size(tmp_path) -> None:
    Image.fromarray(np.full((300, 500, 3), 60, np.uint8)).save(tmp_path / "big.jpg")
    doc = Document(load_image(tmp_path / "big.jpg", max_side=100))
    assert doc.shape == (60, 100) and doc.image.full_size == (300, 500)
    add_object(doc, rect(doc.shape, 10, 30, 20, 50), "object")
    export_items([item_from_document(doc)], tmp_path / "out", LabelList())
    inst = read_png(tmp_path / "out" / "masks" / "big.png")
    expected = np.zeros((300, 500), np.uint8)
    expected[50:150, 100:250] = 1  # nearest-neighbour upscaling by exactly 5
    assert inst.shape == (300, 500) and np.array_equal(inst, expected)


def test_folder_export_uses_sidecars_and_skips_empty(tmp_path) -> None:
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / name)
    project = Project.from_path(tmp_path)
    add_object(project.open_index(0), rect((16, 16), 0, 8, 0, 8), "person")
    add_object(project.open_index(2), rect((16, 16), 8, 16, 8, 16), "animal")  # open, unsaved
    seen = []
    n = project.export(tmp_path / "out", LabelList(), progress=lambda d, t, name: seen.append((d, t)) or True)
    assert n == 2 and seen[0] == (0, 2) and seen[-1] == (2, 2)
    assert sorted(p.name for p in (tmp_path / "out" / "masks").iterdir()) == ["a.png", "c.png"]
    assert read_png(tmp_path / "out" / "masks" / "a.png")[:8, :8].all()
    assert read_png(tmp_path / "out" / "masks" / "c.png")[8:, 8:].all()
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == ["a.png", "c.png"]


def test_export_nothing_raises_clear_error(tmp_path) -> None:
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    project = Project.from_path(tmp_path)
    project.open_index(0)
    with pytest.raises(ValueError, match="Nothing to export"):
        project.export(tmp_path / "out", LabelList())
