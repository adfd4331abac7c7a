"""Issue 23 (reliability, round 3): two instances on one folder, exports that check the autosaves they
trust, checkpoints refused before they allocate, hostile files and settings."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from PIL import Image

from isegformer_app.state.autosave import read_sidecar
from isegformer_app.state.document import Document
from isegformer_app.state.imageio import read_png
from isegformer_app.state.labels import LabelList
from isegformer_app.state.project import Project
from isegformer_app.state.sidecar_codec import write_sidecar
from model.prediction import Prediction


def _photo(path, h: int, w: int, value: int = 90) -> None:
    rng = np.random.default_rng(value)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def _annotate(doc: Document, y0: int, y1: int, x0: int, x1: int, label: str = "object") -> None:
    prob = np.zeros(doc.shape, np.float32)
    prob[y0:y1, x0:x1] = 1.0
    doc.add_click((y0 + y1) // 2, (x0 + x1) // 2, True)
    doc.set_prediction(list(doc.clicks), Prediction.of(prob))
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
    assert [(s.path.name, s.reason) for s in summary.skipped] == [("img1.png", "autosave of another image")]
    assert "was made for a [60, 80] image" in summary.skipped[0].detail
    assert not (tmp_path / "out" / "masks" / "img1.png").exists()


def test_export_decodes_only_images_whose_autosave_has_something_to_export(tmp_path, monkeypatch) -> None:
    from isegformer_app.state import export

    src, _ = _annotated_folder(tmp_path, n=1)
    _photo(src / "img1.png", 60, 80, value=5)
    project = Project.from_path(src)
    clicked = project.open_index(1)
    clicked.add_click(20, 20, True)  # clicks only, no finished object
    project.save()
    decoded = []
    real_load = export.load_image
    def counted_load(path, *args):
        decoded.append(path.name)
        return real_load(path, *args)

    monkeypatch.setattr(export, "load_image", counted_load)
    summary = Project.from_path(src).export(tmp_path / "out", LabelList())
    assert summary.exported == 1 and decoded == ["img0.png"]
    assert [(s.path.name, s.reason) for s in summary.skipped] == [("img1.png", "no finished object")]


def test_export_skips_an_image_replaced_by_another_of_the_same_size(tmp_path) -> None:
    src, _project = _annotated_folder(tmp_path)
    _photo(src / "img1.png", 60, 80, value=99)
    summary = Project.from_path(src).export(tmp_path / "out", LabelList())
    assert summary.exported == 1
    assert [(s.path.name, s.reason) for s in summary.skipped] == [("img1.png", "autosave of another image")]
    assert "different image" in summary.skipped[0].detail


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
    assert summary.exported == 1
    assert [(s.path.name, s.reason) for s in summary.skipped] == [("img1.png", "unreadable")]


# ------------------------------------------------------------- 3: checkpoints refused before they allocate
_HUGE_CONFIGS = """
import resource, sys, time
import torch
from model.prediction import Prediction
from model.build import build_model
from model.checkpoint import (CheckpointError, _OriginalPickleModule, _RestrictedPickleModule,
                              load_checkpoint, save_checkpoint)
folder = sys.argv[1]
save_checkpoint(build_model("segformer_b0"), f"{folder}/b0.pth")
raw = torch.load(f"{folder}/b0.pth", weights_only=False, pickle_module=_RestrictedPickleModule)
cases = {"wide": ("backbone_params", "embed_dims", 20000),
         "deep": ("backbone_params", "num_layers", [10**6, 2, 2, 2]),
         "negative": ("backbone_params", "embed_dims", -32), "head": ("decode_head_params", "channels", -256)}
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for name, (group, key, value) in cases.items():
    params = raw["config"]["params"]
    old = params[group]["value"][key]
    params[group]["value"][key] = value
    torch.save(raw, f"{folder}/{name}.pth", pickle_module=_OriginalPickleModule)
    params[group]["value"][key] = old
    start = time.perf_counter()
    try:
        load_checkpoint(f"{folder}/{name}.pth")
        outcome = "loaded"
    except CheckpointError as exc:
        outcome = "CheckpointError " + str(exc).replace(chr(10), " ")
    except BaseException as exc:
        outcome = f"{type(exc).__name__}"
    print(name, f"{time.perf_counter() - start:.2f}", outcome)
