"""The predictor: the one object the app and the evaluator hold per image.

:class:`ClickPredictor` is the interface every engine implements (the network predictor below and
the built-in engines that need no weights).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.clicks import Click, clicks_to_points
from model.image import as_rgb_uint8
from model.threshold import DEFAULT_THRESHOLD, probability_mask
from model.transforms import AddHorizontalFlip, LimitLongestSide, PadToMinSize, Transform, ZoomIn


@runtime_checkable
class ClickPredictor(Protocol):
    """Clicks in, probability map out, for one image at a time.

    ``set_image(image)``: HxWx3 uint8 RGB (grayscale HxW and RGBA are accepted and converted).
    ``predict(clicks, prev_mask=None)``: all clicks so far (in order) -> HxW float32 probabilities
    in [0, 1] at the image's full resolution; the predictor remembers its last prediction and
    feeds it back as the previous mask unless ``prev_mask`` is given.
    ``get_state()`` / ``set_state(state)``: save and restore everything ``predict`` depends on
    (for undo). ``reset()`` forgets the clicks' effects (new object on the same image).
    """

    name: str

    def set_image(self, image: np.ndarray) -> None: ...

    def predict(self, clicks: Sequence[Click], prev_mask: np.ndarray | None = None) -> np.ndarray: ...

    def get_state(self) -> Any: ...

    def set_state(self, state: Any) -> None: ...

    def reset(self) -> None: ...


# --- the network predictor ---------------------------------------------------------------------------

_AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


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

    ``set_image`` once per image, then ``predict`` after every click with *all* clicks so far::

        predictor = Predictor(load_checkpoint(path))
        predictor.set_image(rgb)                                   # (H, W, 3) uint8
        probs = predictor.predict([Click(y=120, x=80, is_positive=True, index=0)])  # (H, W) float32

    Coordinates: ``Click.y``/``Click.x`` are pixel indices (row, column) of the full image given to
    ``set_image`` (fractions allowed); clicks outside ``[0, H) x [0, W)`` are dropped before anything else
    (the remaining ones keep their ``index``). ``Click.index`` is the click's order.

    Per call: the network input is RGB in [0, 1] (+ the previous probability map as channel 3 when
    ``model.with_prev_mask``; zeros before the first prediction), then ZoomIn (crop to the object
    found so far), LimitLongestSide (``max_size``), zero padding of sides below ``min_input_size`` and
    the horizontal-flip copy; the network's logits are averaged over the flip, passed through the sigmoid
    and mapped back to full resolution (bilinear, align_corners=True). With no clicks the network
    runs with padding-only points (as the original did) and its prediction is returned and remembered.

    ``model``: any ``nn.Module`` with ``forward(image (B, 3|4, H, W), points (B, 2N, 3)) -> {'instances':
    (B, 1, H, W) logits}`` and an optional ``with_prev_mask`` attribute (e.g.
    :class:`~model.modeling.interactive.InteractiveModel`); it is moved to ``device`` and set to eval.
    ``zoom_in``: True for the default :class:`~model.transforms.ZoomIn`, an instance, or None/False.
    ``threshold``: probability above which callers count a pixel as object (``mask()``).
    ``autocast``: None (float32), 'fp16' (CUDA only) or 'bf16' for the network's forward pass.
    ``channels_last``: run the network on NHWC tensors (faster convolutions on many CPUs; the probabilities
    are the same up to float rounding).

    Where it differs from the original (only in cases the original got wrong or crashed on): clicks
    outside the image are dropped; inputs with a side below ``min_input_size`` are zero-padded for the
    network and cropped back; an unzoomed call after an empty mask is not squeezed into a stale ZoomIn
    box; LimitLongestSide resizes once; ``predict`` returns a fresh array (the caller may modify it).
    """

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device | None = None,
        zoom_in: bool | ZoomIn | None = True,
        with_flip: bool = True,
        max_size: int | None = None,
        threshold: float = DEFAULT_THRESHOLD,
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
        self.limit = LimitLongestSide(max_size) if max_size is not None else None
        self.pad = PadToMinSize(min_input_size)
        self.flip = AddHorizontalFlip() if with_flip else None
        # applied in this order before the network; undone in reverse after it
        self._resizers: list[Transform] = [t for t in (self.zoom_in, self.limit) if t is not None]
        self._on_logits: list[Transform] = [t for t in (self.pad, self.flip) if t is not None]

        self._input: torch.Tensor | None = None  # (1, 3|4, H, W) float32 on device; channel 3 = prev mask
        self._prev_prediction: torch.Tensor | None = None  # (1, 1, H, W)

    # -- image ---------------------------------------------------------------------------------------

    @property
    def image_size(self) -> tuple[int, int] | None:
        """(H, W) of the current image, or None before ``set_image``."""
        return None if self._input is None else (self._input.shape[2], self._input.shape[3])

    @torch.inference_mode()
    def set_image(self, image: np.ndarray) -> None:
        """Take a new image (:func:`model.image.as_rgb_uint8`); forgets all previous predictions."""
        image = as_rgb_uint8(image)
        height, width = image.shape[:2]
        pixels = torch.from_numpy(image).to(self.device)
        channels = 3 + int(self.with_prev_mask)
        self._input = torch.empty((1, channels, height, width), dtype=torch.float32, device=self.device)
        rgb = self._input[:, :3]
        rgb.copy_(pixels.permute(2, 0, 1).unsqueeze(0))
        rgb.div_(255)
        self.reset()

    def reset(self) -> None:
        """Forget the clicks' effects (new object on the same image)."""
        for t in self._resizers + self._on_logits:
            t.reset()
        if self._input is not None:
            self._prev_prediction = self._input.new_zeros((1, 1, *self._input.shape[2:]))

    # -- prediction ----------------------------------------------------------------------------------

    @torch.inference_mode()
    def predict(self, clicks: Sequence[Click], prev_mask: np.ndarray | None = None) -> np.ndarray:
        """All clicks so far (in order) -> (H, W) float32 probabilities at full resolution.

        ``prev_mask``: optional (H, W) bool or float array in [0, 1] used instead of the last prediction
        as the network's previous-mask channel (ZoomIn still follows the last prediction).
        """
        if self._input is None or self._prev_prediction is None:
            raise RuntimeError("Predictor.predict called before set_image")
        height, width = self._input.shape[2:]
        inside = [c for c in clicks if 0 <= c.y < height and 0 <= c.x < width]
        prev = self._prev_prediction if prev_mask is None else self._prev_mask_tensor(prev_mask)

        probs = self._run(inside, prev)
        if self.zoom_in is not None and self.zoom_in.needs_recompute():
            probs = self._run(inside, prev)
        self._prev_prediction = probs
        return probs[0, 0].to("cpu", copy=True).numpy()

    def mask(self, probs: np.ndarray) -> np.ndarray:
        """Binary mask of a probability map (:func:`model.threshold.probability_mask`)."""
        return probability_mask(probs, self.threshold)

    def _prev_mask_tensor(self, prev_mask: np.ndarray) -> torch.Tensor:
        assert self._input is not None
        size = tuple(self._input.shape[2:])
        prev_mask = np.asarray(prev_mask)
        if prev_mask.shape != size:
            raise ValueError(f"prev_mask must have the image's shape {size}, got {prev_mask.shape}")
        prev_mask = prev_mask.astype(np.float32, copy=not prev_mask.flags.writeable)
        return torch.from_numpy(prev_mask).to(self.device).view(1, 1, *size)

    def _run(self, clicks: list[Click], prev: torch.Tensor) -> torch.Tensor:
        """One pass: transforms, network, inverse transforms -> (1, 1, H, W) probabilities."""
        assert self._input is not None
        image = self._input
        if self.with_prev_mask:
            image[:, 3:4].copy_(prev)
        clicks_lists = [clicks]
        for t in self._resizers + self._on_logits:
            image, clicks_lists = t.apply(image, clicks_lists)
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

        for t in reversed(self._on_logits):
            logits = t.inverse(logits)
        probs = torch.sigmoid(logits)
        for t in reversed(self._resizers):
            probs = t.inverse(probs)
        return probs

    # -- undo ----------------------------------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        """Everything the next ``predict`` depends on (transform states, last prediction); cheap, no copies
        (the predictor never changes a saved tensor in place)."""
        return {
            "image_size": self.image_size,
            "transforms": [t.get_state() for t in self._resizers + self._on_logits],
            "prev_prediction": self._prev_prediction,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a state from ``get_state`` taken on the same image."""
        if state.get("image_size") != self.image_size:
            raise ValueError(
                f"state is for an image of size {state.get('image_size')}, not {self.image_size}"
            )
        transforms = self._resizers + self._on_logits
        if len(state["transforms"]) != len(transforms):
            raise ValueError("state was saved by a predictor with other transforms")
        for t, s in zip(transforms, state["transforms"], strict=True):
            t.set_state(s)
        self._prev_prediction = state["prev_prediction"]
