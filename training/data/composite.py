"""Composite scenes for training: cut-out objects pasted onto real photos, plus regions of those
photos, plus real MR slices with real structure masks (the ``composite`` dataset of ``isegformer-train``).

Every input installs offline (see :mod:`training.data.offline_assets`, which writes ``assets.json``):

* objects: RGBA cut-outs (alpha > 127 = object), e.g. Tux Paint's photographic stamps;
* backgrounds: photos without masks (GNOME backgrounds, OpenCV's example photos);
* medical: the MNI152 T1 template with its grey/white-matter probability maps (nilearn), sliced; only
  the slices of the training side of :data:`MR_SPLIT_FRACTION` are used here, the others are evaluation.

A scene (deterministic given the random generator): a background crop; with ``region_prob`` a few
colour-coherent regions of the photo itself become objects (so that "object" is not only "pasted
thing"); then 1..``max_objects`` cut-outs, each scaled, rotated, flipped, colour-jittered, with a soft
alpha edge and sometimes a drop shadow; later objects occlude earlier ones (the instance map keeps each
object's visible part, computed from the thresholded alpha). Then global blur, noise, grey conversion
and JPEG re-compression, so that pasted edges are no give-away.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from model.untrusted import ImageTooLarge, imread_checked
from training.data.sample import ObjectInfo, TrainSample

ASSETS_FILE = "assets.json"
ALPHA_OBJECT_THRESHOLD = 127  # alpha > this (of 255) is object
# The MNI volume is split along its superior-inferior axis: axial slices in the lower part (and every
# voxel of them) are evaluation only; training uses the upper part, with a margin between the two.
MR_SPLIT_FRACTION = 0.45
MR_SPLIT_MARGIN = 8  # slices left out on either side of the split


class AssetsError(ValueError):
    """The composite asset folder is missing or incomplete (see :mod:`training.data.offline_assets`)."""


@dataclass(frozen=True)
class CompositeConfig:
    canvas: tuple[int, int] = (384, 384)  # (height, width) of a scene before the training augmentation
    max_objects: int = 4
    object_size: tuple[float, float] = (0.15, 0.8)  # longest side as a fraction of the canvas side
    region_prob: float = 0.5
    max_regions: int = 3
    medical_prob: float = 0.15
    rotate_prob: float = 0.5
    max_rotation: float = 35.0
    shadow_prob: float = 0.4
    soft_edge_prob: float = 0.8
    blur_prob: float = 0.25
    noise_prob: float = 0.3
    gray_prob: float = 0.12
    jpeg_prob: float = 0.3
    scenes: int = 100_000  # len() of the source: scene index space


def _imread(path: str, flags: int) -> np.ndarray | None:
    try:
        return imread_checked(path, flags)
    except ImageTooLarge as error:
        raise AssetsError(str(error)) from error


def _read_rgba(path: str, max_side: int) -> np.ndarray:
    image = _imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise AssetsError(f"cannot read object image {path}")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGRA)
    elif image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)
    if image.dtype != np.uint8:
        image = (image / 257).astype(np.uint8)
    image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    ys, xs = np.nonzero(image[:, :, 3] > ALPHA_OBJECT_THRESHOLD)
    if len(ys) == 0:
        raise AssetsError(f"object image {path} has no opaque pixel")
    image = image[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    scale = max_side / max(image.shape[:2])
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return image


def _read_rgb(path: str, max_side: int) -> np.ndarray:
    image = _imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise AssetsError(f"cannot read background image {path}")
    scale = max_side / max(image.shape[:2])
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@dataclass
class MRSlice:
    """One 2-D MR slice (uint8 grey) with its structure layers (H, W, L) int32 and object ids."""

    image: np.ndarray
    layers: np.ndarray
    objects: dict[int, ObjectInfo]


def _components(mask: np.ndarray, min_area: int) -> list[np.ndarray]:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return [labels == i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= min_area]


def mr_slice_structures(
    t1: np.ndarray, gm: np.ndarray, wm: np.ndarray, min_area: int = 80, upscale: int = 2
) -> MRSlice | None:
    """A slice of the T1 template with its structures: connected parts of white matter and grey matter
    (probability > 0.5) in layer 0 and the whole brain (GM ∪ WM, holes filled) in layer 1; None if the
    slice holds too little brain. Slices are upscaled ``upscale`` times (1 mm voxels are small)."""
    brain = (gm + wm) > 0.5
    if brain.sum() < 4 * min_area:
        return None
    lo, hi = np.percentile(t1[brain], [0.5, 99.5])
    image = np.clip((t1 - lo) / max(hi - lo, 1e-6) * 255.0, 0, 255).astype(np.uint8)
    size = (image.shape[1] * upscale, image.shape[0] * upscale)
    image = cv2.resize(image, size, interpolation=cv2.INTER_CUBIC)
    gm_u = cv2.resize(gm.astype(np.float32), size, interpolation=cv2.INTER_LINEAR) > 0.5
    wm_u = cv2.resize(wm.astype(np.float32), size, interpolation=cv2.INTER_LINEAR) > 0.5
    brain_u = cv2.resize(brain.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    layers = np.zeros((*image.shape, 2), np.int32)
    objects: dict[int, ObjectInfo] = {}
    area = min_area * upscale * upscale
    value = 0
    for tissue in (wm_u & ~gm_u, gm_u & ~wm_u):
        for part in _components(tissue, area):
            value += 1
            layers[:, :, 0][part] = value
            objects[value] = ObjectInfo(layer=0, value=value)
    filled = brain_u.astype(np.uint8)
    contours, _ = cv2.findContours(filled, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    layers[:, :, 1] = filled
    brain_id = value + 1
    objects[brain_id] = ObjectInfo(layer=1, value=1, children=[i for i in objects])
    for i in list(objects)[:-1]:
        objects[i].parent = brain_id
    return MRSlice(image, layers, objects)


def mni_split_index(depth: int) -> int:
    """The first axial slice index of the training side of the MNI volume."""
    return int(round(depth * MR_SPLIT_FRACTION))


def load_mni(paths: dict[str, str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T1, GM, WM) as float32 arrays in the files' voxel order (RAS-like: axis 2 = inferior->superior)."""
    import nibabel as nib

    return tuple(  # type: ignore[return-value]
        np.asarray(nib.load(paths[key]).get_fdata(dtype=np.float32)) for key in ("t1", "gm", "wm")
    )