print("grew_mb", (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)
"""


def test_checkpoint_with_absurd_sizes_is_refused_before_anything_is_built(tmp_path) -> None:
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", _HUGE_CONFIGS, str(tmp_path)], capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in run.stdout.splitlines())
    for name in ("wide", "deep", "negative", "head"):
        seconds, outcome = lines[name].split(" ", 1)
        assert outcome.startswith("CheckpointError") and f"{name}.pth" in outcome, (name, outcome)
        assert float(seconds) < 10, (name, seconds)
    assert float(lines["grew_mb"]) < 300, lines["grew_mb"]  # a 20000-wide b0 alone needs gigabytes


# ------------------------------------------------------------------ 1: two instances on one folder
def _labels_in_sidecar(project: Project, image) -> list[str]:
    return [o["label"] for o in read_sidecar(project.sidecar_for(image)).meta["objects"]]


def test_two_instances_saving_one_image_keep_both_users_objects(tmp_path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _photo(src / "img0.png", 60, 80)
    first, second = Project.from_path(src), Project.from_path(src)
    doc_a, doc_b = first.open_index(0), second.open_index(0)
    _annotate(doc_a, 5, 20, 5, 20, "cat")
    assert first.save() and first.save_notices == []
    _annotate(doc_b, 30, 50, 40, 70, "dog")
    assert second.save()
    assert _labels_in_sidecar(first, src / "img0.png") == ["dog", "cat"]  # the first user's cat is kept
    assert [o.label for o in doc_b.objects] == ["dog", "cat"] and doc_b.dirty  # shown to the second user
    assert np.array_equal(doc_b.objects[1].mask, doc_a.objects[0].mask)
    assert len(second.save_notices) == 1 and "1 object(s)" in second.save_notices[0]
    doc_b.undo()  # the merge is one undo step
    assert [o.label for o in doc_b.objects] == ["dog"]
    doc_b.redo()
    _annotate(doc_a, 40, 55, 5, 20, "bird")
    assert first.save()  # the first user now gets the dog
    assert sorted(_labels_in_sidecar(first, src / "img0.png")) == ["bird", "cat", "dog"]
    assert sorted(o.label for o in doc_a.objects) == ["bird", "cat", "dog"]
    assert second.save()  # nothing new on either side: no duplicates
    assert sorted(_labels_in_sidecar(first, src / "img0.png")) == ["bird", "cat", "dog"]


def test_an_object_deleted_here_is_not_brought_back_by_the_merge(tmp_path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _photo(src / "img0.png", 60, 80)
    first = Project.from_path(src)
    _annotate(first.open_index(0), 5, 20, 5, 20, "cat")
    first.save()
    second = Project.from_path(src)
    doc_b = second.open_index(0)
    _annotate(first.doc, 30, 50, 40, 70, "dog")
    first.save()
    doc_b.delete_object(doc_b.objects[0].uid)
    second.save()
    assert _labels_in_sidecar(first, src / "img0.png") == ["dog"]


def test_this_instances_own_queued_writes_are_not_taken_for_another_instance(tmp_path) -> None:
    from isegformer_app.state.autosave import write_snapshot

    src = tmp_path / "src"
    src.mkdir()
    _photo(src / "img0.png", 60, 80)
    project = Project.from_path(src)
    doc = project.open_index(0)
    _annotate(doc, 5, 20, 5, 20, "cat")
    _annotate(doc, 30, 50, 40, 70, "dog")
    first = doc.snapshot()  # a write in flight ...
    doc.delete_object(doc.objects[0].uid)
    second = doc.snapshot()  # ... and the next one, taken before the first was on disk
    sidecar = project.sidecar_for(src / "img0.png")
    assert write_snapshot(first, sidecar).notice == ""
    outcome = write_snapshot(second, sidecar)
    assert outcome.notice == "" and outcome.merged == []
    assert _labels_in_sidecar(project, src / "img0.png") == ["dog"]  # the deleted cat stays deleted


def test_a_bad_object_of_the_other_version_leaves_this_save_whole(tmp_path) -> None:
    """Their first object is fine, their second unreadable: nothing of theirs is merged, and our own save
    stays consistent (as many mask rows as objects) and opens again."""
    from isegformer_app.state.autosave import FORMAT_VERSION
    from isegformer_app.state.sidecar_codec import encode_sidecar, read_sidecar_file

    src = tmp_path / "src"
    src.mkdir()
    _photo(src / "img0.png", 60, 80)
    first, second = Project.from_path(src), Project.from_path(src)
    doc_a, doc_b = first.open_index(0), second.open_index(0)
    _annotate(doc_a, 5, 20, 5, 20, "cat")
    _annotate(doc_a, 40, 55, 5, 20, "bird")
    assert first.save()
    sidecar = first.sidecar_for(src / "img0.png")
    meta, arrays = read_sidecar_file(sidecar, FORMAT_VERSION)
    meta["objects"][1]["clicks"] = [["not", "a click"]]
    sidecar.write_bytes(encode_sidecar(meta, arrays))
    _annotate(doc_b, 30, 50, 40, 70, "dog")
    assert second.save()
    assert "cannot be merged" in second.save_notices[0]
    assert [o.label for o in doc_b.objects] == ["dog"]
    saved = read_sidecar(sidecar)  # raises if objects and mask rows disagree
    assert [o["label"] for o in saved.meta["objects"]] == ["dog"] and len(saved.masks) == 1
    assert Project.from_path(src).open_index(0).objects[0].label == "dog"


def test_an_unmergeable_version_of_another_instance_is_kept_beside(tmp_path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _photo(src / "img0.png", 60, 80)
    first = Project.from_path(src)
    doc = first.open_index(0)
    sidecar = first.sidecar_for(src / "img0.png")
    sidecar.parent.mkdir(exist_ok=True)
    sidecar.write_bytes(b"written meanwhile by something else")
    _annotate(doc, 5, 20, 5, 20, "cat")
    assert first.save()
    kept = sidecar.parent / (sidecar.name + ".broken")
    assert kept.read_bytes() == b"written meanwhile by something else"
    assert "kept as" in first.save_notices[0]
    assert _labels_in_sidecar(first, src / "img0.png") == ["cat"]


def test_two_windows_on_one_folder_merge_objects_and_labels(qtbot, tmp_path, messages, monkeypatch) -> None:
    from _app_helpers import DiskPredictor, click, make_window, open_and_wait, predicted

    from isegformer_app.state.project_labels import project_labels_path
    from isegformer_app.ui import panels

    src = tmp_path / "src"
    src.mkdir()
    _photo(src / "img0.png", 120, 160)
    first = make_window(qtbot, tmp_path, DiskPredictor())
    second = make_window(qtbot, tmp_path, DiskPredictor())
    assert open_and_wait(first, src) and open_and_wait(second, src)
    for window, (y, x) in ((first, (30, 30)), (second, (80, 120))):
        click(qtbot, window, y, x)
        qtbot.waitUntil(predicted(window, 1), timeout=5000)
        window.finish_object()  # (Space goes to the active window: the second one)
        assert window.save_now()
        window.sidecar_writer.wait()  # written in the background
    assert len(second.doc.objects) == 2 and second.doc.objects[1].mask[30, 30]  # the first user's object
    assert "merged" in second.message_label.text()
    assert len(read_sidecar(first.project.sidecar_for(src / "img0.png")).meta["objects"]) == 2

    for window, name in ((first, "zebra"), (second, "yak")):
        monkeypatch.setattr(panels, "ask_text", lambda *a, name=name, **k: (name, True))
        window.labels_panel.add()
        window.sidecar_writer.wait()
    assert "zebra" in second.labels.names() and "zebra" in second.message_label.text()
    stored = json.loads(project_labels_path(src / ".isegformer").read_text())
    assert {"zebra", "yak"} <= {c["name"] for c in stored["labels"]}
    assert stored["selected"] == second.labels_panel.current().name != "zebra"  # the merge keeps it
    assert messages == []
    first.close()
    second.close()


def test_a_label_write_that_finishes_after_a_project_switch_stays_with_its_project(qtbot, tmp_path, messages):
    """A label write of folder A still queued when folder B opens: once it runs, its merge (another
    instance added "ghost" to A meanwhile) goes into A's file only; B's list and B's seen version stay."""
    from _app_helpers import DiskPredictor, make_window, open_and_wait

    from isegformer_app.state.project_labels import (
        ProjectLabels,
        project_labels_path,
        read_project_labels,
        write_project_labels,
    )

    folders = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        _photo(folder / "img0.png", 60, 80)
        folders.append(folder)
    window = make_window(qtbot, tmp_path, DiskPredictor())
    assert open_and_wait(window, folders[0])
    queued = []
    window.sidecar_writer.write = lambda write, target, source, saved, key=None: queued.append(
        (write, target, saved)
    )
    window._write_project_labels()  # A's write, held back
    a_file = project_labels_path(folders[0] / ".isegformer")
    other, seen = read_project_labels(a_file, LabelList.of_names(["object"]))
    other.labels.ensure("ghost", (9, 9, 9))
    write_project_labels(ProjectLabels(other.labels), a_file, seen)  # another instance, meanwhile
    assert open_and_wait(window, folders[1])
    b_names, b_seen = window.labels.names(), copy.copy(window.labels_seen)
    write, target, saved = queued[0]
    write(target())
    saved()
    assert window.labels.names() == b_names and "ghost" not in window.labels.names()
    b_file = window.mode.labels_file()
    assert window.labels_seen.get(b_file) == b_seen.get(b_file)
    assert "ghost" in {c["name"] for c in json.loads(a_file.read_text())["labels"]}
    assert "Another isegformer" not in window.message_label.text() and messages == []
    window.close()


def test_a_label_list_merged_with_another_instances_keeps_this_ones_selected_class(tmp_path) -> None:
    from isegformer_app.state.project_labels import ProjectLabels, read_project_labels, write_project_labels

    path = tmp_path / "labels.json"
    write_project_labels(ProjectLabels(LabelList.of_names(["a", "b"]), "b"), path)
    ours, seen = read_project_labels(path, LabelList())
    theirs, their_seen = read_project_labels(path, LabelList())
    theirs.labels.ensure("c", (1, 2, 3))
    write_project_labels(ProjectLabels(theirs.labels, "a"), path, their_seen)  # the other instance's save
    ours.labels.ensure("d", (4, 5, 6))
    seen, merged = write_project_labels(ours, path, seen)
    assert [c.name for c in merged] == ["c"] and ours.labels.names() == ["a", "b", "d", "c"]
    again, _ = read_project_labels(path, LabelList())
    assert again.labels.names() == ["a", "b", "d", "c"] and again.selected == "b"
    assert seen.names == {"a", "b", "c", "d"}


def test_objects_merged_from_another_instance_take_back_the_mark_no_objects(tmp_path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _photo(src / "img0.png", 60, 80)
    first, second = Project.from_path(src), Project.from_path(src)
    doc_a, doc_b = first.open_index(0), second.open_index(0)
    _annotate(doc_b, 30, 50, 40, 70, "dog")
    assert second.save()
    doc_a.mark_no_objects()
    assert first.save()  # gets the dog: the image has an object after all
    assert [o.label for o in doc_a.objects] == ["dog"] and not doc_a.no_objects
    meta = read_sidecar(first.sidecar_for(src / "img0.png")).meta
    assert [o["label"] for o in meta["objects"]] == ["dog"] and meta["no_objects"] is False
    doc_a.undo()  # the merge is one undo step, the mark comes back with it
    assert doc_a.objects == [] and doc_a.no_objects


def test_a_bad_default_label_set_for_volumes_falls_back_with_the_notice(tmp_path) -> None:
    from isegformer_app.settings import Settings

    good = LabelList.of_names(["liver"]).to_json()
    (tmp_path / "settings.json").write_text(json.dumps({"volume_labels": good, "labels": good}))
    assert Settings.load(tmp_path).volume_labels == good and Settings.load(tmp_path).problem == ""
    bad = [{"name": "x", "color": "red"}]
    (tmp_path / "settings.json").write_text(json.dumps({"volume_labels": bad, "labels": good}))
    settings = Settings.load(tmp_path)
    assert settings.volume_labels == [] and settings.labels == good
    assert "invalid volume_labels" in settings.problem


# ------------------------------------------------------------------ 9 (+1): volume autosaves
def _nifti(path, seed: int) -> None:
    import nibabel as nib

    data = np.random.default_rng(seed).integers(0, 1000, (12, 16, 20)).astype(np.int16)
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), path)


