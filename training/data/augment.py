"""Training augmentations of the iSegFormer / RITM configs, with OpenCV and numpy.

Train: uniform random rescale (0.75-1.40), horizontal flip (p 0.5), zero padding up to the crop
size, random crop (320x480), random brightness (+-0.25) / contrast (-0.15..0.4) with p 0.75 and an
RGB shift (+-10 per channel) with p 0.75 (as albumentations' ``UniformRandomResize``,
``HorizontalFlip``, ``PadIfNeeded(border_mode=0)``, ``RandomCrop``, ``RandomBrightnessContrast``,
``RGBShift``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Augmentation:
    """Geometric + photometric augmentation of an image and its mask layers.

    ``crop_size`` (height, width); ``scale_range`` None = no rescaling; probabilities 0 disable a step.
    """

    crop_size: tuple[int, int] = (320, 480)
    scale_range: tuple[float, float] | None = (0.75, 1.40)
    flip_prob: float = 0.5
    brightness_limit: tuple[float, float] = (-0.25, 0.25)
    contrast_limit: tuple[float, float] = (-0.15, 0.4)
    brightness_contrast_prob: float = 0.75
    rgb_shift_limit: float = 10.0
    rgb_shift_prob: float = 0.75

    def __call__(
        self, image: np.ndarray, layers: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """``image`` (H, W, 3) uint8, ``layers`` (H, W, L) int32 -> cropped (h, w, 3) and (h, w, L)."""
        if self.scale_range is not None:
            scale = rng.uniform(*self.scale_range)
            size = (int(round(image.shape[1] * scale)), int(round(image.shape[0] * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
            layers = resize_layers(layers, size)
        if self.flip_prob > 0 and rng.random() < self.flip_prob:
            image, layers = image[:, ::-1], layers[:, ::-1]
        image, layers = pad_to(image, self.crop_size), pad_to(layers, self.crop_size)
        image, layers = random_crop(image, layers, self.crop_size, rng)
        if self.brightness_contrast_prob > 0 and rng.random() < self.brightness_contrast_prob:
            alpha = 1.0 + rng.uniform(*self.contrast_limit)
            beta = rng.uniform(*self.brightness_limit)
            image = apply_lut(image, np.arange(256, dtype=np.float32) * alpha + beta * 255.0)
        if self.rgb_shift_prob > 0 and rng.random() < self.rgb_shift_prob:
            shifts = rng.uniform(-self.rgb_shift_limit, self.rgb_shift_limit, size=3)
            image = np.dstack(
                [apply_lut(image[:, :, c], np.arange(256, dtype=np.float32) + shifts[c]) for c in range(3)]
            )
        return np.ascontiguousarray(image), np.ascontiguousarray(layers)


def resize_layers(layers: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of (H, W, L) int32 layers to ``size`` = (width, height)."""
    planes = [
        cv2.resize(np.ascontiguousarray(layers[:, :, i]), size, interpolation=cv2.INTER_NEAREST)
        for i in range(layers.shape[2])
    ]
    return np.stack(planes, axis=2)


def pad_to(array: np.ndarray, min_size: tuple[int, int]) -> np.ndarray:
    """Zero-pad (H, W, C) symmetrically (extra row/column at the bottom/right) to at least ``min_size``."""
    pad_h, pad_w = max(min_size[0] - array.shape[0], 0), max(min_size[1] - array.shape[1], 0)
    if pad_h == 0 and pad_w == 0:
        return array
    top, left = pad_h // 2, pad_w // 2
    return np.pad(array, ((top, pad_h - top), (left, pad_w - left), (0, 0)))


def random_crop(
    image: np.ndarray, layers: np.ndarray, crop_size: tuple[int, int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The same uniformly placed ``crop_size`` window of both arrays (already at least that large)."""
    top = int(rng.integers(0, image.shape[0] - crop_size[0] + 1))
    left = int(rng.integers(0, image.shape[1] - crop_size[1] + 1))
    window = (slice(top, top + crop_size[0]), slice(left, left + crop_size[1]))
    return image[window], layers[window]


def apply_lut(image: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Map uint8 values through a float lookup table, clipped to [0, 255] and truncated to uint8."""
    table = np.clip(lut, 0, 255).astype(np.uint8)
    return cv2.LUT(np.ascontiguousarray(image), table)
