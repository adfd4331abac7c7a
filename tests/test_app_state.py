"""Qt-free tests of the annotation state: commands, undo/redo, autosave round trip, image loading."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from isegformer_app.settings import Settings
from isegformer_app.state.autosave import restore_document, save_document, sidecar_path
from isegformer_app.state.document import Document
from isegformer_app.state.imageio import ImageLoadError, LoadedImage, load_image
from isegformer_app.state.project import Project
from model.prediction import Prediction


def disk(shape: tuple[int, int], cy: int, cx: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.float32)


def make_doc(h: int = 40, w: int = 60, path=None) -> Document:
    rgb = np.zeros((h, w, 3), np.uint8)
    return Document(LoadedImage(path=path or __import__("pathlib").Path("x.png"), rgb=rgb, full_size=(h, w)))


def click_and_predict(doc: Document, y: int, x: int, positive: bool = True, r: int = 6) -> None:
    doc.add_click(y, x, positive)
    assert doc.needs_prediction()
    state = doc.prev_state_for_request()
    prob = state.prob.copy() if state is not None else np.zeros(doc.shape, np.float32)
    prob = np.maximum(prob, disk(doc.shape, y, x, r)) if positive else prob * (1 - disk(doc.shape, y, x, r))
    assert doc.set_prediction(list(doc.clicks), Prediction.of(prob.astype(np.float32)))


def test_clicks_undo_redo_restore_probabilities() -> None:
    doc = make_doc()
    click_and_predict(doc, 10, 10)
    click_and_predict(doc, 10, 30)
    two = doc.current_mask().copy()
    assert two.sum() == 2 * disk(doc.shape, 10, 10, 6).sum()
    click_and_predict(doc, 10, 12, positive=False)
    assert doc.current_mask().sum() < two.sum()
    assert doc.undo()
    assert len(doc.clicks) == 2 and np.array_equal(doc.current_mask(), two)
    assert not doc.needs_prediction()  # restored from cache, no recomputation
    assert doc.redo()
    assert [c.is_positive for c in doc.clicks] == [True, True, False]
    assert doc.current_mask().sum() < two.sum()
    doc.undo(), doc.undo(), doc.undo()
    assert doc.clicks == [] and doc.prob is None and not doc.current_mask().any()
    assert not doc.undo()


def test_stale_prediction_is_cached_but_not_shown() -> None:
    doc = make_doc()
    doc.add_click(5, 5, True)
    first = list(doc.clicks)
    doc.add_click(20, 20, True)
    assert not doc.set_prediction(first, Prediction.of(disk(doc.shape, 5, 5, 3)))
    assert doc.prob is None
    assert np.array_equal(doc.prev_state_for_request().prob, disk(doc.shape, 5, 5, 3))


def test_finish_brush_delete_z_order_undo_chain() -> None:
    doc = make_doc()
    click_and_predict(doc, 20, 20, r=8)
    a = doc.finish_object("person", (255, 0, 0))
    assert a is not None and doc.clicks == [] and doc.prob is None
    click_and_predict(doc, 20, 28, r=8)
    b = doc.finish_object("animal", (0, 255, 0))
    ids = doc.instance_map()
    assert ids[20, 28] == 2 and ids[20, 12] == 1 and ids[20, 24] == 2  # overlap: b on top
    doc.move_object(b.uid, 0)
    assert doc.instance_map()[20, 24] == 2 and [o.uid for o in doc.objects] == [b.uid, a.uid]
    assert doc.instance_map()[20, 24] == 2  # a is now id 2 and on top
    assert doc.objects[1] is a
    doc.brush_stroke([(5, 50), (30, 50)], radius=2, erase=False, uid=a.uid)
    assert a.mask[15, 50] and a.mask[15, 52] and not a.mask[15, 53]
    doc.brush_stroke([(20, 20)], radius=3, erase=True, uid=a.uid)
    assert not a.mask[20, 20]
    doc.rename_object(a.uid, "vehicle")
    doc.recolor_object(a.uid, (1, 2, 3))
    doc.set_visible(a.uid, False)
    doc.delete_object(b.uid)
    assert [o.uid for o in doc.objects] == [a.uid]
    for _ in range(4):
        doc.undo()
    assert a.label == "person" and a.color == (255, 0, 0) and a.visible and len(doc.objects) == 2
    doc.undo(), doc.undo()  # eraser, brush
    assert a.mask[20, 20] and not a.mask[15, 50]
    doc.undo()  # z-order
    assert [o.uid for o in doc.objects] == [a.uid, b.uid]
    doc.undo()  # finish b -> its clicks and probability come back
    assert len(doc.objects) == 1 and len(doc.clicks) == 1 and doc.current_mask()[20, 28]
    doc.redo()
    assert len(doc.objects) == 2 and doc.objects[1] is b and doc.clicks == []


def test_brush_on_current_object_and_reset() -> None:
    doc = make_doc()
    click_and_predict(doc, 20, 20, r=5)
    doc.brush_stroke([(20, 20)], radius=2, erase=True)
    assert not doc.current_mask()[20, 20] and doc.current_mask()[20, 24]
    doc.brush_stroke([(2, 2)], radius=1, erase=False)
    assert doc.current_mask()[2, 2]
    doc.reset_clicks()
    assert not doc.current_mask().any() and doc.clicks == []
    doc.undo()
    assert doc.current_mask()[2, 2] and not doc.current_mask()[20, 20] and len(doc.clicks) == 1


def test_finish_empty_mask_is_noop() -> None:
    doc = make_doc()
    assert doc.finish_object("object", (1, 1, 1)) is None
    assert not doc.history.can_undo()


def test_click_outside_image_rejected() -> None:
    with pytest.raises(ValueError, match="outside"):
        make_doc().add_click(100, 5, True)


def test_autosave_round_trip_with_click_history(tmp_path) -> None:
    image_path = tmp_path / "a.png"
    Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(image_path)
    doc = Document(load_image(image_path))
    click_and_predict(doc, 20, 20)
    doc.finish_object("person", (255, 0, 0))
    doc.brush_stroke([(3, 3)], 2, erase=False, uid=doc.objects[0].uid)
    click_and_predict(doc, 10, 40)
    click_and_predict(doc, 12, 42, positive=False, r=2)
    doc.brush_stroke([(35, 5)], 1, erase=False)
    assert doc.dirty
    side = sidecar_path(image_path)
    save_document(doc, side)
    assert not doc.dirty and side.parent.name == ".isegformer"
    assert not list(side.parent.glob("*.tmp"))

    again = Document(load_image(image_path))
    assert restore_document(again, side)
    assert [(c.y, c.x, c.is_positive, c.index) for c in again.clicks] == [
        (10.0, 40.0, True, 0), (12.0, 42.0, False, 1)]
    assert np.array_equal(again.current_mask(), doc.current_mask())
    assert np.array_equal(again.objects[0].mask, doc.objects[0].mask)
    assert again.objects[0].label == "person" and again.objects[0].color == (255, 0, 0)
    assert [c.coords for c in again.objects[0].clicks] == [(20.0, 20.0)]
    # annotation goes on: the next click's previous mask is the restored probability
    again.add_click(30, 30, True)
    assert np.array_equal(again.prev_state_for_request().prob, doc.prob)


def test_project_switch_autosaves_and_restores(tmp_path) -> None:
    for name in ("a.png", "b.png"):
        Image.fromarray(np.full((30, 30, 3), 50, np.uint8)).save(tmp_path / name)
    project = Project.from_path(tmp_path)
    doc = project.open_index(0)
    click_and_predict(doc, 15, 15)
    doc.finish_object("object", (9, 9, 9))
    assert project.step(-1) is None
    doc_b = project.step(+1)
    assert doc_b.path.name == "b.png" and doc_b.objects == []
    assert (tmp_path / ".isegformer" / "a.png.isegformer.npz").is_file()
    doc_a = project.step(-1)
    assert len(doc_a.objects) == 1 and doc_a.objects[0].mask[15, 15] and not doc_a.dirty


def test_unreadable_images_are_skipped_listed_and_do_not_block_the_folder(tmp_path) -> None:
    Image.fromarray(np.full((30, 30, 3), 50, np.uint8)).save(tmp_path / "b.png")
    (tmp_path / "a.png").write_bytes((tmp_path / "b.png").read_bytes()[:60])  # data stops early
    (tmp_path / "c.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    Image.fromarray(np.full((30, 30, 3), 90, np.uint8)).save(tmp_path / "d.png")
    project = Project.from_path(tmp_path)
    doc = project.open_first()
    assert doc.path.name == "b.png" and project.index == 1
    assert any("a.png" in n for n in project.notices)
    doc = project.step(+1)
    assert doc.path.name == "d.png" and any("c.jpg" in n for n in project.notices)
    assert project.step(+1) is None and project.doc.path.name == "d.png"
    assert project.step(-1).path.name == "b.png"  # back over c.jpg
    assert project.step(-1) is None and project.doc.path.name == "b.png"
    assert sorted(p.name for p in project.unreadable) == ["a.png", "c.jpg"]
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "e.png")
    data = (tmp_path / "e.png").read_bytes()
    (tmp_path / "e.png").write_bytes(data[: len(data) * 9 // 10])  # the last rows are missing
    with pytest.raises(ImageLoadError, match="incomplete"):
        load_image(tmp_path / "e.png")
    only_broken = tmp_path / "broken"
    only_broken.mkdir()
    (only_broken / "x.png").write_bytes(b"garbage")
    with pytest.raises(ImageLoadError, match="x.png"):
        Project.from_path(only_broken).open_first()


def test_animated_gif_opens_its_first_frame_as_an_image_with_a_notice(tmp_path) -> None:
    from isegformer_app.ui.volume_files import looks_like_volume

    frames = [Image.fromarray(np.full((12, 16, 3), v, np.uint8)) for v in (10, 200, 90)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert not looks_like_volume(tmp_path / "anim.gif") and not looks_like_volume(tmp_path)
    project = Project.from_path(tmp_path)
    doc = project.open_first()
    assert doc.image.rgb.shape == (12, 16, 3) and abs(int(doc.image.rgb[0, 0, 0]) - 10) <= 2
    assert any("3 frames" in n and "first" in n for n in project.notices)


def test_unwritable_folder_autosaves_in_the_user_folder_with_one_notice(tmp_path) -> None:
    from isegformer_app.state.sidecar_location import user_sidecar_dir

    for name in ("a.png", "b.png"):
        Image.fromarray(np.full((30, 30, 3), 50, np.uint8)).save(tmp_path / name)
    (tmp_path / ".isegformer").write_bytes(b"")  # a file where the sidecar folder should be: unwritable
    project = Project.from_path(tmp_path)
    doc = project.open_first()
    assert sum("autosaved in" in n for n in project.notices) == 1
    click_and_predict(doc, 15, 15)
    doc.finish_object("object", (9, 9, 9))
    doc_b = project.step(+1)  # saves a.png on the way, without an error
    assert not any("autosaved in" in n for n in project.notices)  # said once
    saved = user_sidecar_dir(tmp_path) / "a.png.isegformer.npz"
    assert saved.is_file() and project.sidecar_for(doc_b.path).parent == saved.parent
    again = Project.from_path(tmp_path).open_first()
    assert len(again.objects) == 1 and again.objects[0].mask[15, 15]


def test_folder_that_becomes_unwritable_switches_to_the_user_folder_on_the_failed_save(tmp_path) -> None:
    from isegformer_app.state.sidecar_location import user_sidecar_dir

    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.full((30, 30, 3), 50, np.uint8)).save(folder / "a.png")
    project = Project.from_path(folder)
    doc = project.open_first()
    assert project.notices == [] and project.sidecar_for(doc.path).parent == folder / ".isegformer"
    (folder / ".isegformer").write_bytes(b"")  # e.g. the share was remounted read-only
    click_and_predict(doc, 15, 15)
    assert project.save()
    assert (user_sidecar_dir(folder) / "a.png.isegformer.npz").is_file()
    assert any("autosaved in" in n for n in project.take_location_notices())


def test_broken_sidecar_is_kept_and_reported(tmp_path) -> None:
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(tmp_path / "a.png")
    side = sidecar_path(tmp_path / "a.png")
    side.parent.mkdir()
    side.write_bytes(b"not a zip")
    project = Project.from_path(tmp_path)
    project.open_index(0)
    assert any("unreadable" in n for n in project.notices)
    assert side.with_name(side.name + ".broken").read_bytes() == b"not a zip"


def test_load_image_variants(tmp_path) -> None:
    gray16 = (np.arange(20 * 30, dtype=np.uint16).reshape(20, 30) * 100).astype(np.uint16)
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    img = load_image(tmp_path / "g16.png")
    assert img.rgb.shape == (20, 30, 3) and img.rgb.dtype == np.uint8
    assert img.rgb[0, 0, 0] == 0 and img.rgb[-1, -1, 0] == 255

    Image.fromarray(np.full((8, 9), 77, np.uint8)).save(tmp_path / "g.tif")
    assert load_image(tmp_path / "g.tif").rgb[0, 0].tolist() == [77, 77, 77]

    rgb = np.zeros((20, 40, 3), np.uint8)
    rgb[:, :20] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    Image.fromarray(rgb).save(tmp_path / "rot.jpg", exif=exif, quality=95)
    rot = load_image(tmp_path / "rot.jpg")
    assert rot.full_size == (40, 20) and rot.rgb.shape == (40, 20, 3)
    assert rot.rgb[2, 10].mean() > 200 and rot.rgb[-3, 10].mean() < 50  # white half is now on top
    assert "EXIF" in rot.notices[0] and rot.exif_rotated

    big = load_image(tmp_path / "rot.jpg", max_side=10)
    assert big.full_size == (40, 20) and big.working_size == (10, 5) and big.downscaled

    good = tmp_path / "t.jpg"
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(good)
    (tmp_path / "trunc.jpg").write_bytes(good.read_bytes()[:200])
    with pytest.raises(ImageLoadError, match="trunc.jpg"):
        load_image(tmp_path / "trunc.jpg")
    (tmp_path / "junk.png").write_bytes(b"hello")
    with pytest.raises(ImageLoadError, match="not an image"):
        load_image(tmp_path / "junk.png")


def test_settings_round_trip_and_broken_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ISEGFORMER_CONFIG_DIR", str(tmp_path))
    s = Settings.load()
    assert s.threshold == pytest.approx(0.49) and s.shortcuts["finish"] == "Space"
    assert s.local_edits  # clicks never lose the object, unless the user turns it off
    s.opacity, s.local_edits = 0.25, False
    s.add_recent(tmp_path / "x.png")
    s.save()
    again = Settings.load()
    assert again.opacity == 0.25 and again.recent_files == [str((tmp_path / "x.png").resolve())]
    assert again.local_edits is False
    (tmp_path / "settings.json").write_text("{broken")
    broken = Settings.load()
    assert broken.problem and broken.opacity == 0.5


def test_probability_cache_is_bounded_by_memory() -> None:
    doc = make_doc(40, 60)  # one probability map = 40*60*4 = 9600 bytes
    doc.predictions.max_bytes = 3 * 9600  # a prediction holds its map once (its state shares it)
    for i in range(5):
        click_and_predict(doc, 5 + 5 * i, 10)
    assert len(doc.predictions) == 3 and doc.current_mask()[25, 10]
    doc.undo(), doc.undo()
    assert not doc.needs_prediction()  # 3 clicks: still cached
    doc.undo()
    assert doc.needs_prediction() and doc.prob is None  # 2 clicks: evicted, must be predicted again


def test_sidecar_is_not_restored_onto_another_photo_of_the_same_size(tmp_path) -> None:
    from isegformer_app.state.autosave import SidecarError

    rng = np.random.default_rng(4)
    path = tmp_path / "a.png"
    Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(path)
    doc = Document(load_image(path))
    doc.add_click(10, 10, True)
    sidecar = sidecar_path(path)
    save_document(doc, sidecar)
    Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(path)  # replaced, same size
    with pytest.raises(SidecarError, match="different image"):
        restore_document(Document(load_image(path)), sidecar)
    assert sidecar.is_file()  # left untouched


def test_temp_files_of_killed_saves_are_cleaned(tmp_path) -> None:
    import os
    import time

    from isegformer_app.state.autosave import SIDECAR_DIRNAME, STALE_TEMP_SECONDS

    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(path)
    folder = tmp_path / SIDECAR_DIRNAME
    folder.mkdir()
    stale, fresh = folder / ".a.png.isegformer.npz.abc.tmp.npz", folder / ".a.png.isegformer.npz.def.tmp.npz"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"y")
    old = time.time() - STALE_TEMP_SECONDS - 5
    os.utime(stale, (old, old))
    Project([path])
    assert not stale.exists() and fresh.exists()  # a write in progress elsewhere is kept


def test_hostile_images_load_with_notices_or_a_clear_refusal(tmp_path, monkeypatch) -> None:
    from isegformer_app.state import imageio

    values = np.linspace(0.0, 1.0, 30 * 40, dtype=np.float32).reshape(30, 40)
    values[3, 4] = np.nan
    Image.fromarray(values, mode="F").save(tmp_path / "nan.tif")
    loaded = load_image(tmp_path / "nan.tif")
    assert loaded.rgb[29, 39, 0] == 255 and loaded.rgb[15, 20, 0] > 100  # not black
    assert any("NaN" in n for n in loaded.notices)

    exif = Image.Exif()
    exif[0x0112] = 99
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "odd.jpg", exif=exif)
    loaded = load_image(tmp_path / "odd.jpg")
    assert loaded.full_size == (20, 30) and not loaded.exif_rotated
    assert any("orientation 99" in n for n in loaded.notices)

    frames = [Image.fromarray(np.full((10, 12, 3), v, np.uint8)) for v in (0, 128, 255)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert any("3 frames" in n for n in load_image(tmp_path / "anim.gif").notices)

    monkeypatch.setattr(imageio, "MAX_OPEN_PIXELS", 100)
    with pytest.raises(ImageLoadError, match="megapixels"):
        load_image(tmp_path / "odd.jpg")


def test_an_autosave_from_a_newer_version_is_kept_and_never_overwritten(tmp_path) -> None:
    from isegformer_app.state.sidecar_codec import read_sidecar_file, write_sidecar

    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(tmp_path / "a.png")
    project = Project.from_path(tmp_path)
    doc = project.open_index(0)
    doc.add_click(5, 5, True)
    assert project.save()
    side = sidecar_path(tmp_path / "a.png")
    meta, arrays = read_sidecar_file(side, newest_version=1)
    write_sidecar(side, {**meta, "version": 2, "written_by": "isegformer 9"}, arrays)  # a newer version's
    newer = side.read_bytes()
    again = Project.from_path(tmp_path)
    doc = again.open_index(0)
    assert any("newer isegformer" in n and "kept as a.png.isegformer.npz.newer-version" in n
               for n in again.notices)
    assert doc.dirty and not doc.clicks
    doc.add_click(8, 8, True)
    assert again.save()  # the next autosave writes a fresh file; the newer one stays as it was
    assert side.with_name(side.name + ".newer-version").read_bytes() == newer
    assert read_sidecar_file(side, newest_version=1)[0]["version"] == 1


@pytest.mark.parametrize("damage", [
    {"version": float("inf")}, {"clicks": [[1, 2]]}, {"next_uid": None}, {"objects": [{"uid": 1}]},
    {"clicks": [[float("nan"), 1, True]]},
])  # fmt: skip
def test_malformed_autosave_meta_is_one_clear_error_and_leaves_the_document_as_it_was(tmp_path, damage):
    import json

    from isegformer_app.state.autosave import SidecarError
    from isegformer_app.state.sidecar_codec import read_sidecar_file, write_sidecar

    path = tmp_path / "a.png"
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(path)
    doc = Document(load_image(path))
    doc.add_click(5, 5, True)
    doc.set_prediction(list(doc.clicks), Prediction.of(np.full(doc.shape, 0.9, np.float32)))
    doc.finish_object("cat", (1, 2, 3))
    side = sidecar_path(path)
    save_document(doc, side)
    meta, arrays = read_sidecar_file(side, newest_version=1)
    meta = json.loads(json.dumps({**meta, **damage}))  # as JSON would hold it
    write_sidecar(side, meta, arrays)
    fresh = Document(load_image(path))
    with pytest.raises(SidecarError, match="unreadable"):
        restore_document(fresh, side)
    assert fresh.objects == [] and fresh.clicks == [] and fresh.next_uid == 1
