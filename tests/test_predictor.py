"""The network Predictor and its transforms against the original predictor's outputs."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from model.clicks import Click, clicks_from_array
from model.prediction import ClickPredictor, Prediction, PredictionState
from model.predictor import Predictor
from model.transforms import AddHorizontalFlip, LimitLongestSide, PadToMinSize, ZoomIn


class ToyNet(nn.Module):
    """The deterministic stand-in network of the reference README (float32), vectorised over points:

    ``logit = -4 + 6 * prev + 2 * (R - B)``, plus ``8 * exp(-d2 / (2 * (0.08 * s)^2))`` for each valid
    positive point and minus ``8 * exp(-d2 / (2 * (0.05 * s)^2))`` for each valid negative point,
    ``d2`` = squared pixel distance in the network input, ``s = max(h, w)``.
    """

    with_prev_mask = True

    def forward(self, image: torch.Tensor, points: torch.Tensor) -> dict[str, torch.Tensor]:
        _, _, h, w = image.shape
        s = max(h, w)
        logits = -4 + 6 * image[:, 3] + 2 * (image[:, 0] - image[:, 2])  # (B, h, w)
        n = points.shape[1] // 2
        y, x = points[:, :, 0, None, None], points[:, :, 1, None, None]  # (B, 2N, 1, 1)
        rows = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1)
        cols = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w)
        d2 = (rows - y) ** 2 + (cols - x) ** 2  # (B, 2N, h, w)
        sigma = torch.tensor([0.08 * s] * n + [0.05 * s] * n).view(1, 2 * n, 1, 1)
        sign = torch.tensor([8.0] * n + [-8.0] * n).view(1, 2 * n, 1, 1)
        valid = (points[:, :, :2].amax(dim=2) >= 0).float().view(*points.shape[:2], 1, 1)
        bumps = valid * sign * torch.exp(-d2 / (2 * sigma**2))
        return {"instances": (logits + bumps.sum(dim=1)).unsqueeze(1)}


def toy_background_probs(image: np.ndarray, prev: float = 0.0) -> np.ndarray:
    """What the ToyNet predicts on the full image with no clicks (the flip average changes nothing)."""
    rgb = image.astype(np.float32) / 255
    return 1 / (1 + np.exp(-(-4 + 6 * prev + 2 * (rgb[..., 0] - rgb[..., 2]))))


@pytest.fixture(scope="module")
def toy_reference(reference_dir: Path) -> dict[str, np.ndarray]:
    return dict(np.load(reference_dir / "predictor_toynet_zoomin_flip.npz"))


@pytest.fixture(scope="module")
def six_channel_reference(reference_dir: Path) -> dict[str, np.ndarray]:
    return dict(np.load(reference_dir / "predictor_6ch_zoomin_flip.npz"))


@pytest.fixture(scope="module")
def six_channel_model(reference_dir: Path) -> nn.Module:
    from model.checkpoint import load_checkpoint

    return load_checkpoint(reference_dir / "isegformer_tiny_6ch_prevmask.pth", device="cpu")


def toy_predictor(**kwargs) -> Predictor:
    return Predictor(ToyNet(), device="cpu", **kwargs)


def run_predictions(predictor: Predictor, clicks: list[Click]) -> list[Prediction]:
    """Predict ``clicks[:1]``, ``clicks[:2]``, ... each from the previous call's state (a user clicking)."""
    out: list[Prediction] = []
    for k in range(len(clicks)):
        out.append(predictor.predict(clicks[: k + 1], out[-1].state if out else None))
    return out


def run_clicks(predictor: Predictor, clicks: list[Click]) -> list[np.ndarray]:
    return [prediction.prob for prediction in run_predictions(predictor, clicks)]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


# --- the original's outputs ------------------------------------------------------------------------