def _annotated_volume(path):
    from isegformer_app.state.volume_document import VolumeDocument
    from isegformer_app.volumes import open_volume

    doc = VolumeDocument(open_volume(path), path)
    doc.add_click(5, 5, True)
    return doc


def test_a_volume_replaced_by_other_data_on_the_same_grid_does_not_get_the_old_labels(tmp_path) -> None:
    from isegformer_app.state.sidecar_location import SidecarLocator
    from isegformer_app.state.volume_autosave import save_volume_document, volume_sidecar_path
    from isegformer_app.ui.volume_files import build_document
    from isegformer_app.volumes import open_volume

    path = tmp_path / "ct.nii.gz"
    _nifti(path, 1)
    doc = _annotated_volume(path)
    sidecar = volume_sidecar_path(path, doc.volume)
    save_volume_document(doc, sidecar)
    notes: list[str] = []
    same = build_document(open_volume(path), path, SidecarLocator(), notes, lambda f, m: None)
    assert notes == [] and len(same.clicks) == 1  # the same data: restored
    _nifti(path, 2)  # other voxels, same shape and affine
    restored = build_document(open_volume(path), path, SidecarLocator(), notes, lambda f, m: None)
    assert len(restored.clicks) == 0 and not restored.labels.data.any()
    assert len(notes) == 1 and "different data" in notes[0] and "kept as" in notes[0]


