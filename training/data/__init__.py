"""Training data: COCO+LVIS and instance-map sources, augmentation, the click-sampling dataset."""

from training.data.augment import Augmentation
from training.data.cocolvis import CocoLvisSource
from training.data.dataset import InteractiveDataset, evaluation_objects
from training.data.instances import InstancesSource
from training.data.sample import ObjectInfo, TrainSample, sample_from_instances

__all__ = [
    "Augmentation",
    "CocoLvisSource",
    "InstancesSource",
    "InteractiveDataset",
    "ObjectInfo",
    "TrainSample",
    "evaluation_objects",
    "sample_from_instances",
]
