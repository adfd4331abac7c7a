"""Training data: COCO+LVIS layout reader, augmentation, dataset items, training-time click simulation,
optimizer groups and the shipped configurations."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from _training_data import voc_views, write_cocolvis
from scipy import ndimage

from model.build import list_models
from training.config import ConfigError, config_from_dict, load_config
from training.data import Augmentation, CocoLvisSource, InteractiveDataset, ObjectInfo, TrainSample
from training.data.points_sampler import MultiPointSampler
from training.datasets.base import DatasetError
from training.trainer import build_optimizer, next_click_points

CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cocolvis(tmp_path_factory.mktemp("cocolvis"), voc_views((96, 128)))


def test_cocolvis_reader_objects_and_stuff(root: Path) -> None:
    views = voc_views((96, 128))
    no_stuff = CocoLvisSource(root, "train", stuff_prob=0.0)
    assert len(no_stuff) == 4
    sample = no_stuff.load(0, np.random.default_rng(0))
    ids = [v for v in np.unique(views[0][1]) if v > 0]
    assert len(sample) == len(ids) and sample.layers.shape == (96, 128, 2)
    assert not sample.layers[:, :, 1].any()  # stuff erased
    assert np.abs(sample.image.astype(int) - views[0][0]).mean() < 3  # RGB order, JPEG quality 98
    assert np.array_equal(sample.object_mask(0) == 1, views[0][1] == ids[0])
    with_stuff = CocoLvisSource(root, "train", stuff_prob=1.0).load(0, np.random.default_rng(0))
    assert len(with_stuff) == len(ids) + 1
    assert with_stuff.object_mask(len(ids))[:8].all()


def test_cocolvis_pickles_cannot_run_code(tmp_path: Path, root: Path) -> None:
    split = tmp_path / "train"
    split.mkdir()

    class Evil:
        def __reduce__(self):
            return (os.getcwd, ())

    (split / "hannotation.pickle").write_bytes(pickle.dumps({"a": Evil()}))
    with pytest.raises(DatasetError, match="not allowed"):
        CocoLvisSource(tmp_path, "train")
    with pytest.raises(DatasetError, match="split folder not found"):
        CocoLvisSource(root, "val")


def test_hierarchy_roots_and_small_object_removal() -> None:
    layers = np.zeros((20, 20, 1), np.int32)
    layers[2:18, 2:18, 0] = 1
    layers[5:8, 5:8, 0] = 2
    objects = {0: ObjectInfo(0, 1, None, [1]), 1: ObjectInfo(0, 2, 0, [])}
    sample = TrainSample(np.zeros((20, 20, 3), np.uint8), layers, objects)
    assert sample.root_objects == [0]
    sample.compute_areas()
    assert (sample.objects[0].area, sample.objects[1].area) == (256 - 9, 9)
    sample.remove_small_objects(10)
    assert list(sample.objects) == [0] and sample.objects[0].children == []


def test_geometric_augmentation_keeps_image_and_masks_aligned() -> None:
    image, instances = voc_views((96, 128))[0]
    palette = np.random.default_rng(0).integers(30, 255, size=(instances.max() + 1, 3)).astype(np.uint8)
    palette[0] = 0
    colored = palette[instances]
    rng = np.random.default_rng(1)
    exact = Augmentation((112, 100), scale_range=None, brightness_contrast_prob=0, rgb_shift_prob=0)
    for _ in range(5):
        out_image, out_layers = exact(colored, instances[:, :, None], rng)
        assert out_image.shape == (112, 100, 3) and out_layers.shape == (112, 100, 1)
        assert np.array_equal(out_image, palette[out_layers[:, :, 0]])
    scaled = Augmentation((64, 64), brightness_contrast_prob=0, rgb_shift_prob=0)
    scales = []
    for _ in range(20):
        out_image, out_layers = scaled(colored, instances[:, :, None], rng)
        labels = out_layers[:, :, 0]
        interior = ndimage.minimum_filter(labels, 5) == ndimage.maximum_filter(labels, 5)
        diff = np.abs(out_image.astype(int) - palette[labels]).max(axis=2)
        assert (diff[interior] <= 2).mean() > 0.99  # bilinear image, nearest masks: same geometry
        scales.append((out_layers > 0).mean())
    assert np.std(scales) > 0  # the crops differ


def test_photometric_augmentation_formulas() -> None:
    image = np.full((4, 4, 3), 100, np.uint8)
    aug = Augmentation(
        (4, 4),
        scale_range=None,
        flip_prob=0,
        brightness_limit=(0.1, 0.1),
        contrast_limit=(0.2, 0.2),
        brightness_contrast_prob=1.0,
        rgb_shift_prob=0.0,
    )
    out, _ = aug(image, np.zeros((4, 4, 1), np.int32), np.random.default_rng(0))
    assert (out == int(100 * 1.2 + 0.1 * 255)).all()  # 145.5 truncated
    shift = Augmentation(
        (4, 4),
        scale_range=None,
        flip_prob=0,
        brightness_contrast_prob=0.0,
        rgb_shift_limit=10,
        rgb_shift_prob=1.0,
    )
    out, _ = shift(image, np.zeros((4, 4, 1), np.int32), np.random.default_rng(0))
    per_channel = out[0, 0].astype(int) - 100
    assert (np.abs(per_channel) <= 10).all() and len(set(per_channel.tolist())) > 1
    assert (out == out[0, 0]).all()


def test_dataset_items_are_reproducible_and_well_formed(root: Path) -> None:
    dataset = InteractiveDataset(
        CocoLvisSource(root, "train", 0.3),
        Augmentation((64, 80)),
        MultiPointSampler(24, prob_gamma=0.8, merge_objects_prob=0.15),
        min_object_area=100,
        keep_background_prob=0.05,
        epoch_len=10,
        seed=3,
    )
    assert len(dataset) == 10
    first = dataset[4]
    assert first["images"].shape == (3, 64, 80) and first["images"].dtype == torch.float32
    assert 0.0 <= first["images"].min() and first["images"].max() <= 1.0
    assert first["points"].shape == (48, 3) and first["instances"].shape == (1, 64, 80)
    assert set(first["instances"].unique().tolist()) <= {0.0, 1.0}
    again = dataset[4]
    assert all(torch.equal(first[k], again[k]) for k in first)
    dataset.set_epoch(1)
    assert not torch.equal(dataset[4]["images"], first["images"])
    # positives lie on the target
    pos = first["points"][:24]
    pos = pos[pos[:, 0] >= 0].long()
    assert (first["instances"][0, pos[:, 0], pos[:, 1]] == 1).all()


def test_next_click_points_targets_the_largest_error() -> None:
    gt = torch.zeros(2, 1, 40, 40)
    gt[:, :, 10:30, 10:30] = 1
    probs = torch.zeros(2, 1, 40, 40)
    probs[1, :, 10:30, 10:30] = 1
    probs[1, :, 0:40, 32:40] = 1  # a false-positive band wider than any false negative
    points = torch.full((2, 4, 3), -1.0)
    points[:, 0] = torch.tensor([15.0, 15.0, 100.0])
    out = next_click_points(probs, gt, points, click_index=1, rng=np.random.default_rng(0))
    assert torch.equal(out[:, 0], points[:, 0]) and torch.equal(points[0, 1], torch.full((3,), -1.0))
    y, x, index = out[0, 1].tolist()  # positive row N - 1 for sample 0 (all missed)
    assert index == 1 and 14 <= y <= 25 and 14 <= x <= 25  # dt > max/2: the centre of the square
    y, x, index = out[1, 3].tolist()  # negative row 2N - 1 for sample 1
    assert index == 1 and 33 <= x <= 38
    assert torch.equal(out[1, 1], torch.full((3,), -1.0))


def test_training_click_rule_is_random_among_deep_error_pixels_and_none_without_error() -> None:
    from model.evaluation.clicker import training_click

    target = np.zeros((30, 30), bool)
    target[5:25, 5:25] = True
    picks = {(c.y, c.x) for c in (training_click(np.zeros_like(target), target, np.random.default_rng(s))
                                  for s in range(20))}  # fmt: skip
    assert len(picks) > 5  # varied, unlike the NoC rule's single deepest pixel
    assert all(10 <= y <= 19 and 10 <= x <= 19 for y, x in picks)  # distance > half of the maximum (10)
    assert training_click(target, target, np.random.default_rng(0)) is None


def test_backbone_learning_rate_groups() -> None:
    """The optimiser's groups come from the model: each family names its pretrained part."""
    from model.build import build_model

    def rates(model, mult=0.1) -> dict[str, float]:
        ids = {id(p): n for n, p in model.named_parameters()}
        return {ids[id(p)]: g.lr_mult for g in model.parameter_groups(mult) for p in g.params}

    cfg = config_from_dict({})
    segformer = build_model("segformer_b0", with_prev_mask=True)
    mults = rates(segformer)
    assert len(mults) == sum(1 for _ in segformer.parameters())  # every parameter in exactly one group
    assert mults["network.encoder.stages.0.blocks.0.norm1.weight"] == 0.1
    assert mults["network.head.lateral.0.conv.weight"] == 1.0
    optimiser_rates = sorted(g["lr"] for g in build_optimizer(segformer, cfg).param_groups)
    assert optimiser_rates == pytest.approx([5e-5, 5e-4])
    segformer.network.backbone_lr_mult = 0.3  # no factor given: the network's own
    assert {g.name: g.lr_mult for g in segformer.parameter_groups()} == {"backbone": 0.3, "other": 1.0}

    hrnet = build_model("hrnet18s_ocr48")
    mults = rates(hrnet)
    low = ("network.backbone.", "network.head.aux_head.")
    full = ("maps_transform.", "network.head.attention.")
    assert all(m == 0.1 for n, m in mults.items() if n.startswith(low))
    assert all(m == 1.0 for n, m in mults.items() if n.startswith(full))
    assert any(n.startswith("network.head.classifier.") and m == 0.1 for n, m in mults.items())

    hrformer = build_model("hrformer_base")  # the original trains the whole network at the low rate
    assert set(rates(hrformer).values()) == {0.1}

    frozen = build_model("segformer_b0", with_prev_mask=True)  # frozen parameters are in no group
    frozen.network.encoder.requires_grad_(False)
    assert [g.name for g in frozen.parameter_groups(0.1)] == ["other"]


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_configs_load_and_name_known_models(path: Path) -> None:
    config = load_config(path)
    assert config.model.name in list_models()
    assert config.points.max_num_points == 24
    if config.data.dataset == "composite":  # the CPU-scale recipe of the bundled default network
        assert config.data.crop_size == (256, 256) and config.model.pretrained
        return
    if config.finetune.enabled:  # fine-tuning on the user's annotations: ZoomIn-scale windows, a time budget
        assert config.data.dataset == "app-export" and config.data.crop_size == (256, 256)
        assert config.finetune.max_minutes == 5.0 and not config.finetune.unfreeze_all
        return
    assert config.data.crop_size == (320, 480)
    assert config.optim.lr in (5e-4, 5e-5) and config.train.max_num_next_clicks == 3
    if config.model.name.startswith("segformer"):
        assert (config.train.epochs, config.optim.milestones) == (50, (45,))


def test_config_errors_are_clear() -> None:
    with pytest.raises(ConfigError, match="unknown sections"):
        config_from_dict({"trainer": {}})
    with pytest.raises(ConfigError, match="lr must be a number"):
        config_from_dict({"optim": {"lr": "fast"}})


def test_sbd_buggy_masks_are_dropped() -> None:
    from training.data.instances import remove_buggy_masks

    instances = np.zeros((50, 50), np.int32)
    instances[5:20, 5:20] = 1  # fills its box
    instances[np.arange(25, 50), np.arange(25, 50)] = 2  # a diagonal line: 25 px in a 625 px box (0.04)
    cleaned = remove_buggy_masks(instances, 0.08)
    assert (cleaned == 1).sum() == 225 and not (cleaned == 2).any()
    assert (instances == 2).sum() == 25  # input untouched