def test_toynet_reproduces_reference_boxes_and_maps(toy_reference: dict[str, np.ndarray]) -> None:
    predictor = toy_predictor()
    assert isinstance(predictor, ClickPredictor)
    predictor.set_image(toy_reference["image"])
    clicks = clicks_from_array(toy_reference["clicks"])
    for k, prediction in enumerate(run_predictions(predictor, clicks)):
        probs, roi = prediction.prob, prediction.state.zoom_box
        assert prediction.state.prob is probs  # the state holds the map itself, not a copy
        assert (roi or (-1, -1, -1, -1)) == tuple(toy_reference["rois"][k]), f"click {k + 1}"
        assert probs.dtype == np.float32 and probs.shape == toy_reference["image"].shape[:2]
        err = np.abs(probs - toy_reference["probs"][k]).max()
        assert err <= 1e-3, f"click {k + 1}: max abs error {err}"


def test_six_channel_segformer_reproduces_reference(
    six_channel_model: nn.Module, six_channel_reference: dict[str, np.ndarray]
) -> None:
    predictor = Predictor(six_channel_model, device="cpu")
    assert predictor.with_prev_mask
    predictor.set_image(six_channel_reference["image"])
    clicks = clicks_from_array(six_channel_reference["clicks"])
    for k, probs in enumerate(run_clicks(predictor, clicks)):
        close = np.abs(probs - six_channel_reference["probs"][k]) <= 1e-3
        assert close.mean() >= 0.999, f"click {k + 1}: only {close.mean():.5f} of pixels within 1e-3"


# --- behaviour ---------------------------------------------------------------------------------------


def test_undo_then_redo_reproduces_identical_maps(toy_reference: dict[str, np.ndarray]) -> None:
    """The caller holds the state: predicting a click list from a kept state (after an undo, or after
    other objects were predicted meanwhile) gives exactly the map of the first time."""
    predictor = toy_predictor()
    predictor.set_image(toy_reference["image"])
    clicks = clicks_from_array(toy_reference["clicks"])
    predictions = run_predictions(predictor, clicks)
    states: list[PredictionState | None] = [None] + [p.state for p in predictions]
    assert states[2].zoom_box is not None and states[5].zoom_box != states[4].zoom_box  # zoomed, box moved

    # another object in between: the predictor has nothing of the first object left to lose
    run_predictions(predictor, [Click(10, 10, True, 0), Click(300, 400, True, 1), Click(20, 30, False, 2)])
    # undo back to after click 3 (box set at click 2), then redo clicks 4.. (box changes at click 5)
    state = states[3]
    for k in range(3, len(clicks)):
        redone = predictor.predict(clicks[: k + 1], state)
        assert np.array_equal(redone.prob, predictions[k].prob), f"redo of click {k + 1}"
        assert redone.state.zoom_box == predictions[k].state.zoom_box
        state = redone.state
    # undo everything: the state before the first click
    assert np.array_equal(predictor.predict(clicks[:1], states[0]).prob, predictions[0].prob)
    # a wrong click after an undo, then undo it and go on as before
    wrong = predictor.predict([*clicks[:2], Click(10, 10, True, 2)], states[2])
    assert not np.allclose(wrong.prob, predictions[2].prob)
    assert np.array_equal(predictor.predict(clicks[:3], states[2]).prob, predictions[2].prob)
    # states given out are never changed by later calls
    assert all(np.array_equal(s.prob, p.prob) for s, p in zip(states[1:], predictions, strict=True))


def test_new_object_and_new_image_start_over(toy_reference: dict[str, np.ndarray]) -> None:
    predictor = toy_predictor()
    image = toy_reference["image"]
    predictor.set_image(image)
    clicks = clicks_from_array(toy_reference["clicks"])
    first = run_predictions(predictor, clicks[:3])
    again = predictor.predict(clicks[:1])  # no state: a new object
    assert np.array_equal(again.prob, first[0].prob) and again.state.zoom_box is None
    predictor.set_image(image[:, ::-1])
    predictor.set_image(image)
    assert np.array_equal(predictor.predict(clicks[:1]).prob, first[0].prob)

    predictor.set_image(image[:100])  # a state of another image is refused
    with pytest.raises(ValueError, match="shape"):
        predictor.predict(clicks[:1], first[2].state)


