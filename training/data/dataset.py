"""The training dataset: sample -> augmentation -> object selection -> clicks (RITM's ``ISDataset``).

Items are dicts of tensors: ``images`` (3, h, w) float32 RGB in [0, 1], ``points`` (2N, 3) float32
(:mod:`training.data.points_sampler` rows), ``instances`` (1, h, w) float32 target (1 / 0 / -1 ignored).
Randomness is a function of ``(seed, epoch, index)`` only, so any item can be recomputed exactly (resume,
several workers, several processes).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np
import torch

from training.config import Config
from training.data.augment import Augmentation
from training.data.points_sampler import MultiPointSampler
from training.data.sample import TrainSample

MAX_AUGMENTATION_TRIES = 50


class SampleSource(Protocol):
    def __len__(self) -> int: ...

    def load(self, index: int, rng: np.random.Generator) -> TrainSample: ...


class SourceSubset:
    """Some samples of a source (a train / held-out split), by index."""

    def __init__(self, source: SampleSource, indices: list[int]) -> None:
        self.source, self.indices = source, indices

    def __len__(self) -> int:
        return len(self.indices)

    def load(self, index: int, rng: np.random.Generator) -> TrainSample:
        return self.source.load(self.indices[index], rng)


class InteractiveDataset(torch.utils.data.Dataset):
    """``epoch_len > 0``: that many items per epoch, each from a random image (as the original);
    otherwise one item per image. ``keep_background_prob``: probability of keeping an augmented sample
    whose crop holds no object (a background-only target with negative clicks)."""

    def __init__(
        self,
        source: SampleSource,
        augmentation: Augmentation | None,
        points_sampler: MultiPointSampler,
        min_object_area: int = 0,
        keep_background_prob: float = 0.0,
        epoch_len: int = -1,
        seed: int = 0,
    ) -> None:
        self.source = source
        self.augmentation = augmentation
        self.points_sampler = points_sampler
        self.min_object_area = min_object_area
        self.keep_background_prob = keep_background_prob
        self.epoch_len = epoch_len
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the random stream of ``epoch`` (call before creating the epoch's loader iterator)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.epoch_len if self.epoch_len > 0 else len(self.source)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.epoch_len > 0:
            index = int(rng.integers(len(self.source)))
        sample = self.augmented(self.source.load(index, rng), rng)
        sample.remove_small_objects(self.min_object_area)
        target, points = self.points_sampler.sample(sample, rng)
        image = torch.from_numpy(np.ascontiguousarray(sample.image.transpose(2, 0, 1))).float().div_(255.0)
        return {
            "images": image,
            "points": torch.from_numpy(points),
            "instances": torch.from_numpy(target[None]),
        }

    def augmented(self, sample: TrainSample, rng: np.random.Generator) -> TrainSample:
        """Augment until the crop keeps an object (or, with ``keep_background_prob``, accept an empty one)."""
        if self.augmentation is None:
            sample.compute_areas()
            return sample
        for _ in range(MAX_AUGMENTATION_TRIES):
            image, layers = self.augmentation(sample.image, sample.layers, rng)
            candidate = TrainSample(
                image, layers.copy(), sample.copy().objects, list(sample.ignore), sample.sample_id
            )
            candidate.compute_areas()
            candidate.remove_small_objects(1)
            keep = self.keep_background_prob < 0 or rng.random() < self.keep_background_prob
            if len(candidate) > 0 or keep:
                return candidate
        return candidate


def evaluation_objects(
    source: SampleSource, max_objects: int, min_object_area: int = 0, seed: int = 0
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Up to ``max_objects`` (name, image (H, W, 3) uint8, gt mask (H, W) int32 1/0/-1) for NoC
    validation, without augmentation: the root objects of at least ``min_object_area`` pixels, images
    in order, the objects of an image largest first."""
    produced = 0
    for index in range(len(source)):
        sample = source.load(index, np.random.default_rng([seed, index]))
        sample.compute_areas()
        sample.remove_small_objects(max(min_object_area, 1))
        for object_id in sorted(sample.root_objects, key=lambda i: -sample.objects[i].area):
            if produced >= max_objects:
                return
            produced += 1
            yield f"{sample.sample_id or index}:{object_id}", sample.image, sample.object_mask(object_id)


def build_train_set(config: Config, source: SampleSource) -> InteractiveDataset:
    """The training items of ``config`` (``[data]`` crops and scales, ``[points]`` clicks) from ``source``."""
    data, points = config.data, config.points
    sampler = MultiPointSampler(
        points.max_num_points,
        prob_gamma=points.prob_gamma,
        merge_objects_prob=points.merge_objects_prob,
        max_num_merged_objects=points.max_num_merged_objects,
        first_click_center=points.first_click_center,
    )
    augmentation = Augmentation(crop_size=tuple(data.crop_size), scale_range=tuple(data.scale_range))
    return InteractiveDataset(
        source,
        augmentation,
        sampler,
        min_object_area=data.min_object_area,
        keep_background_prob=data.keep_background_prob,
        epoch_len=data.epoch_len,
        seed=config.train.seed,
    )