def mni_slices(paths: dict[str, str], training: bool, step: int = 2) -> list[MRSlice]:
    """Axial MNI slices of the training side (``training``) or of the evaluation side of the split."""
    t1, gm, wm = load_mni(paths)
    depth = t1.shape[2]
    split = mni_split_index(depth)
    if training:
        indices = range(split + MR_SPLIT_MARGIN, depth, step)
    else:
        indices = range(0, split - MR_SPLIT_MARGIN, step)
    out = []
    for k in indices:
        # Axial slice k: rows = anterior->posterior flipped so that the front is up, columns = left-right.
        found = mr_slice_structures(t1[:, :, k].T[::-1], gm[:, :, k].T[::-1], wm[:, :, k].T[::-1])
        if found is not None:
            out.append(found)
    return out


class CompositeSource:
    """A :class:`~training.data.dataset.SampleSource` of composite scenes from an asset folder."""

    def __init__(self, root: str | Path, config: CompositeConfig | None = None) -> None:
        self.root = Path(root)
        self.config = config or CompositeConfig()
        index = self.root / ASSETS_FILE
        if not index.is_file():
            raise AssetsError(
                f"{index} not found: build the asset folder with "
                f"'python -m training.data.offline_assets --cache {self.root}'"
            )
        assets = json.loads(index.read_text())
        self.objects: list[str] = [str(self.root / p) for p in assets.get("objects", [])]
        self.backgrounds: list[str] = [str(self.root / p) for p in assets.get("backgrounds", [])]
        self.mni: dict[str, str] = {k: str(self.root / v) for k, v in (assets.get("mni") or {}).items()}
        if not self.objects or not self.backgrounds:
            raise AssetsError(f"{index}: needs at least one object and one background image")
        self._mr: list[MRSlice] | None = None

    def __len__(self) -> int:
        return self.config.scenes

    # cached per process (data-loader workers each hold their own copy)
    @staticmethod
    @lru_cache(maxsize=2048)
    def _object(path: str) -> np.ndarray:
        return _read_rgba(path, 320)

    @staticmethod
    @lru_cache(maxsize=512)
    def _background(path: str) -> np.ndarray:
        return _read_rgb(path, 640)

    def mr_slices(self) -> list[MRSlice]:
        if self._mr is None:
            self._mr = mni_slices(self.mni, training=True) if self.mni else []
        return self._mr

    def load(self, index: int, rng: np.random.Generator) -> TrainSample:
        cfg = self.config
        if cfg.medical_prob > 0 and self.mni and rng.random() < cfg.medical_prob:
            slices = self.mr_slices()
            if slices:
                mr = slices[int(rng.integers(len(slices)))]
                image = np.repeat(mr.image[:, :, None], 3, axis=2)
                return TrainSample(image, mr.layers.copy(), _copy_objects(mr.objects), [], f"mr{index}")
        canvas = self.background_crop(rng)
        instances = np.zeros(canvas.shape[:2], np.int32)
        next_id = 1
        if rng.random() < cfg.region_prob:
            for region in photo_regions(canvas, rng, cfg.max_regions):
                instances[region] = next_id
                next_id += 1
        image = canvas.astype(np.float32)
        for _ in range(int(rng.integers(1, cfg.max_objects + 1))):
            rgba = self._object(self.objects[int(rng.integers(len(self.objects)))])
            placed = self.paste(image, rgba, rng)
            if placed is not None:
                instances[placed] = next_id
                next_id += 1
        image = finish_scene(image, rng, cfg)
        objects = {i: ObjectInfo(layer=0, value=i) for i in np.unique(instances) if i > 0}
        return TrainSample(image, instances[:, :, None], objects, [], f"composite{index}")

    def background_crop(self, rng: np.random.Generator) -> np.ndarray:
        """A random crop of a random background, resized to the canvas (uint8 RGB)."""
        height, width = self.config.canvas
        photo = self._background(self.backgrounds[int(rng.integers(len(self.backgrounds)))])
        h, w = photo.shape[:2]
        side = rng.uniform(0.4, 1.0) * min(h, w)
        ch, cw = (
            int(min(h, side * height / max(height, width))),
            int(min(w, side * width / max(height, width))),
        )
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = photo[y : y + ch, x : x + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        return cv2.resize(np.ascontiguousarray(crop), (width, height), interpolation=cv2.INTER_LINEAR)

    def paste(self, image: np.ndarray, rgba: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
        """Paste a transformed cut-out into ``image`` (float32, in place); returns its full mask
        (thresholded alpha) on the canvas, or None if it fell outside."""
        cfg = self.config
        height, width = image.shape[:2]
        target = rng.uniform(*cfg.object_size) * min(height, width)
        scale = target / max(rgba.shape[:2])
        obj = cv2.resize(rgba, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        if rng.random() < 0.5:
            obj = obj[:, ::-1]
        if rng.random() < cfg.rotate_prob:
            obj = _rotate(np.ascontiguousarray(obj), rng.uniform(-cfg.max_rotation, cfg.max_rotation))
        if obj.shape[0] < 4 or obj.shape[1] < 4:
            return None
        rgb = _jitter_colour(obj[:, :, :3], rng)
        alpha = obj[:, :, 3].astype(np.float32) / 255.0
        hard = obj[:, :, 3] > ALPHA_OBJECT_THRESHOLD
        if rng.random() < cfg.soft_edge_prob:
            alpha = cv2.GaussianBlur(alpha, (0, 0), rng.uniform(0.5, 1.5))
            alpha = np.where(hard, np.maximum(alpha, 0.5), np.minimum(alpha, 0.5))
        oh, ow = hard.shape
        y = int(rng.integers(-oh // 3, max(height - 2 * oh // 3, -oh // 3 + 1)))
        x = int(rng.integers(-ow // 3, max(width - 2 * ow // 3, -ow // 3 + 1)))
        ys, xs = slice(max(y, 0), min(y + oh, height)), slice(max(x, 0), min(x + ow, width))
        oys, oxs = slice(ys.start - y, ys.stop - y), slice(xs.start - x, xs.stop - x)
        if ys.stop <= ys.start or xs.stop <= xs.start:
            return None
        if rng.random() < cfg.shadow_prob:
            dy, dx = (int(v) for v in rng.integers(-oh // 10 - 1, oh // 10 + 2, size=2))
            shadow = cv2.GaussianBlur(alpha, (0, 0), max(1.0, 0.03 * max(oh, ow)))
            shadow = np.roll(shadow, (dy, dx), axis=(0, 1))[oys, oxs]
            image[ys, xs] *= (1.0 - rng.uniform(0.25, 0.6) * shadow)[:, :, None]
        a = alpha[oys, oxs, None]
        image[ys, xs] = image[ys, xs] * (1.0 - a) + rgb[oys, oxs].astype(np.float32) * a
        mask = np.zeros((height, width), bool)
        mask[ys, xs] = hard[oys, oxs]
        return mask if mask.any() else None


def _copy_objects(objects: dict[int, ObjectInfo]) -> dict[int, ObjectInfo]:
    return {i: ObjectInfo(o.layer, o.value, o.parent, list(o.children), o.area) for i, o in objects.items()}


def _rotate(rgba: np.ndarray, degrees: float) -> np.ndarray:
    h, w = rgba.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    nw, nh = int(h * sin + w * cos) + 1, int(h * cos + w * sin) + 1
    matrix[0, 2] += nw / 2 - w / 2
    matrix[1, 2] += nh / 2 - h / 2
    return cv2.warpAffine(rgba, matrix, (nw, nh), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0, 0))


def _jitter_colour(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2HSV).astype(np.int16)
    hsv[:, :, 0] = (hsv[:, :, 0] + int(rng.integers(-8, 9))) % 180
    hsv[:, :, 1] = np.clip(hsv[:, :, 1] * rng.uniform(0.7, 1.3), 0, 255)
    hsv[:, :, 2] = np.clip(hsv[:, :, 2] * rng.uniform(0.7, 1.25) + rng.uniform(-20, 20), 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)


def photo_regions(image: np.ndarray, rng: np.random.Generator, max_regions: int) -> list[np.ndarray]:
    """Up to ``max_regions`` colour-coherent connected regions of a photo (coarse superpixels: k-means on
    Lab colour + position of a downscaled copy), each 2-35 % of the image, as boolean masks."""
    height, width = image.shape[:2]
    small = cv2.resize(image, (64, 64), interpolation=cv2.INTER_AREA)
    small = cv2.bilateralFilter(small, 5, 40, 5)
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32)
    weight = rng.uniform(0.5, 2.0)
    features = np.concatenate([lab.reshape(-1, 3), weight * np.stack([yy, xx], -1).reshape(-1, 2)], 1)
    k = int(rng.integers(4, 10))
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 10, 1.0)
    cv2.setRNGSeed(int(rng.integers(1 << 31)))
    _, labels, _ = cv2.kmeans(features, k, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    labels = labels.reshape(64, 64)
    candidates = []
    for cluster in range(k):
        for part in _components(labels == cluster, 1):
            fraction = part.mean()
            if 0.02 <= fraction <= 0.35:
                candidates.append(part)
    rng.shuffle(candidates)
    regions = []
    for part in candidates[:max_regions]:
        up = cv2.resize(part.astype(np.uint8) * 255, (width, height), interpolation=cv2.INTER_LINEAR)
        regions.append(up > 127)
    return regions


def finish_scene(image: np.ndarray, rng: np.random.Generator, cfg: CompositeConfig) -> np.ndarray:
    """Global blur / noise / grey / JPEG on the float scene -> uint8 RGB."""
    if rng.random() < cfg.blur_prob:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.4, 1.2))
    if rng.random() < cfg.noise_prob:
        image = image + rng.normal(0.0, rng.uniform(2.0, 8.0), size=image.shape).astype(np.float32)
    out = np.clip(image, 0, 255).astype(np.uint8)
    if rng.random() < cfg.gray_prob:
        out = np.repeat(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)
    if rng.random() < cfg.jpeg_prob:
        ok, data = cv2.imencode(
            ".jpg", out[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(40, 95))]
        )
        if ok:
            out = cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1]
    return np.ascontiguousarray(out)