def test_two_instances_saving_one_volume_keep_both_versions(tmp_path) -> None:
    from isegformer_app.state.volume_autosave import (
        read_volume_sidecar,
        restore_volume_document,
        save_volume_document,
        volume_sidecar_path,
    )

    path = tmp_path / "ct.nii.gz"
    _nifti(path, 1)
    first, second = _annotated_volume(path), _annotated_volume(path)
    sidecar = volume_sidecar_path(path, first.volume)
    assert save_volume_document(first, sidecar) == ""
    second.add_click(9, 9, True)
    notice = save_volume_document(second, sidecar)
    kept = sidecar.with_name(sidecar.name + ".other-instance")
    assert "kept as" in notice and kept.is_file()
    assert len(read_volume_sidecar(kept)["meta"]["sessions"][0]["clicks"]) == 1  # the first user's
    assert len(read_volume_sidecar(sidecar)["meta"]["sessions"][0]["clicks"]) == 2
    assert save_volume_document(second, sidecar) == ""  # its own file: no conflict
    restore_volume_document(first.__class__(first.volume, path), read_volume_sidecar(sidecar))


# ------------------------------------------------------------------ 4: paths from files stay inside
def test_adding_to_an_earlier_export_never_copies_a_file_it_names_outside(tmp_path) -> None:
    from isegformer_app.state.export import ExportTargetError

    src, project = _annotated_folder(tmp_path, n=2)
    out = tmp_path / "out"
    project.export(out, LabelList())
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"private")
    meta = json.loads((out / "labels.json").read_text())
    for stem, entry in (("img0", {"file": str(secret)}), ("img0", {"file": "../../secret.png"})):
        meta["images"][stem].update(entry)
        (out / "labels.json").write_text(json.dumps(meta))
        with pytest.raises(ExportTargetError, match="outside"):
            project.export(out, LabelList(), all_images=False, overwrite=True)  # adds img1 to it
        assert not (out / "images" / "secret.png").exists()
    meta["images"]["../../x"] = meta["images"].pop("img0")
    meta["images"]["../../x"]["file"] = "img0.png"
    (out / "labels.json").write_text(json.dumps(meta))
    with pytest.raises(ExportTargetError, match="outside"):
        project.export(out, LabelList(), all_images=False, overwrite=True)


