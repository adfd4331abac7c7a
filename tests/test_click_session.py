"""Images and volumes annotate through one click session: the same calls give the same behaviour."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from fakes import DiskPredictor

from isegformer_app.state.autosave import read_sidecar, save_document
from isegformer_app.state.click_session import ClickSession, PrefixCache, click_key
from isegformer_app.state.document import Document
from isegformer_app.state.imageio import LoadedImage
from isegformer_app.state.sidecar_codec import SidecarError, read_sidecar_file, write_sidecar
from isegformer_app.state.volume_autosave import read_volume_sidecar, save_volume_document
from isegformer_app.state.volume_document import VolumeDocument
from isegformer_app.volumes import open_volume
from model.clicks import Click
from model.prediction import Prediction
from model.threshold import DEFAULT_THRESHOLD

RADIUS = 5


@pytest.fixture(params=["image", "volume"])
def doc(request, tmp_path: Path):
    """A 40x60 image document or a volume document showing a 40x60 axial slice."""
    if request.param == "image":
        rgb = np.full((40, 60, 3), 100, np.uint8)
        return Document(LoadedImage(path=tmp_path / "x.png", rgb=rgb, full_size=(40, 60)))
    data = np.full((60, 40, 5), 100, np.int16)  # NIfTI (x, y, z): axial slices are 40 x 60
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    volume_doc = VolumeDocument(open_volume(path), path)
    assert volume_doc.shape == (40, 60)
    return volume_doc


def model_image(doc) -> np.ndarray:
    return doc.model_image() if isinstance(doc, VolumeDocument) else doc.image.rgb


def click(doc, predictor: DiskPredictor, y: int, x: int, positive: bool = True) -> None:
    """A user click, predicted the way the inference worker does it."""
    doc.add_click(y, x, positive)
    if doc.needs_prediction():
        predictor.set_image(model_image(doc))
        doc.set_prediction(list(doc.clicks), predictor.predict(doc.clicks, doc.prev_state_for_request()))


def test_clicks_undo_redo_and_reset_behave_the_same(doc) -> None:
    predictor = DiskPredictor(radius=RADIUS)
    click(doc, predictor, 10, 10)
    one = doc.current_mask().copy()
    click(doc, predictor, 30, 45)
    assert one[10, 10] and not one[30, 45] and doc.current_mask()[30, 45]
    assert predictor.calls == [1, 2]
    assert doc.undo() and not doc.needs_prediction()  # the 1-click prediction comes from the cache
    np.testing.assert_array_equal(doc.current_mask(), one)
    assert doc.redo() and doc.current_mask()[30, 45] and predictor.calls == [1, 2]
    doc.reset_clicks()
    assert not doc.has_current() and not doc.current_mask().any()
    assert doc.undo() and len(doc.clicks) == 2 and not doc.needs_prediction()
    assert doc.current_mask()[30, 45] and predictor.calls == [1, 2]


def test_a_pixel_at_exactly_the_threshold_is_background_in_both(doc) -> None:
    """The app and the NoC protocol / Predictor.mask agree: ``prob > threshold``."""
    doc.add_click(20, 30, True)
    prob = np.zeros(doc.shape, np.float32)
    prob[:, :30] = DEFAULT_THRESHOLD
    prob[:, 30:] = np.nextafter(np.float32(DEFAULT_THRESHOLD), np.float32(1))
    assert doc.set_prediction(list(doc.clicks), Prediction.of(prob))
    mask = doc.current_mask()
    assert not mask[:, :30].any() and mask[:, 30:].all()


def test_brush_correction_and_its_undo_are_the_same(doc) -> None:
    predictor = DiskPredictor(radius=RADIUS)
    click(doc, predictor, 20, 20)
    doc.brush_stroke([(20, 40), (20, 50)], radius=2, erase=False)
    assert doc.current_mask()[20, 45] and doc.current_mask()[20, 20]
    doc.brush_stroke([(20, 20)], radius=2, erase=True)
    assert not doc.current_mask()[20, 20]
    doc.undo(), doc.undo()
    assert not doc.current_mask()[20, 45] and doc.current_mask()[20, 20]


def test_the_previous_state_is_the_longest_predicted_prefix(doc) -> None:
    predictor = DiskPredictor(radius=RADIUS)
    assert doc.prev_state_for_request() is None
    click(doc, predictor, 10, 10)
    first = doc.prob
    doc.add_click(30, 30, True)
    doc.add_click(30, 50, False)  # two clicks waiting for their predictions (coalesced)
    state = doc.prev_state_for_request()  # the first click's probability and zoom box, one cache
    assert state.prob is first and state.zoom_box == (10, 10, 10, 10)


def test_prefix_cache_bounds_and_lookup() -> None:
    cache: PrefixCache[np.ndarray] = PrefixCache(max_items=3, max_bytes=2 * 400)
    keys = [click_key([Click(float(i), 0.0, True, j) for j, i in enumerate(range(n))]) for n in range(1, 5)]
    for key in keys[:2]:
        cache.put(key, np.zeros(100, np.float32))  # 400 bytes each
    assert len(cache) == 2 and cache.longest_prefix(keys[3]) == (keys[1], cache.get(keys[1]))
    cache.put(keys[2], np.zeros(100, np.float32))  # over 800 bytes: the oldest goes
    assert keys[0] not in cache and keys[1] in cache and keys[2] in cache
    cache.put(keys[3], np.zeros(1000, np.float32))  # larger than the bound alone: the newest stays
    assert len(cache) == 1 and keys[3] in cache
    assert cache.longest_prefix(keys[0]) is None


def test_session_snapshot_restores_everything() -> None:
    s = ClickSession((8, 8))
    s.clicks.append(Click(2.0, 2.0, True, 0))
    s.store(s.clicks, Prediction.of(np.full((8, 8), 0.9, np.float32), (1, 2, 3, 4)))
    s.brush[0, 0] = -1
    snap = s.snapshot()
    s.clear()
    assert not s.has_content() and s.prob is None and len(s.predictions) == 0
    s.restore(snap)
    assert len(s.clicks) == 1 and not s.needs_prediction() and s.brush[0, 0] == -1
    assert s.mask(0.5).sum() == 63
    s.clicks.append(Click(5.0, 5.0, True, 1))
    assert s.prev_state().zoom_box == (1, 2, 3, 4)  # the state came back with the probability


def test_both_autosaves_round_trip_the_session_and_refuse_newer_files(doc, tmp_path: Path) -> None:
    predictor = DiskPredictor(radius=RADIUS)
    click(doc, predictor, 10, 10)
    doc.brush_stroke([(30, 50)], radius=2, erase=False)
    path = tmp_path / "side.npz"
    if isinstance(doc, VolumeDocument):
        save_volume_document(doc, path)
        contents = read_volume_sidecar(path)
        brush, prob = contents["s0_brush"], contents["s0_prob"]
    else:
        save_document(doc, path)
        arrays = read_sidecar(path).arrays
        brush, prob = arrays["brush"], arrays["prob"]
    np.testing.assert_array_equal(brush, doc.brush if isinstance(doc, Document) else doc.session().brush)
    np.testing.assert_array_equal(prob, doc.prob)
    meta, arrays = read_sidecar_file(path, newest_version=1)
    write_sidecar(path, {**meta, "version": 99}, arrays)
    with pytest.raises(SidecarError, match="newer isegformer"):
        read_volume_sidecar(path) if isinstance(doc, VolumeDocument) else read_sidecar(path)


@pytest.mark.parametrize("kind", ["not a zip", "torn zip", "zip bomb", "meta not an object", "pickled array"])
def test_hostile_sidecar_files_give_one_clear_error(tmp_path: Path, kind: str, monkeypatch) -> None:
    import io
    import zipfile

    from isegformer_app.state import sidecar_codec

    monkeypatch.setattr(sidecar_codec, "MAX_SIDECAR_BYTES", 2**20)  # 1 MiB here, 4 GiB in the app

    path = tmp_path / "x.png.isegformer.npz"
    if kind == "not a zip":
        path.write_bytes(b"garbage" * 20)
    elif kind == "torn zip":
        write_sidecar(path, {"version": 1}, {"brush": np.zeros((40, 60), np.int8)})
        path.write_bytes(path.read_bytes()[:-30])
    elif kind == "zip bomb":  # 8 MiB of zeros in a few kB: refused before anything is inflated
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("brush.npy", bytes(8 * 2**20))
    else:
        buffer = io.BytesIO()
        meta = b"[1, 2]" if kind == "meta not an object" else b'{"version": 1}'
        extra = {"x": np.array([object()], dtype=object)} if kind == "pickled array" else {}
        np.savez(buffer, meta=np.frombuffer(meta, np.uint8), **extra)
        path.write_bytes(buffer.getvalue())
    with pytest.raises(SidecarError, match="x.png.isegformer.npz is unreadable") as error:
        read_sidecar(path)
    assert ("GiB of arrays declared" in str(error.value)) == (kind == "zip bomb")


def test_an_image_autosave_in_the_format_1_layout_still_restores(tmp_path: Path) -> None:
    """The layout the first release wrote (by hand here, not by today's writer): meta JSON as uint8, masks
    packed along x, brush int8, prob float32."""
    import io
    import json

    from isegformer_app.state.autosave import restore_document

    image = LoadedImage(path=tmp_path / "x.png", rgb=np.full((40, 60, 3), 100, np.uint8), full_size=(40, 60))
    mask = np.zeros((1, 40, 60), bool)
    mask[0, 5:15, 10:30] = True
    prob = np.zeros((40, 60), np.float32)
    prob[20:30, 20:40] = 0.8
    meta = {"version": 1, "image": "x.png", "full_size": [40, 60], "exif_rotated": False,
            "working_size": [40, 60], "threshold": 0.49, "next_uid": 2, "clicks": [[25.0, 30.0, True]],
            "objects": [{"uid": 1, "label": "cat", "color": [10, 20, 30], "visible": True,
                         "clicks": [[10.0, 20.0, True]]}]}  # fmt: skip
    buffer = io.BytesIO()
    np.savez_compressed(buffer, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
                        masks=np.packbits(mask, axis=-1), brush=np.zeros((40, 60), np.int8), prob=prob)
    path = tmp_path / "x.png.isegformer.npz"
    path.write_bytes(buffer.getvalue())
    doc = Document(image)
    assert restore_document(doc, path)
    assert [(o.uid, o.label, o.color) for o in doc.objects] == [(1, "cat", (10, 20, 30))]
    np.testing.assert_array_equal(doc.objects[0].mask, mask[0])
    assert len(doc.clicks) == 1 and not doc.needs_prediction() and doc.current_mask()[25, 30]
    assert doc.next_uid == 2 and not doc.dirty


def test_set_aside_never_replaces_an_earlier_set_aside_file_and_colours_are_clamped(tmp_path: Path) -> None:
    from isegformer_app.state.labels import as_color
    from isegformer_app.state.sidecar_codec import SidecarTooNew, set_aside

    path = tmp_path / "a.png.isegformer.npz"
    for content in (b"first", b"second"):
        path.write_bytes(content)
        assert "kept as" in set_aside(path, SidecarTooNew("newer"))
    assert (tmp_path / "a.png.isegformer.npz.newer-version").read_bytes() == b"first"
    assert (tmp_path / "a.png.isegformer.npz.newer-version-2").read_bytes() == b"second"
    assert as_color([300, -4, 12.7]) == (255, 0, 12)  # a hand-edited label colour still loads
    from isegformer_app.state.labels import LabelList

    assert LabelList.from_json([{"name": "x", "color": [300, 0, 7]}]).classes[0].color == (255, 0, 7)
    with pytest.raises(ValueError):
        as_color([1, 2])


def test_folder_status_of_a_torn_or_inflating_autosave_is_unreadable(tmp_path: Path, monkeypatch) -> None:
    import zipfile

    from isegformer_app.state import sidecar_codec
    from isegformer_app.state.image_status import sidecar_status

    monkeypatch.setattr(sidecar_codec, "MAX_SIDECAR_BYTES", 2**20)
    torn = tmp_path / "torn.npz"
    write_sidecar(torn, {"version": 1, "clicks": [[1, 1, True]], "objects": []},
                  {"brush": np.zeros((4, 4), np.int8)})  # fmt: skip
    assert sidecar_status(torn) == "in progress"
    torn.write_bytes(torn.read_bytes()[:-40])
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("brush.npy", bytes(8 * 2**20))
    assert sidecar_status(torn) == "autosave unreadable" and sidecar_status(bomb) == "autosave unreadable"


def test_the_session_cache_continues_a_network_exactly_as_the_noc_evaluation(doc) -> None:
    """The bundled network through the session's one cache (each request carries the cached state of
    the longest predicted prefix, each result is stored) gives the NoC evaluation's maps and IoUs click
    for click; after an undo and another prediction in between, the state round-tripped through the
    cache continues exactly as the uninterrupted run."""
    from model.checkpoint import load_checkpoint
    from model.evaluation.noc import evaluate_sample, mask_iou
    from model.predictor import Predictor
    from resources import bundled_model

    predictor = Predictor(load_checkpoint(bundled_model()), device="cpu")
    gt = np.zeros(doc.shape, np.int32)
    gt[8:30, 12:50] = 1
    image = model_image(doc).copy()  # the predictor gets this image; the document only holds clicks
    image[gt == 1] = (200, 60, 40)
    reference = evaluate_sample(predictor, image, gt, max_clicks=5, target_iou=1.01)
    assert len(reference.clicks) == 5
    predictor.set_image(image)
    chain = []  # the evaluation's path written out: each click from the previous click's state
    for k in range(len(reference.clicks)):
        chain.append(predictor.predict(reference.clicks[: k + 1], chain[-1].state if chain else None))
    assert chain[-1].state.zoom_box is not None  # ZoomIn took part

    for k, c in enumerate(reference.clicks):  # the user makes the same clicks in the document
        doc.add_click(c.y, c.x, c.is_positive)
        assert doc.needs_prediction()
        doc.set_prediction(list(doc.clicks), predictor.predict(doc.clicks, doc.prev_state_for_request()))
        np.testing.assert_array_equal(doc.prob, chain[k].prob)
        assert mask_iou(gt, doc.current_mask()) == pytest.approx(float(reference.ious[k]), abs=1e-7)

    assert doc.undo() and doc.undo() and not doc.needs_prediction()  # from the cache, no prediction
    np.testing.assert_array_equal(doc.prob, chain[2].prob)
    doc.add_click(35, 5, False)  # a wrong click, predicted from the cached state of click 3
    wrong = predictor.predict(doc.clicks, doc.prev_state_for_request())
    expected_wrong = predictor.predict(list(doc.clicks), chain[2].state)
    np.testing.assert_array_equal(wrong.prob, expected_wrong.prob)
    doc.undo()
    session = doc.session() if isinstance(doc, VolumeDocument) else doc.current
    cached = session.predictions.get(click_key(doc.clicks)).state  # click 3's state, back from the cache
    assert np.array_equal(cached.prob, chain[2].prob) and cached.zoom_box == chain[2].state.zoom_box
    for k in (3, 4):
        redone = predictor.predict(reference.clicks[: k + 1], cached)
        np.testing.assert_array_equal(redone.prob, chain[k].prob)
        assert redone.state.zoom_box == chain[k].state.zoom_box
        cached = redone.state
    doc.add_click(reference.clicks[3].y, reference.clicks[3].x, reference.clicks[3].is_positive)
    assert not doc.needs_prediction()  # returning to the earlier click list is instant from the cache
    np.testing.assert_array_equal(doc.prob, chain[3].prob)
