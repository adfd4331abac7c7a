"""Issue 23 (reliability, round 3): two instances on one folder, exports that check the autosaves they
trust, checkpoints refused before they allocate, hostile files and settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from isegformer_app.state.autosave import read_sidecar, save_document
from isegformer_app.state.document import Document
from isegformer_app.state.imageio import load_image, read_png
from isegformer_app.state.labels import LabelList
from isegformer_app.state.project import Project
from isegformer_app.state.sidecar_codec import write_sidecar


def _photo(path, h: int, w: int, value: int = 90) -> None:
    rng = np.random.default_rng(value)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def _annotate(doc: Document, y0: int, y1: int, x0: int, x1: int, label: str = "object") -> None:
    prob = np.zeros(doc.shape, np.float32)
    prob[y0:y1, x0:x1] = 1.0
    doc.add_click((y0 + y1) // 2, (x0 + x1) // 2, True)
    doc.set_prediction(list(doc.clicks), prob)
    assert doc.finish_object(label, (200, 10, 10)) is not None


def _annotated_folder(tmp_path, n: int = 2):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(n):
        _photo(src / f"img{i}.png", 60, 80, value=i)
    project = Project.from_path(src)
    for i in range(n):
        doc = project.open_index(i)
        _annotate(doc, 5, 30, 10, 40)
    project.save()
    return src, project


# ------------------------------------------------------------------ 2: export checks autosave vs image
def test_export_skips_an_image_replaced_by_another_of_another_size(tmp_path) -> None:
    src, project = _annotated_folder(tmp_path)
    project.open_index(0)  # img1 is exported from its autosave
    _photo(src / "img1.png", 100, 120, value=7)  # another photo under the same name
    summary = Project.from_path(src).export(tmp_path / "out", LabelList())
    assert summary.exported == 1
    assert len(summary.skipped) == 1 and summary.skipped[0].startswith("img1.png: ")
    assert "different image" in summary.skipped[0] or "was made for" in summary.skipped[0]
    assert not (tmp_path / "out" / "masks" / "img1.png").exists()


def test_export_skips_an_image_replaced_by_another_of_the_same_size(tmp_path) -> None:
    src, _project = _annotated_folder(tmp_path)
    _photo(src / "img1.png", 60, 80, value=99)
    summary = Project.from_path(src).export(tmp_path / "out", LabelList())
    assert summary.exported == 1 and summary.skipped[0].startswith("img1.png: ")
    assert "different image" in summary.skipped[0]


@pytest.mark.parametrize("full_size", [[0, 0], [-5, 80], [200000, 200000]])
def test_export_ignores_a_hostile_full_size_in_an_autosave(tmp_path, full_size) -> None:
    src, _project = _annotated_folder(tmp_path)
    sidecar = Project.from_path(src).sidecar_for(src / "img1.png")
    data = read_sidecar(sidecar)
    meta = dict(data.meta, full_size=full_size)
    arrays = {"masks": np.packbits(data.masks, axis=-1), **data.arrays}
    write_sidecar(sidecar, meta, arrays)
    summary = Project.from_path(src).export(tmp_path / "out", LabelList())
    assert summary.exported == 2, summary.skipped  # the size comes from the image itself
    assert read_png(tmp_path / "out" / "masks" / "img1.png").shape == (60, 80)


def test_export_skips_an_image_that_is_gone_or_unreadable(tmp_path) -> None:
    src, _project = _annotated_folder(tmp_path)
    (src / "img1.png").write_bytes(b"not a png")
    summary = Project.from_path(src).export(tmp_path / "out", LabelList())
    assert summary.exported == 1 and summary.skipped[0].startswith("img1.png: ")