@pytest.mark.parametrize("listed", ["/etc/hostname", "../../outside"])
def test_a_split_list_naming_files_outside_the_dataset_is_refused(tmp_path, listed) -> None:
    from training.datasets.base import DatasetError
    from training.datasets.sbd import SBDDataset

    root = tmp_path / "sbd"
    (root / "img").mkdir(parents=True)
    (root / "inst").mkdir()
    (root / "val.txt").write_text(f"{listed}\n")
    with pytest.raises(DatasetError, match="outside"):
        SBDDataset(root)


# ------------------------------------------------------------------ 5: hostile project labels
@pytest.mark.parametrize("text", [
    '{"version": 1, "labels": [{"name": "a", "color": [1e400, 0, 0]}]}',
    '{"version": 1, "labels": [{"name": "a", "color": [Infinity, 0, 0]}]}',
    '{"version": 1, "labels": ' + "[" * 200_000 + "]" * 200_000 + "}",
])  # fmt: skip
def test_hostile_project_labels_are_one_message_and_the_image_shows(qtbot, tmp_path, messages, text) -> None:
    from _app_helpers import DiskPredictor, click, make_window, open_and_wait, predicted

    src = tmp_path / "src"
    (src / ".isegformer").mkdir(parents=True)
    _photo(src / "img0.png", 120, 160)
    (src / ".isegformer" / "labels.json").write_text(text)
    window = make_window(qtbot, tmp_path, DiskPredictor())
    assert open_and_wait(window, src)
    assert window.doc is not None and window.doc.path.name == "img0.png"
    assert window.labels.names()[0] == "object"  # the default set
    click(qtbot, window, 60, 80)
    qtbot.waitUntil(predicted(window, 1), timeout=5000)
    assert len(messages) == 1 and "label file labels.json is unreadable" in messages[0][1]
    window.close()


def test_an_infinite_colour_is_not_a_colour() -> None:
    from isegformer_app.state.labels import as_color

    for value in ([float("inf"), 0, 0], [float("nan"), 0, 0], [1, 2]):
        with pytest.raises(ValueError):
            as_color(value)