def test_zero_clicks_run_the_network_on_padding_points(toy_reference: dict[str, np.ndarray]) -> None:
    image = toy_reference["image"]
    predictor = toy_predictor()
    predictor.set_image(image)
    first = predictor.predict([])
    np.testing.assert_allclose(first.prob, toy_background_probs(image), atol=1e-6)
    # the state is fed back: a second call sees prev = the first map
    rgb = image.astype(np.float32) / 255
    again = 1 / (1 + np.exp(-(-4 + 6 * first.prob + 2 * (rgb[..., 0] - rgb[..., 2]))))
    np.testing.assert_allclose(predictor.predict([], first.state).prob, again, atol=1e-5)
    # ... and only the state: without it, the first map again
    np.testing.assert_array_equal(predictor.predict([]).prob, first.prob)


def test_a_mask_drawn_otherwise_is_the_previous_mask(toy_reference: dict[str, np.ndarray]) -> None:
    image = toy_reference["image"]
    predictor = toy_predictor()
    predictor.set_image(image)
    ones = np.ones(image.shape[:2], dtype=bool)
    given = predictor.predict([], PredictionState.from_mask(ones))
    np.testing.assert_allclose(given.prob, toy_background_probs(image, 1.0), atol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        predictor.predict([], PredictionState.from_mask(ones[:10]))


def test_clicks_outside_the_image_are_ignored(toy_reference: dict[str, np.ndarray]) -> None:
    image = toy_reference["image"]
    h, w = image.shape[:2]
    inside = [Click(190, 160, True, 0), Click(150, 250, True, 1)]
    outside = [
        Click(-3, 40, True, 2),
        Click(h, 20, True, 3),
        Click(30, w + 0.5, False, 4),
        Click(5, -0.5, False, 5),
    ]

    reference = toy_predictor()
    reference.set_image(image)
    expected = run_clicks(reference, inside)

    predictor = toy_predictor()
    predictor.set_image(image)
    first = predictor.predict([inside[0], *outside])
    second = predictor.predict([inside[0], *outside, inside[1]], first.state)
    assert np.array_equal(first.prob, expected[0]) and np.array_equal(second.prob, expected[1])
    assert second.state.zoom_box == run_predictions(reference, inside)[1].state.zoom_box

    only_outside = toy_predictor()
    only_outside.set_image(image)
    np.testing.assert_allclose(only_outside.predict(outside).prob, toy_background_probs(image), atol=1e-6)


def test_only_negative_clicks(toy_reference: dict[str, np.ndarray]) -> None:
    image = toy_reference["image"]
    predictor = toy_predictor()
    predictor.set_image(image)
    clicks = [Click(100, 100, False, 0), Click(200, 300, False, 1), Click(300, 50, False, 2)]
    background = toy_background_probs(image)
    for prediction, click in zip(run_predictions(predictor, clicks), clicks, strict=True):
        probs = prediction.prob
        assert np.isfinite(probs).all()
        assert probs[int(click.y), int(click.x)] < 0.5 * background[int(click.y), int(click.x)]
        assert prediction.state.zoom_box is None  # nothing above 0.5: no box to zoom into


def test_zoom_in_with_skip_zero_recomputes_a_small_first_object(toy_reference: dict[str, np.ndarray]) -> None:
    image = toy_reference["image"]
    predictor = toy_predictor(zoom_in=ZoomIn(skip_clicks=0))
    predictor.set_image(image)
    prediction = predictor.predict([Click(190, 160, True, 0)])
    probs = prediction.prob
    # first pass unzoomed; its object (~95 px, box IoU with the image < 0.5) -> a zoomed second pass
    roi = prediction.state.zoom_box
    assert roi is not None and roi[1] - roi[0] < 300
    rmin, rmax, cmin, cmax = roi
    outside = np.ones(probs.shape, dtype=bool)
    outside[rmin : rmax + 1, cmin : cmax + 1] = False
    assert (probs[outside] == 0).all() and probs[190, 160] > 0.9


class PrevMaskSpy(ToyNet):
    """A ToyNet that records the previous-mask channel of every forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.prev_masks: list[torch.Tensor] = []

    def forward(self, image: torch.Tensor, points: torch.Tensor) -> dict[str, torch.Tensor]:
        self.prev_masks.append(image[:, 3].clone())
        return super().forward(image, points)


def test_the_zoomed_recompute_can_start_from_the_first_pass(toy_reference: dict[str, np.ndarray]) -> None:
    """With ``recompute_with_first_pass`` the zoomed second pass of a small first object sees the
    unzoomed pass's probabilities (cropped) as its previous mask; without it, zeros as the original."""
    image = toy_reference["image"]
    click = Click(190, 160, True, 0)
    passes = {}
    for refine in (False, True):
        spy = PrevMaskSpy()
        zoom = ZoomIn(skip_clicks=0, recompute_with_first_pass=refine)
        predictor = Predictor(spy, device="cpu", zoom_in=zoom)
        predictor.set_image(image)
        prediction = predictor.predict([click])
        passes[refine] = (spy.prev_masks, prediction)
    plain, refined = passes[False][0], passes[True][0]
    assert len(plain) == len(refined) == 2  # each: unzoomed, then zoomed (flip: a batch of 2)
    assert float(plain[0].abs().max()) == 0 and float(refined[0].abs().max()) == 0
    assert float(plain[1].abs().max()) == 0
    first_pass = passes[False][1]  # the plain predictor's zoomed pass does not depend on the first's map
    box = passes[True][1].state.zoom_box
    assert box == first_pass.state.zoom_box
    seen = refined[1][0]  # the crop of the unzoomed probabilities, resized to the ZoomIn target
    assert seen.shape[-1] == 400 or seen.shape[-2] == 400
    assert float(seen.max()) > 0.9 and float(seen.min()) < 0.1  # the object and its surroundings
    # the ToyNet adds 6 x prev to its logits: the refined pass is at least as sure inside the object
    assert passes[True][1].prob[190, 160] >= first_pass.prob[190, 160]


def test_recompute_small_only_leaves_objects_larger_than_the_minimum_crop() -> None:
    """RITM's rule recomputes any object whose box covers under half the image; with
    ``recompute_small_only`` only those whose 1.4x box fits the 200-px minimum crop (a 2x zoom)."""
    probs = torch.zeros(1, 1, 600, 600)
    small, large = probs.clone(), probs.clone()
    small[..., 100:240, 100:240] = 1.0  # 140 px: 196 px expanded
    large[..., 100:280, 100:280] = 1.0  # 180 px: 252 px expanded, box IoU with the image 0.18
    original, small_only = ZoomIn(skip_clicks=0), ZoomIn(skip_clicks=0, recompute_small_only=True)
    assert original.needs_recompute(small, None) and original.needs_recompute(large, None)
    assert small_only.needs_recompute(small, None) and not small_only.needs_recompute(large, None)
    assert not small_only.needs_recompute(probs, None)  # nothing found: nothing to zoom on
    assert not small_only.needs_recompute(small, (0, 10, 0, 10))  # a box in use already


def test_interactive_zoom_in_refines_the_first_click_of_our_networks_only() -> None:
    from model.predictor import interactive_zoom_in

    ours = ToyNet()
    ours.metadata = {"samples_seen": 1}
    for network, refined in ((ours, True), (ToyNet(), False)):
        zoom = interactive_zoom_in(network, 600)
        assert zoom.target_size == 600
        settings = (zoom.skip_clicks, zoom.recompute_with_first_pass, zoom.recompute_small_only)
        assert settings == ((0, True, True) if refined else (1, False, False))
    without_prev = ToyNet()
    without_prev.metadata, without_prev.with_prev_mask = {"samples_seen": 1}, False
    assert interactive_zoom_in(without_prev).skip_clicks == 1  # nothing to give the zoomed pass
    assert interactive_zoom_in(ToyNet(), ours=True).recompute_with_first_pass  # a network in training


def test_without_zoom_or_flip_matches_the_plain_network(toy_reference: dict[str, np.ndarray]) -> None:
    image = toy_reference["image"]
    predictor = toy_predictor(zoom_in=None, with_flip=False)
    predictor.set_image(image)
    click = Click(190, 160, True, 0)
    x = torch.cat(
        (torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255, torch.zeros(1, 1, *image.shape[:2])), 1
    )
    logits = ToyNet()(x, torch.tensor([[[190.0, 160.0, 0.0], [-1, -1, -1]]]))["instances"]
    expected = torch.sigmoid(logits)[0, 0].numpy()
    np.testing.assert_allclose(predictor.predict([click]).prob, expected, atol=1e-6)


def test_min_size_enlarges_a_small_image_for_the_network(toy_reference: dict[str, np.ndarray]) -> None:
    """A 64-px image reaches the network enlarged to ``min_size`` and its map comes back at 64 px; the
    app's predictor enlarges to INTERACTIVE_MIN_SIZE."""
    from model.predictor import INTERACTIVE_MIN_SIZE, interactive_predictor

    seen: list[tuple[int, ...]] = []

    class Recording(ToyNet):
        def forward(self, image: torch.Tensor, points: torch.Tensor) -> dict[str, torch.Tensor]:
            seen.append(tuple(image.shape))
            return super().forward(image, points)

    small = cv2.resize(toy_reference["image"], (64, 48), interpolation=cv2.INTER_AREA)
    predictor = Predictor(Recording(), device="cpu", zoom_in=None, with_flip=False, min_size=160)
    predictor.set_image(small)
    probs = predictor.predict([Click(24, 20, True, 0)]).prob
    assert seen == [(1, 4, 120, 160)] and probs.shape == (48, 64)
    assert interactive_predictor(Recording(), "cpu").limit.min_size == INTERACTIVE_MIN_SIZE == 160


def test_max_size_limits_the_network_input(toy_reference: dict[str, np.ndarray]) -> None:
    seen: list[tuple[int, ...]] = []

    class Recording(ToyNet):
        def forward(self, image: torch.Tensor, points: torch.Tensor) -> dict[str, torch.Tensor]:
            seen.append(tuple(image.shape))
            return super().forward(image, points)

    predictor = Predictor(Recording(), device="cpu", zoom_in=None, max_size=250)
    predictor.set_image(toy_reference["image"])
    probs = predictor.predict([Click(190, 160, True, 0)]).prob
    assert seen == [(2, 4, 188, 250)] and probs.shape == (375, 500)
    full = toy_predictor(zoom_in=None)
    full.set_image(toy_reference["image"])
    assert iou(probs > 0.49, full.predict([Click(190, 160, True, 0)]).prob > 0.49) > 0.97


# --- input checking ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((20, 30, 3), np.str_),
        np.zeros((20, 30, 2), np.uint8),
        np.zeros((20, 30, 3), object),
        np.zeros((0, 30, 3), np.uint8),
        np.zeros((20, 0), np.uint8),
        np.zeros((1, 20, 30, 3), np.uint8),
        np.zeros(30, np.uint8),
        [[1, 2], [3, 4]],
    ],
    ids=["text", "2ch", "objects", "no-rows", "no-cols", "4d", "1d", "list"],
)
def test_unusable_images_raise_one_clear_error(bad: object) -> None:
    predictor = toy_predictor()
    with pytest.raises(ValueError, match="image must be"):
        predictor.set_image(bad)  # type: ignore[arg-type]


