"""Training on instance-map datasets (SBD, PASCAL VOC, the app's export) through their readers in
:mod:`training.datasets`: every instance of an image is an object, -1 regions are ignored."""

from __future__ import annotations

import numpy as np

from training.data.sample import TrainSample, sample_from_instances
from training.datasets.base import EvalDataset

SBD_BUGGY_MASK_THRESHOLD = 0.08


def remove_buggy_masks(instances: np.ndarray, threshold: float) -> np.ndarray:
    """Erase (to background) instances filling less than ``threshold`` of their bounding box: RITM's
    filter for SBD's broken annotations (threshold 0.08). Returns a new array."""
    instances = instances.copy()
    for value in np.unique(instances):
        if value <= 0:
            continue
        ys, xs = np.nonzero(instances == value)
        box_area = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
        if len(ys) / box_area < threshold:
            instances[instances == value] = 0
    return instances


class InstancesSource:
    """Wraps an :class:`~training.datasets.base.EvalDataset`; ``load(i, rng)`` -> :class:`TrainSample`.

    ``buggy_mask_threshold`` > 0 drops thin/fragmented instances (see :func:`remove_buggy_masks`).
    """

    def __init__(self, dataset: EvalDataset, buggy_mask_threshold: float = 0.0) -> None:
        self.dataset = dataset
        self.buggy_mask_threshold = buggy_mask_threshold

    def __len__(self) -> int:
        return len(self.dataset)

    def load(self, index: int, rng: np.random.Generator) -> TrainSample:
        del rng
        sample = self.dataset[index]
        instances = sample.instances
        if self.buggy_mask_threshold > 0:
            instances = remove_buggy_masks(instances, self.buggy_mask_threshold)
        return sample_from_instances(sample.image, instances, sample.name)