# ------------------------------------------------------------------ 6: bad settings values
def test_bad_settings_values_fall_back_to_defaults_with_one_notice(qtbot, tmp_path, messages) -> None:
    from _app_helpers import DiskPredictor, make_window

    from isegformer_app.settings import Settings

    config = tmp_path / "config"
    config.mkdir()
    (config / "settings.json").write_text(json.dumps({
        "opacity": "abc", "threshold": None, "brush_radius": 12, "labels": [{"name": "x", "color": "red"}],
        "shortcuts": {"undo": 5}, "recent_files": "not a list", "inference_threads": -3, "device": "cpu",
        "local_edits": "no",
    }))  # fmt: skip
    settings = Settings.load(config)
    assert (settings.opacity, settings.threshold, settings.brush_radius) == (0.5, Settings().threshold, 12)
    assert settings.labels == [] and settings.recent_files == [] and settings.inference_threads == 0
    assert settings.shortcuts["undo"] == "Ctrl+Z" and settings.local_edits is True
    bad = ("opacity", "threshold", "labels", "shortcuts", "recent_files", "inference_threads", "local_edits")
    for name in bad:
        assert name in settings.problem
    window = make_window(qtbot, tmp_path, DiskPredictor())  # the app starts
    assert "invalid opacity" in window.message_label.text() and messages == []
    assert window.view_panel.opacity.value() == 50
    window.close()


def test_a_huge_number_in_the_settings_falls_back_too(tmp_path) -> None:
    from isegformer_app.settings import Settings

    config = tmp_path / "config"
    config.mkdir()
    (config / "settings.json").write_text('{"opacity": 1' + "0" * 400 + ', "brush_radius": 12}')
    settings = Settings.load(config)  # no OverflowError
    assert settings.opacity == 0.5 and settings.brush_radius == 12 and "opacity" in settings.problem


# ------------------------------------------------------------------ 7: cleaning only what we wrote
def test_stale_temp_cleanup_never_goes_through_a_link_nor_touches_other_files(tmp_path) -> None:
    import os
    import time

    from isegformer_app.state.autosave import STALE_TEMP_SECONDS

    old = time.time() - STALE_TEMP_SECONDS - 5
    elsewhere = tmp_path / "someone_elses"
    elsewhere.mkdir()
    theirs = [elsewhere / ".cache.tmp", elsewhere / ".a.png.isegformer.npz.x1.tmp.npz"]
    src = tmp_path / "src"
    src.mkdir()
    _photo(src / "a.png", 20, 20)
    (src / ".isegformer").symlink_to(elsewhere)
    for path in theirs:
        path.write_bytes(b"keep")
        os.utime(path, (old, old))
    Project.from_path(src)
    assert all(path.exists() for path in theirs)

    (src / ".isegformer").unlink()
    (src / ".isegformer").mkdir()
    ours = src / ".isegformer" / ".a.png.isegformer.npz.k2.tmp.npz"
    other = src / ".isegformer" / ".notes.txt.k3.tmp"
    for path in (ours, other):
        path.write_bytes(b"x")
        os.utime(path, (old, old))
    Project.from_path(src)
    assert not ours.exists() and other.exists()


