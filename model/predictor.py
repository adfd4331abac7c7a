"""The network predictor: the one object the app and the evaluator hold per image.

It implements :class:`~model.prediction.ClickPredictor` (as the built-in engines that need no weights
do): the image is cached by ``set_image``; the click state (previous probabilities, zoom box) goes in
and out of every ``predict`` call as a :class:`~model.prediction.PredictionState`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.clicks import Click, clicks_to_points
from model.image import as_rgb_uint8
from model.prediction import Box, Prediction, PredictionState
from model.threshold import DEFAULT_THRESHOLD, probability_mask
from model.transforms import AddHorizontalFlip, LimitLongestSide, PadToMinSize, Transform, ZoomChoice, ZoomIn

# --- the network predictor ---------------------------------------------------------------------------

_AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
# Longer side of the network's input in the app (the RITM demo's limit; the original predictor has none,
# isegformer-eval uses it for the networks this project saved). A camera photo at full size shows objects
# far larger than the network was trained on, and its first click runs on every pixel: on the VOC + ARC
# photos enlarged 4x the first click at full size took 14x as long and halved mIoU@1
# (model.benchmarks.large_photos; README, "Speed").
INTERACTIVE_MAX_SIZE = 800
# Shorter inputs are enlarged to this longer side in the app (half the 320-px scenes the default network
# trained on: at least 5 cells at its coarsest stride of 32). A 64 x 64 MR frame shown as it is gave the
# network 2 x 2 cells and a mask over the whole frame (IoU 0.07; enlarged 0.83). Enlarging further, to the
# training or the zoom size, made it take a part of a large object instead (README, "Small images").
INTERACTIVE_MIN_SIZE = 160


def trained_here(network: nn.Module) -> bool:
    """True for a network this project trained and saved (its checkpoint carries our metadata); False for
    the original RITM / iSegFormer checkpoints, which the evaluation runs by the original protocol."""
    return bool(getattr(network, "metadata", None))


def interactive_zoom_in(network: nn.Module, target_size: int = 400, ours: bool | None = None) -> ZoomIn:
    """The ZoomIn the app runs ``network`` with (and ``isegformer-eval`` measures it with).

    For a network this project trained that takes a previous mask (``ours``: None = :func:`trained_here`)
    the first click of a small object is refined: when its unzoomed mask fits ZoomIn's minimum crop, a
    second pass zoomed on it (2x or more) with that mask as the previous mask (``ZoomIn(skip_clicks=0,
    recompute_with_first_pass=True, recompute_small_only=True)``). Objects of 100-3,000 px in a 500-px
    photo are smaller than any the network was trained on, and its unzoomed first mask of them is unsure
    or spills. Measured on the shipped network (README, "The first click, zoomed"): mIoU@1 on VOC + ARC
    0.445 -> 0.535, on 148 DSB nuclei no choice was tuned on 0.479 -> 0.499. Other checkpoints keep the
    original's ZoomIn (zoomed from the second click on).
    """
    ours = trained_here(network) if ours is None else ours
    if ours and getattr(network, "with_prev_mask", False):
        return ZoomIn(
            target_size=target_size, skip_clicks=0, recompute_with_first_pass=True, recompute_small_only=True
        )
    return ZoomIn(target_size=target_size)


def interactive_predictor(
    network: nn.Module,
    device: str | torch.device | None = None,
    ours: bool | None = None,
    zoom_in: bool = True,
    **options: Any,
) -> Predictor:
    """The predictor the app runs ``network`` with: input's longer side limited to
    :data:`INTERACTIVE_MIN_SIZE`..:data:`INTERACTIVE_MAX_SIZE`, ZoomIn of :func:`interactive_zoom_in`
    (``ours`` as there: True for a network in training, which carries no metadata yet; ``zoom_in`` False:
    none), flip; ``options`` go to :class:`Predictor` (name, autocast, with_flip, ...)."""
    return Predictor(
        network,
        device=device,
        max_size=INTERACTIVE_MAX_SIZE,
        min_size=INTERACTIVE_MIN_SIZE,
        zoom_in=interactive_zoom_in(network, ours=ours) if zoom_in else None,
        **options,
    )


def cpu_has_native_bf16() -> bool:
    """True when the CPU multiplies bf16 natively (AVX512-BF16 or AMX), where bf16 autocast pays off."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def fast_autocast(device: str | torch.device) -> str | None:
    """The reduced precision worth using on ``device``: 'bf16' on CUDA GPUs that support it and on
    CPUs with native bf16, else None (float32). Tested to keep IoU >= 0.99 against float32."""
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else None