def test_a_16_bit_image_becomes_the_same_rgb_for_the_network_the_engines_and_the_app(tmp_path: Path) -> None:
    """One normalisation (model.image): a 12-bit scan in a 16-bit PNG is stretched from its min..max to
    0..255 by the network predictor, the built-in engines, the app's image reader and the export reader."""
    from PIL import Image

    from isegformer_app.state.imageio import load_image
    from model.engines import build_engine

    scan = np.linspace(1000, 4000, 30 * 40).reshape(30, 40).astype(np.uint16)  # 12-bit values
    expected = np.rint((scan - 1000.0) * 255.0 / 3000.0).astype(np.uint8)
    predictor = toy_predictor()
    predictor.set_image(scan)
    network_rgb = (predictor._input[0, :3] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    engine = build_engine("grabcut")
    engine.set_image(scan)
    Image.fromarray(scan).save(tmp_path / "scan.png")  # mode I;16
    app_rgb = load_image(tmp_path / "scan.png").rgb
    from training.datasets.export import ExportDataset

    (tmp_path / "export" / "images").mkdir(parents=True)
    (tmp_path / "export" / "masks").mkdir()
    Image.fromarray(scan).save(tmp_path / "export" / "images" / "scan.png")
    Image.fromarray(np.ones((30, 40), np.uint8)).save(tmp_path / "export" / "masks" / "scan.png")
    export_rgb = ExportDataset(tmp_path / "export").read_rgb(tmp_path / "export" / "images" / "scan.png")
    for rgb in (network_rgb, engine._image, app_rgb, export_rgb):
        assert rgb.shape == (30, 40, 3) and rgb.dtype == np.uint8
        assert np.array_equal(rgb, np.repeat(expected[:, :, None], 3, axis=2))
    assert network_rgb[0, 0, 0] == 0 and network_rgb[-1, -1, 0] == 255  # not /257: 4000 -> 16


def test_predict_before_set_image_and_fp16_on_cpu_are_refused() -> None:
    with pytest.raises(RuntimeError, match="set_image"):
        toy_predictor().predict([Click(1, 1, True, 0)])
    with pytest.raises(ValueError, match="fp16"):
        toy_predictor(autocast="fp16")
    with pytest.raises(ValueError, match="autocast"):
        toy_predictor(autocast="int8")


def test_accepted_image_layouts_give_the_same_maps(toy_reference: dict[str, np.ndarray]) -> None:
    image = np.ascontiguousarray(toy_reference["image"][:200, :240])
    clicks = [Click(100, 120, True, 0), Click(60, 50, False, 1)]
    gray = image[..., 1]

    def maps_of(img: np.ndarray) -> list[np.ndarray]:
        predictor = toy_predictor()
        predictor.set_image(img)
        return run_clicks(predictor, clicks)

    expected = maps_of(image)
    rgba = np.concatenate((image, np.full(image.shape[:2] + (1,), 7, np.uint8)), axis=2)
    strided = np.zeros((200, 480, 3), np.uint8)
    strided[:, ::2] = image
    mirrored = np.ascontiguousarray(image[:, ::-1])
    readonly = image.copy()
    readonly.flags.writeable = False
    for name, img in [
        ("rgba", rgba),
        ("uint16", image.astype(np.uint16) * 257),
        ("non-contiguous", strided[:, ::2]),
        ("negative strides", mirrored[:, ::-1]),
        ("read-only", readonly),
    ]:
        for got, want in zip(maps_of(img), expected, strict=True):
            assert np.array_equal(got, want), name
    expected_gray = maps_of(np.repeat(gray[..., None], 3, axis=2))
    for img in (gray, gray[..., None]):
        for got, want in zip(maps_of(img), expected_gray, strict=True):
            assert np.array_equal(got, want)


@pytest.mark.parametrize("shape", [(1, 1), (1, 500), (3, 2000), (700, 2)])
def test_tiny_and_thin_images(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    predictor = toy_predictor()
    predictor.set_image(image)
    clicks = [
        Click(0, 0, True, 0),
        Click(shape[0] - 1, shape[1] - 1, True, 1),
        Click(0, shape[1] // 2, False, 2),
    ]
    for probs in run_clicks(predictor, clicks):
        assert probs.shape == shape and probs.dtype == np.float32
        assert np.isfinite(probs).all() and probs.min() >= 0 and probs.max() <= 1
        assert probs[0, 0] > 0.5


def test_tiny_images_with_the_segformer(six_channel_model: nn.Module) -> None:
    predictor = Predictor(six_channel_model, device="cpu")
    for shape in [(1, 1), (2, 300), (300, 5)]:
        predictor.set_image(np.full((*shape, 3), 128, np.uint8))
        clicks = [Click(0, 0, True, 0), Click(shape[0] - 1, shape[1] - 1, False, 1)]
        probs = predictor.predict(clicks).prob
        assert probs.shape == shape and np.isfinite(probs).all()


# --- transforms on their own --------------------------------------------------------------------------


def test_zoom_in_box_click_scaling_and_paste_back() -> None:
    zoom = ZoomIn()
    probs = torch.zeros(1, 1, 375, 500)
    probs[0, 0, 100:151, 200:261] = 0.9
    clicks = [Click(120, 230, True, 0), Click(10, 10, False, 1)]
    choice = zoom.choose_box(probs, clicks, None, (375, 500))
    # bbox 100..150 x 200..260, x1.4 -> at least 200 px: centre 125 +-100, 230 +-100
    assert choice.crop == choice.kept == (25, 225, 130, 330) and choice.changed
    image = torch.rand(1, 4, 375, 500)
    crop, (tclicks,) = zoom.apply(image, [clicks], choice.crop)
    assert tuple(crop.shape) == (1, 4, 400, 400)
    assert tclicks[0].coords == pytest.approx((400 * 95 / 201, 400 * 100 / 201))
    assert tclicks[1].coords == pytest.approx((400 * -15 / 201, 400 * -120 / 201))
    torch.testing.assert_close(crop[:, :, 0, 0], image[:, :, 25, 130])
    torch.testing.assert_close(crop[:, :, -1, -1], image[:, :, 225, 330])

    back = zoom.inverse(torch.full((1, 1, 400, 400), 0.7), choice.crop, (375, 500))
    assert tuple(back.shape) == (1, 1, 375, 500)
    assert torch.allclose(back[0, 0, 25:226, 130:331], torch.tensor(0.7))
    assert back.sum().item() == pytest.approx(0.7 * 201 * 201, rel=1e-5)

    # same box kept while positive clicks stay inside and the new box overlaps well
    kept = zoom.choose_box(probs, [*clicks, Click(130, 240, True, 2)], choice.kept, (375, 500))
    assert kept.crop == kept.kept == (25, 225, 130, 330) and not kept.changed
    # a positive click on the box's last row counts as outside (as in the original): new box, rows
    # 100..225 -> centre 162.5 +- 100 -> 62.5..262.5, rounded half to even
    moved = zoom.choose_box(probs, [*clicks, Click(225, 200, True, 2)], choice.kept, (375, 500))
    assert moved.kept == (62, 262, 130, 330) and moved.changed
    # a positive click outside the box makes a new one
    far = zoom.choose_box(probs, [*clicks, Click(300, 450, True, 2)], choice.kept, (375, 500))
    assert far.kept != (25, 225, 130, 330) and far.changed
    # too few clicks: no crop, the box in use is kept for later
    assert zoom.choose_box(probs, clicks[:1], choice.kept, (375, 500)) == type(choice)(None, choice.kept)


def test_zoom_in_unzoomed_call_is_not_squeezed_into_a_stale_box() -> None:
    zoom = ZoomIn()
    clicks = [Click(120, 230, True, 0), Click(10, 10, False, 1)]
    choice = zoom.choose_box(torch.zeros(1, 1, 375, 500), clicks, (25, 225, 130, 330), (375, 500))
    assert choice.crop is None and choice.kept == (25, 225, 130, 330)  # empty previous mask: no zoom
    image = torch.rand(1, 4, 375, 500)
    out, _ = zoom.apply(image, [clicks], choice.crop)
    assert out is image
    maps = torch.rand(1, 1, 375, 500)
    assert zoom.inverse(maps, choice.crop, (375, 500)) is maps


def test_flip_limit_and_pad_transforms() -> None:
    image = torch.rand(1, 4, 30, 50)
    flip = AddHorizontalFlip()
    doubled, lists, undo = flip.apply(image, [[Click(3, 7, True, 0)]])
    assert doubled.shape[0] == 2 and torch.equal(doubled[1], image[0].flip(2))
    assert lists[1][0].coords == (3, 50 - 7 - 1)
    logits = torch.stack((torch.full((1, 30, 50), 2.0), torch.zeros(1, 30, 50)))
    assert torch.allclose(flip.inverse(logits, undo), torch.ones(1, 1, 30, 50))

    limit = LimitLongestSide(max_size=25)
    small, (clicks,), undo = limit.apply(image, [[Click(15, 20, True, 0)]])
    assert tuple(small.shape[2:]) == (15, 25) and clicks[0].coords == pytest.approx((7.5, 10.0))
    assert tuple(limit.inverse(torch.rand(1, 1, 15, 25), undo).shape[2:]) == (30, 50)
    same, _, same_undo = limit.apply(torch.rand(1, 4, 20, 25), [[]])
    assert tuple(same.shape[2:]) == (20, 25)
    maps = torch.rand(1, 1, 20, 25)
    assert limit.inverse(maps, same_undo) is maps
    assert tuple(limit.inverse(torch.rand(1, 1, 15, 25), undo).shape[2:]) == (30, 50)  # each call its own

    both = LimitLongestSide(max_size=100, min_size=40)
    large, (clicks,), undo = both.apply(torch.rand(1, 4, 10, 20), [[Click(5, 10, True, 0)]])
    assert tuple(large.shape[2:]) == (20, 40) and clicks[0].coords == pytest.approx((10.0, 20.0))
    assert tuple(both.inverse(torch.rand(1, 1, 20, 40), undo).shape[2:]) == (10, 20)
    assert both.apply(image, [[]])[2] is None  # 30 x 50 lies between the limits: untouched
    assert tuple(both.apply(torch.rand(1, 4, 60, 200), [[]])[0].shape[2:]) == (30, 100)
    with pytest.raises(ValueError, match="above max_size"):
        LimitLongestSide(max_size=100, min_size=200)

    pad = PadToMinSize(32)
    padded, _, undo = pad.apply(image, [[]])
    assert tuple(padded.shape[2:]) == (32, 50) and padded[:, :, 30:].abs().sum() == 0
    assert torch.equal(pad.inverse(padded[:, :1], undo), image[:, :1])


# --- reduced precision ---------------------------------------------------------------------------------


def test_bf16_autocast_on_cpu_agrees_with_fp32(
    six_channel_model: nn.Module, six_channel_reference: dict[str, np.ndarray]
) -> None:
    clicks = clicks_from_array(six_channel_reference["clicks"][:2])  # one full-image pass, one zoomed
    results = {}
    for autocast in (None, "bf16"):
        predictor = Predictor(six_channel_model, device="cpu", autocast=autocast)
        predictor.set_image(six_channel_reference["image"])
        results[autocast] = run_clicks(predictor, clicks)
    for full, half in zip(results[None], results["bf16"], strict=True):
        assert iou(full > 0.49, half > 0.49) >= 0.99
        assert np.abs(full - half).max() < 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("autocast", ["fp16", "bf16"])
def test_cuda_autocast_agrees_with_fp32(
    autocast: str, reference_dir: Path, six_channel_reference: dict[str, np.ndarray]
) -> None:
    from model.checkpoint import load_checkpoint

    model = load_checkpoint(reference_dir / "isegformer_tiny_6ch_prevmask.pth", device="cuda")
    clicks = clicks_from_array(six_channel_reference["clicks"])
    results = {}
    for mode in (None, autocast):
        predictor = Predictor(model, device="cuda", autocast=mode)
        predictor.set_image(six_channel_reference["image"])
        results[mode] = run_clicks(predictor, clicks)
    for k, (full, half) in enumerate(zip(results[None], results[autocast], strict=True)):
        assert iou(full > 0.49, half > 0.49) >= 0.99, f"click {k + 1}"
        assert np.abs(full - half).max() < 0.05, f"click {k + 1}"