# ------------------------------------------------------------------ 8: decompression bombs, --output
def _png_bomb(path, side: int = 50_000) -> None:
    """A tiny PNG whose header declares side x side RGB pixels (what a decompression bomb looks like)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\0" * (1 + 3 * side) * 8)
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunks)


def _export_dataset(root, n: int = 2) -> None:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        _photo(root / "images" / f"s{i}.png", 48, 64, value=i)
        ids = np.zeros((48, 64), np.uint8)
        ids[10:30, 10:40] = 1
        Image.fromarray(ids).save(root / "masks" / f"s{i}.png")


def test_eval_refuses_a_decompression_bomb_with_one_message_before_decoding(tmp_path, capsys) -> None:
    import time

    from model.engines import ENGINE_NAMES
    from training.evaluate import main

    _export_dataset(tmp_path / "data")
    _png_bomb(tmp_path / "data" / "images" / "s1.png")
    assert (tmp_path / "data" / "images" / "s1.png").stat().st_size < 20_000
    start = time.perf_counter()
    code = main(["--engine", ENGINE_NAMES[0], "--datasets", f"Export={tmp_path / 'data'}", "--no-progress",
                 "--output", str(tmp_path / "out")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "s1.png" in err and "too large" in err and "Traceback" not in err
    assert time.perf_counter() - start < 10


def test_eval_checks_its_output_folder_before_evaluating(tmp_path, capsys, monkeypatch) -> None:
    from model.engines import ENGINE_NAMES
    from training import evaluate

    _export_dataset(tmp_path / "data")
    ran = []
    monkeypatch.setattr(evaluate, "run_evaluation", lambda *a, **k: ran.append(a))
    (tmp_path / "a_file").write_text("x")
    args = ["--engine", ENGINE_NAMES[0], "--datasets", f"Export={tmp_path / 'data'}", "--no-progress"]
    assert evaluate.main([*args, "--output", str(tmp_path / "a_file")]) == 2
    assert "is a file" in capsys.readouterr().err
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    try:
        import os

        if os.geteuid() != 0:  # root writes anywhere; the file case above holds for everyone
            assert evaluate.main([*args, "--output", str(tmp_path / "ro" / "out")]) == 2
            assert "cannot be written" in capsys.readouterr().err
    finally:
        (tmp_path / "ro").chmod(0o755)
    assert ran == []


def test_train_refuses_a_decompression_bomb_before_training(tmp_path, capsys) -> None:
    from training.datasets.base import oversized_images
    from training.train import main

    _export_dataset(tmp_path / "data", n=4)
    _png_bomb(tmp_path / "data" / "masks" / "s3.png", side=32_000)
    found = [p.split(":")[0] for p in oversized_images(tmp_path / "data")]
    assert found == [str(tmp_path / "data" / "masks" / "s3.png")]
    code = main(["segformer_b0", "--dataset", "app-export", "--data-root", str(tmp_path / "data"),
                 "--output", str(tmp_path / "run"), "--no-progress", "--device", "cpu"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "too large" in err and "s3.png" in err
    assert not list((tmp_path / "run").glob("*.pth"))


# ------------------------------------------------------------------ 10: DICOM tilt detection and extent
def _dicom_series(folder, affine, shape, rounded: bool):
    import pydicom

    from isegformer_app.benchmarks.dicom_write import SeriesOptions, write_dicom_series

    columns, rows, count = shape
    stored = np.zeros(shape, np.int16)
    for k in range(count):
        stored[..., k] = (np.arange(columns)[:, None] * 7 + np.arange(rows)[None, :] * 3 + 100 * k) % 3000
    paths = write_dicom_series(stored, affine, folder, SeriesOptions(modality="CT", seed=1))
    if rounded:  # positions written to 0.1 mm, as some scanners do
        for path in paths:
            ds = pydicom.dcmread(path)
            ds.ImagePositionPatient = [f"{float(v):.1f}" for v in ds.ImagePositionPatient]
            ds.save_as(path)
    return paths, stored


def _file_pixel_index(volume, path, row: float, column: float) -> np.ndarray:
    from test_volumes_dicom import dicom_world_lps, lps_to_ras_point

    return volume.world_to_index(lps_to_ras_point(dicom_world_lps(path, row, column)))


@pytest.mark.parametrize("count", [8, 10, 12])
def test_an_oblique_series_with_rounded_positions_is_not_taken_for_a_tilt(tmp_path, count) -> None:
    from isegformer_app.volumes import load_dicom

    angle = np.radians(17.0)
    rotation = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.7, 0.7, 3.0])
    affine[:3, 3] = (-11.3, 23.77, -41.2)
    _paths, stored = _dicom_series(tmp_path, affine, (24, 20, count), rounded=True)
    volume = load_dicom(tmp_path)
    assert not any("tilt" in w for w in volume.warnings), volume.warnings
    values = np.unique(volume.voxels)
    expected = np.unique(stored.astype(np.float32) + (volume.voxels.min() - stored.min()))
    assert np.array_equal(values, expected)  # no voxel was interpolated


def test_a_gantry_tilt_grid_holds_every_written_pixel(tmp_path) -> None:
    from isegformer_app.volumes import load_dicom

    tilt = np.radians(12.0)
    affine = np.diag([1.0, 1.0, 5.0, 1.0])
    affine[1, 2] = 5.0 * np.tan(tilt)  # each slice moves 1.06 mm along y
    columns, rows, count = 24, 40, 16
    paths, _ = _dicom_series(tmp_path, affine, (columns, rows, count), rounded=False)
    volume = load_dicom(tmp_path)
    assert any("gantry tilt of 12.00°" in w for w in volume.warnings)
    for path in paths:
        for row, column in ((0, 0), (rows - 1, 0), (0, columns - 1), (rows - 1, columns - 1)):
            index = _file_pixel_index(volume, path, row, column)
            assert np.all(index > -0.51) and np.all(index < np.array(volume.shape) - 0.49), (path.name, index)


# ------------------------------------------------------------------ 11: low
def test_an_export_killed_between_the_two_renames_of_its_swap_is_recovered(tmp_path) -> None:
    from isegformer_app.state.export import export_target_kind

    src, project = _annotated_folder(tmp_path, n=2)
    out = tmp_path / "out"
    project.export(out, LabelList())
    before = json.loads((out / "labels.json").read_text())
    # the state a kill -9 leaves between os.rename(out, old) and os.rename(staging, out)
    staging = tmp_path / ".out.isegformer-export-k9"
    out.rename(staging.with_name(staging.name + ".old"))
    Project.from_path(src).export(tmp_path / "fresh", LabelList())
    (tmp_path / "fresh").rename(staging)
    assert export_target_kind(out) == "export"  # the finished new export is put in place
    assert json.loads((out / "labels.json").read_text())["images"].keys() == before["images"].keys()
    assert not list(tmp_path.glob(".out.isegformer-export-*"))

    out.rename(tmp_path / ".out.isegformer-export-k8.old")  # killed while the new one was incomplete
    (tmp_path / ".out.isegformer-export-k8").mkdir()
    summary = project.export(out, LabelList(), overwrite=True)  # the next export recovers, then replaces
    assert summary.exported == 2 and (out / "labels.json").is_file()


def test_an_unwritable_parent_is_named_not_a_hidden_staging_folder(tmp_path, monkeypatch) -> None:
    import errno
    import tempfile

    from isegformer_app.state.export import ExportTargetError

    _src, project = _annotated_folder(tmp_path, n=1)
    out = tmp_path / "out"
    project.export(out, LabelList())

    def refuse(prefix: str = "", dir: str = "", **_kw) -> str:
        raise PermissionError(errno.EACCES, "Permission denied", f"{dir}/{prefix}x1y2")

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    with pytest.raises(ExportTargetError) as caught:
        project.export(out, LabelList(), overwrite=True)
    assert str(tmp_path) in str(caught.value) and ".isegformer-export-" not in str(caught.value)


def test_a_label_name_with_a_line_break_keeps_the_itksnap_table_one_row_per_label(tmp_path) -> None:
    from isegformer_app.volumes import LabelInfo, read_itksnap_labels
    from isegformer_app.volumes.label_tables import write_itksnap_labels

    table = {1: LabelInfo(1, "left\nlung", (200, 10, 10)), 2: LabelInfo(2, "heart\u2028x\tz", (10, 200, 10))}
    path = write_itksnap_labels(table, tmp_path / "labels.txt")
    read = read_itksnap_labels(path)
    assert sorted(read) == [0, 1, 2]
    assert read[1].name == "left lung" and read[2].name == "heart x z" and read[2].color == (10, 200, 10)


def test_eval_warns_before_a_mask_with_thousands_of_instance_ids(tmp_path, capsys, monkeypatch) -> None:
    from model.engines import ENGINE_NAMES
    from training import evaluate

    root = tmp_path / "data"
    _export_dataset(root, n=1)
    ids = (np.arange(48 * 64).reshape(48, 64) % 2000 + 1).astype(np.uint16)  # 2000 "objects"
    Image.fromarray(ids).save(root / "masks" / "s0.png")
    monkeypatch.setattr(evaluate, "run_evaluation", lambda *a, **k: None)
    assert evaluate.main(["--engine", ENGINE_NAMES[0], "--datasets", f"Export={root}", "--no-progress",
                          "--output", str(tmp_path / "out")]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "s0 (2000 objects)" in err and "may take hours" in err


def test_a_coco_lvis_mask_layer_declaring_a_huge_size_is_refused_before_decoding(tmp_path) -> None:
    import pickle

    from _training_data import write_cocolvis

    from training.data.cocolvis import CocoLvisSource
    from training.datasets.base import DatasetError

    image = np.full((48, 64, 3), 90, np.uint8)
    inst = np.zeros((48, 64), np.int32)
    inst[10:30, 10:40] = 1
    write_cocolvis(tmp_path, [(image, inst)], "train")
    masks = next((tmp_path / "train" / "masks").glob("*.pickle"))
    encoded, mapping = pickle.loads(masks.read_bytes())
    _png_bomb(tmp_path / "bomb.png", side=40_000)
    encoded[1] = np.frombuffer((tmp_path / "bomb.png").read_bytes(), np.uint8)
    masks.write_bytes(pickle.dumps((encoded, mapping)))
    with pytest.raises(DatasetError, match="too large"):
        CocoLvisSource(tmp_path, "train").load(0, np.random.default_rng(0))


def test_a_changed_file_is_merged_before_anything_is_encoded(tmp_path) -> None:
    from isegformer_app.state.disk_version import stamp_of, write_merging

    path = tmp_path / "file.bin"
    path.write_bytes(b"first")
    seen = stamp_of(path)
    path.write_bytes(b"another program's version")
    encodings, merges = [], []
    write_merging(path, seen, lambda: encodings.append(1) or b"ours", lambda: merges.append(1))
    assert path.read_bytes() == b"ours" and merges == [1]
    assert encodings == [1]  # encoded once, after the merge (not once before it, thrown away)