class Predictor:
    """Click-to-probability pipeline of the original ``BasePredictor`` around one network.

    ``set_image`` once per image, then ``predict`` after every click with *all* clicks so far and the
    state of the previous prediction (the caller holds it; the predictor keeps no click state)::

        predictor = Predictor(load_checkpoint(path))
        predictor.set_image(rgb)                                   # (H, W, 3) uint8
        first = predictor.predict([Click(y=120, x=80, is_positive=True, index=0)])
        first.prob                                                 # (H, W) float32
        second = predictor.predict([*first_clicks, next_click], first.state)

    Coordinates: ``Click.y``/``Click.x`` are pixel indices (row, column) of the full image given to
    ``set_image`` (fractions allowed); clicks outside ``[0, H) x [0, W)`` are dropped before anything else
    (the remaining ones keep their ``index``). ``Click.index`` is the click's order.

    Per call: the network input is RGB in [0, 1] (+ the state's probability map as channel 3 when
    ``model.with_prev_mask``; zeros without a state), then ZoomIn (crop to the object of the state's
    map, keeping the state's box while it fits), LimitLongestSide (``max_size``, ``min_size``), zero padding
    of sides below ``min_input_size`` and the horizontal-flip copy; the network's logits are averaged over the
    flip, passed through the sigmoid and mapped back to full resolution (bilinear, align_corners=True).
    With no clicks the network runs with padding-only points (as the original did).

    ``model``: any ``nn.Module`` with ``forward(image (B, 3|4, H, W), points (B, 2N, 3)) -> {'instances':
    (B, 1, H, W) logits}`` and an optional ``with_prev_mask`` attribute (e.g.
    :class:`~model.modeling.interactive.InteractiveModel`); it is moved to ``device`` and set to eval.
    ``zoom_in``: True for the default :class:`~model.transforms.ZoomIn`, an instance, or None/False.
    ``max_size`` / ``min_size``: the longest side an input (the zoomed crop, or the whole image) is shrunk
    / enlarged to when it is longer / shorter (None: no limit; :func:`interactive_predictor` sets the app's).
    ``threshold``: probability above which callers count a pixel as object (``mask()``).
    ``autocast``: None (float32), 'fp16' (CUDA only) or 'bf16' for the network's forward pass.
    ``channels_last``: run the network on NHWC tensors (faster convolutions on many CPUs; the probabilities
    are the same up to float rounding).

    Where it differs from the original (only in cases the original got wrong or crashed on): clicks
    outside the image are dropped; inputs with a side below ``min_input_size`` are zero-padded for the
    network and cropped back; an unzoomed call after an empty mask is not squeezed into a stale ZoomIn
    box; LimitLongestSide resizes once.
    """

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device | None = None,
        zoom_in: bool | ZoomIn | None = True,
        with_flip: bool = True,
        max_size: int | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        min_size: int | None = None,
        autocast: str | None = None,
        name: str = "network",
        min_input_size: int = 32,
        channels_last: bool = False,
    ) -> None:
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if autocast is not None and autocast not in _AUTOCAST_DTYPES:
            raise ValueError(f"autocast must be None, 'fp16' or 'bf16', got {autocast!r}")
        if autocast == "fp16" and self.device.type != "cuda":
            raise ValueError("autocast='fp16' needs a CUDA device; use 'bf16' or None on the CPU")
        self.autocast = autocast
        self.model = model.to(self.device).eval()
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.with_prev_mask = bool(getattr(model, "with_prev_mask", False))
        self.threshold = threshold
        self.name = name

        if zoom_in is True:
            zoom_in = ZoomIn()
        self.zoom_in: ZoomIn | None = zoom_in or None
        limited = max_size is not None or min_size is not None
        self.limit = LimitLongestSide(max_size, min_size) if limited else None
        self.pad = PadToMinSize(min_input_size)
        self.flip = AddHorizontalFlip() if with_flip else None
        # applied in this order after ZoomIn; undone in reverse (those on logits before the sigmoid)
        self._resizers: list[Transform] = [t for t in (self.limit,) if t is not None]
        self._on_logits: list[Transform] = [t for t in (self.pad, self.flip) if t is not None]

        self._input: torch.Tensor | None = None  # (1, 3|4, H, W) float32 on device; channel 3 = prev mask

    # -- image ---------------------------------------------------------------------------------------

    @property
    def image_size(self) -> tuple[int, int] | None:
        """(H, W) of the current image, or None before ``set_image``."""
        return None if self._input is None else (self._input.shape[2], self._input.shape[3])

    @torch.inference_mode()
    def set_image(self, image: np.ndarray) -> None:
        """Take a new image (:func:`model.image.as_rgb_uint8`)."""
        image = as_rgb_uint8(image)
        height, width = image.shape[:2]
        pixels = torch.from_numpy(image).to(self.device)
        channels = 3 + int(self.with_prev_mask)
        self._input = torch.empty((1, channels, height, width), dtype=torch.float32, device=self.device)
        rgb = self._input[:, :3]
        rgb.copy_(pixels.permute(2, 0, 1).unsqueeze(0))
        rgb.div_(255)

    # -- prediction ----------------------------------------------------------------------------------

    @torch.inference_mode()
    def predict(self, clicks: Sequence[Click], state: PredictionState | None = None) -> Prediction:
        """All clicks so far (in order) and the state they continue from -> :class:`Prediction`:
        (H, W) float32 probabilities at full resolution and the state for the next call.

        ``state``: the ``state`` of the prediction of an earlier click list on this image (usually all
        clicks but the last), :meth:`PredictionState.from_mask` of a mask drawn otherwise, or None
        (a new object: no previous mask, no zoom box).
        """
        if self._input is None:
            raise RuntimeError("Predictor.predict called before set_image")
        height, width = self._input.shape[2:]
        inside = [c for c in clicks if c.is_inside((height, width))]
        prev, box = None, None
        if state is not None:
            state.check_shape((height, width))
            prev = torch.from_numpy(state.prob).to(self.device).reshape(1, 1, height, width)
            box = state.zoom_box

        probs, box_after = self._run(inside, prev, prev, box)
        if self.zoom_in is not None and self.zoom_in.needs_recompute(probs, box_after):
            zoomed_prev = probs if self.zoom_in.recompute_with_first_pass else prev
            probs, box_after = self._run(inside, zoomed_prev, probs, box_after)
        return Prediction.of(probs[0, 0].to("cpu", copy=True).numpy(), box_after)

    def mask(self, probs: np.ndarray) -> np.ndarray:
        """Binary mask of a probability map (:func:`model.threshold.probability_mask`)."""
        return probability_mask(probs, self.threshold)

    def _run(
        self, clicks: list[Click], prev: torch.Tensor | None, zoom_prev: torch.Tensor | None, box: Box | None
    ) -> tuple[torch.Tensor, Box | None]:
        """One pass: transforms, network, inverse transforms -> (1, 1, H, W) probabilities and the zoom
        box in use after it. ``prev``: the previous-mask channel (None: zeros); ``zoom_prev``: the map
        ZoomIn finds the object in; ``box``: ZoomIn's box in use."""
        assert self._input is not None
        image = self._input
        size = (image.shape[2], image.shape[3])
        if self.with_prev_mask:
            if prev is None:
                image[:, 3:4].zero_()
            else:
                image[:, 3:4].copy_(prev)
        clicks_lists = [clicks]
        zoom = ZoomChoice(None, None)
        if self.zoom_in is not None:
            zoom = self.zoom_in.choose_box(zoom_prev, clicks, box, size)
            image, clicks_lists = self.zoom_in.apply(image, clicks_lists, zoom.crop)
        undos = []
        for t in self._resizers + self._on_logits:
            image, clicks_lists, undo = t.apply(image, clicks_lists)
            undos.append(undo)
        points = clicks_to_points(clicks_lists, device=self.device)
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)

        if self.autocast is None:
            logits = self.model(image, points)["instances"]
        else:
            with torch.autocast(self.device.type, dtype=_AUTOCAST_DTYPES[self.autocast]):
                logits = self.model(image, points)["instances"]
        logits = logits.float()
        if logits.shape[2:] != image.shape[2:]:
            logits = F.interpolate(logits, size=image.shape[2:], mode="bilinear", align_corners=True)

        n_resizers = len(self._resizers)
        for t, undo in reversed(list(zip(self._on_logits, undos[n_resizers:], strict=True))):
            logits = t.inverse(logits, undo)
        probs = torch.sigmoid(logits)
        for t, undo in reversed(list(zip(self._resizers, undos[:n_resizers], strict=True))):
            probs = t.inverse(probs, undo)
        if self.zoom_in is not None:
            probs = self.zoom_in.inverse(probs, zoom.crop, size)
        return probs, zoom.kept
