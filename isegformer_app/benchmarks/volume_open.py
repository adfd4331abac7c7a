"""Open-time benchmark: write a synthetic CT series (shuffled file names) and time ``load_dicom``.

    python -m isegformer_app.benchmarks.volume_open [--slices 160] [--size 384] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from isegformer_app.benchmarks.dicom_write import SeriesOptions, write_dicom_series
from isegformer_app.volumes.dicom_load import load_dicom


def phantom(size: int, slices: int, seed: int = 0) -> np.ndarray:
    """int16 ``(columns, rows, slices)`` CT-like phantom: an ellipsoid of soft tissue with noise."""
    rng = np.random.default_rng(seed)
    x = np.linspace(-1, 1, size, dtype=np.float32)
    z = np.linspace(-1, 1, slices, dtype=np.float32)
    inside = (x[:, None, None] ** 2 + x[None, :, None] ** 2 / 0.8 + z[None, None, :] ** 2 / 1.5) < 0.8
    values = np.where(inside, 1064, 24).astype(np.int16)
    values += rng.integers(-20, 20, size=values.shape, dtype=np.int16)
    return values


def run(slices: int, size: int, repeats: int) -> list[float]:
    """Seconds per ``load_dicom`` call (scan + read + sort + orient) for each repeat."""
    affine = np.diag([-0.7, -0.7, 1.5, 1.0])
    affine[:3, 3] = (120.0, 130.0, -80.0)
    with tempfile.TemporaryDirectory() as folder:
        write_dicom_series(phantom(size, slices), affine, Path(folder),
                           SeriesOptions(modality="CT", intercept=-1024.0))
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            volume = load_dicom(folder)
            times.append(time.perf_counter() - start)
            if volume.shape != (slices, size, size):
                raise RuntimeError(f"unexpected shape {volume.shape}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=160)
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    times = run(args.slices, args.size, args.repeats)
    print(f"open {args.slices} slices of {args.size}x{args.size}: "
          + ", ".join(f"{t:.2f}" for t in times) + f" s (best {min(times):.2f} s)")


if __name__ == "__main__":
    main()
