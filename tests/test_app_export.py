"""Export: PNG instance/class masks, labels.json, COCO RLE, per-object PNGs, full-size output."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from isegformer_app.state.document import Document
from isegformer_app.state.export import export_items, item_from_document
from isegformer_app.state.imageio import load_image, read_png
from isegformer_app.state.labels import LabelList
from isegformer_app.state.project import Project
from model.prediction import Prediction


def rect(shape: tuple[int, int], y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros(shape, np.float32)
    m[y0:y1, x0:x1] = 1.0
    return m


def add_object(doc: Document, prob: np.ndarray, label: str, color=(10, 20, 30)) -> None:
    ys, xs = np.nonzero(prob)
    doc.add_click(int(ys.mean()), int(xs.mean()), True)
    doc.set_prediction(list(doc.clicks), Prediction.of(prob))
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
    summary = project.export(tmp_path / "out", LabelList(), report=lambda f, name: seen.append((f, name)))
    assert summary.exported == 2 and seen[0] == (0.0, "a.png") and seen[-1] == (1.0, "")
    assert [f for f, _ in seen] == sorted(f for f, _ in seen)
    assert any(name == "c.png" for _, name in seen) and all(0 <= f <= 1 for f, _ in seen)
    assert [str(s) for s in summary.skipped] == ["b.png: not annotated"]
    assert sorted(p.name for p in (tmp_path / "out" / "masks").iterdir()) == ["a.png", "c.png"]
    assert read_png(tmp_path / "out" / "masks" / "a.png")[:8, :8].all()
    assert read_png(tmp_path / "out" / "masks" / "c.png")[8:, 8:].all()
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == ["a.png", "c.png"]


def test_folder_export_skips_an_image_whose_autosave_meta_is_malformed(tmp_path) -> None:
    from isegformer_app.state.autosave import sidecar_path
    from isegformer_app.state.sidecar_codec import read_sidecar_file, write_sidecar

    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / name)
    project = Project.from_path(tmp_path)
    add_object(project.open_index(0), rect((16, 16), 0, 8, 0, 8), "person")
    add_object(project.open_index(1), rect((16, 16), 8, 16, 8, 16), "animal")
    project.save()
    side = sidecar_path(tmp_path / "a.png")
    meta, arrays = read_sidecar_file(side, newest_version=1)
    meta["objects"][0]["color"] = "red"  # hand-edited
    write_sidecar(side, meta, arrays)
    summary = project.export(tmp_path / "out", LabelList())
    assert summary.exported == 1 and len(summary.skipped) == 1
    assert str(summary.skipped[0]).startswith("a.png: autosave unreadable — Autosave file a.png.isegformer")


def test_export_nothing_raises_clear_error(tmp_path) -> None:
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    project = Project.from_path(tmp_path)
    project.open_index(0)
    with pytest.raises(ValueError, match="Nothing to export"):
        project.export(tmp_path / "out", LabelList())


def _folder_with_two_annotated(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(photos / name)
    project = Project.from_path(photos)
    add_object(project.open_index(0), rect((16, 16), 0, 8, 0, 8), "person")
    add_object(project.doc, rect((16, 16), 8, 12, 8, 12), "animal")
    add_object(project.open_index(1), rect((16, 16), 8, 16, 8, 16), "animal")
    return project


def _described(out) -> tuple[set, set, set, set]:
    """What labels.json / COCO describe, and what is on disk."""
    meta = json.loads((out / "labels.json").read_text())
    coco = json.loads((out / "annotations_coco.json").read_text())
    described = {(stem, r["id"]) for stem, e in meta["images"].items() for r in e["instances"]}
    on_disk = {(d.name, int(p.stem)) for d in (out / "objects").iterdir() for p in d.iterdir()}
    coco_images = {i["file_name"] for i in coco["images"]}
    images = {p.name for p in (out / "images").iterdir()}
    return described, on_disk, coco_images, images


def test_export_never_mixes_two_exports_and_asks_before_replacing(tmp_path) -> None:
    from isegformer_app.state.export import ExportTargetError

    project = _folder_with_two_annotated(tmp_path)
    out = tmp_path / "out"
    assert project.export(out, LabelList()).exported == 2
    described, on_disk, coco_images, images = _described(out)
    assert described == on_disk == {("a", 1), ("a", 2), ("b", 1)}
    assert coco_images == images == {"a.png", "b.png"}
    with pytest.raises(ExportTargetError, match="already holds an export"):  # no silent overwrite
        project.export(out, LabelList())
    # a.png loses its second object: the stale objects/a/002.png of the first export must go
    project.open_index(0).delete_object(project.doc.objects[1].uid)
    assert project.export(out, LabelList(), overwrite=True).exported == 2
    described, on_disk, _, _ = _described(out)
    assert described == on_disk == {("a", 1), ("b", 1)}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temp folder left


def test_exporting_one_image_keeps_the_rest_of_the_export_described(tmp_path) -> None:
    project = _folder_with_two_annotated(tmp_path)
    out = tmp_path / "out"
    project.export(out, LabelList())
    add_object(project.doc, rect((16, 16), 0, 4, 0, 4), "vehicle")  # b.png gets a second object
    assert project.export(out, LabelList(), all_images=False, overwrite=True).exported == 2
    described, on_disk, coco_images, images = _described(out)
    assert described == on_disk == {("a", 1), ("a", 2), ("b", 1), ("b", 2)}
    assert coco_images == images == {"a.png", "b.png"}
    assert read_png(out / "objects" / "a" / "002.png")[8:12, 8:12].all()  # a.png's masks survived
    assert read_png(out / "masks" / "b.png")[0, 0] == 2


def test_export_refuses_a_foreign_folder_and_a_failed_export_changes_nothing(tmp_path, monkeypatch) -> None:
    import isegformer_app.state.export as export_module
    from isegformer_app.state.export import ExportTargetError

    project = _folder_with_two_annotated(tmp_path)
    foreign = tmp_path / "documents"
    foreign.mkdir()
    (foreign / "thesis.txt").write_text("mine")
    with pytest.raises(ExportTargetError, match="not empty"):
        project.export(foreign, LabelList())
    assert [p.name for p in foreign.iterdir()] == ["thesis.txt"]

    out = tmp_path / "out"
    project.export(out, LabelList())
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    real_png = export_module.png_bytes
    calls = []

    def disk_full_on_the_third_png(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real_png(*args, **kwargs)

    monkeypatch.setattr(export_module, "png_bytes", disk_full_on_the_third_png)
    with pytest.raises(OSError, match="No space"):
        project.export(out, LabelList(), overwrite=True)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # the earlier export is intact, labels.json included
    monkeypatch.setattr(export_module, "png_bytes", real_png)
    # cancelling half-way leaves it as it was too
    cancel = threading.Event()  # set by the user once the first image is written
    summary = project.export(out, LabelList(), overwrite=True, cancel=cancel,
                             report=lambda f, name: f > 0 and cancel.set())  # fmt: skip
    assert summary.exported == 0
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_more_than_255_classes_export_as_16_bit_class_pngs(tmp_path) -> None:
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "a.png")
    labels = LabelList()
    for i in range(300):
        labels.ensure(f"class{i}")
    project = Project.from_path(tmp_path)
    add_object(project.open_first(), rect((16, 16), 2, 6, 2, 6), "class299")
    out = tmp_path / "out"
    assert project.export(out, labels).exported == 1
    classes = read_png(out / "classes" / "a.png")
    assert classes.dtype == np.uint16 and classes[3, 3] == labels.class_id("class299") == 304
    meta = json.loads((out / "labels.json").read_text())
    assert meta["images"]["a"]["instances"][0]["class_id"] == 304
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "out"]  # no temp folder left over
