"""What the checks on files we did not write cost, and what they prevent (issue 23).

    python -m isegformer_app.benchmarks.trust_checks

* Hostile checkpoints: a real segformer_b0 file whose config asks for ``embed_dims`` 20000, a million
  layers, or negative sizes: the time to the :class:`CheckpointError` and the growth of the peak resident
  memory (each case in a fresh process).
* Export: the per-image cost of checking an autosave against its image (decode + digest) for a 12 MP PNG.
* Volumes: the digest of a 256×512×512 volume (computed once, in the loading thread).
* Two instances: writing a 4096² image's autosave with 5 objects when another instance saved 5 of its own
  meanwhile (read + merge + write), against a plain write.
* Gantry tilt: the share of the written pixels of a 12° series (16 slices of 64², 5 mm) that the grid holds.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_HOSTILE = """
import resource, sys, time, torch
from model.build import build_model
from model.checkpoint import CheckpointError, _OriginalPickleModule, _RestrictedPickleModule, load_checkpoint
from model.checkpoint import save_checkpoint
folder, group, key, value = sys.argv[1], sys.argv[2], sys.argv[3], eval(sys.argv[4])
save_checkpoint(build_model("segformer_b0"), f"{folder}/b0.pth")
raw = torch.load(f"{folder}/b0.pth", weights_only=False, pickle_module=_RestrictedPickleModule)
raw["config"]["params"][group]["value"][key] = value
torch.save(raw, f"{folder}/bad.pth", pickle_module=_OriginalPickleModule)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
try:
    load_checkpoint(f"{folder}/bad.pth")
    outcome = "loaded"
except CheckpointError:
    outcome = "CheckpointError"
except BaseException as exc:
    outcome = type(exc).__name__
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
print(f"{time.perf_counter() - start:.2f} {grown:.0f} {outcome}")
"""


def hostile_checkpoints(folder: Path) -> list[tuple[str, str]]:
    cases = {"embed_dims 20000": ("backbone_params", "embed_dims", "20000"),
             "10^6 layers": ("backbone_params", "num_layers", "[10**6, 2, 2, 2]"),
             "embed_dims -32": ("backbone_params", "embed_dims", "-32"),
             "head channels -256": ("decode_head_params", "channels", "-256")}  # fmt: skip
    rows = []
    for name, args in cases.items():
        run = subprocess.run([sys.executable, "-c", _HOSTILE, str(folder), *args], capture_output=True,
                             text=True, timeout=600)  # fmt: skip
        failed = ("?", "?", run.stderr[-80:])
        seconds, grown, outcome = run.stdout.split()[-3:] if run.returncode == 0 else failed
        rows.append((name, f"{outcome} after {seconds} s, peak memory +{grown} MiB"))
    return rows


def export_check(folder: Path) -> float:
    from PIL import Image

    from isegformer_app.state.imageio import load_image

    path = folder / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (3000, 4000, 3), dtype=np.uint8)).save(path)
    start = time.perf_counter()
    digest = load_image(path).digest  # what item_from_sidecar adds per image
    assert len(digest) == 64
    return time.perf_counter() - start


def volume_digest() -> float:
    from isegformer_app.volumes.geometry import SourceGeometry, display_transform
    from isegformer_app.volumes.volume import Volume

    voxels = np.random.default_rng(0).random((256, 512, 512), dtype=np.float32)
    source = SourceGeometry(kind="nifti", path=Path("x.nii"), shape=(512, 512, 256), affine=np.eye(4),
                            to_display=display_transform(np.eye(4)))  # fmt: skip
    volume = Volume(voxels=voxels, affine=np.eye(4), source=source)
    start = time.perf_counter()
    digest = volume.digest
    assert len(digest) == 64
    return time.perf_counter() - start


def merge_write(folder: Path) -> tuple[float, float]:
    from PIL import Image

    from isegformer_app.state.autosave import save_document
    from isegformer_app.state.document import Document
    from isegformer_app.state.imageio import load_image
    from model.prediction import Prediction

    Image.fromarray(np.zeros((4096, 4096, 3), np.uint8)).save(folder / "big.png")
    image = load_image(folder / "big.png")

    def annotated(offset: int) -> Document:
        doc = Document(image)
        for i in range(5):
            prob = np.zeros(doc.shape, np.float32)
            prob[offset + 300 * i: offset + 300 * i + 200, 100:3000] = 1.0
            doc.add_click(offset + 300 * i + 100, 200, True)
            doc.set_prediction(list(doc.clicks), Prediction.of(prob))
            doc.finish_object("object", (200, 0, 0))
        return doc

    first, second = annotated(0), annotated(1600)
    sidecar = folder / "big.png.isegformer.npz"
    start = time.perf_counter()
    save_document(first, sidecar)
    plain = time.perf_counter() - start
    start = time.perf_counter()
    outcome = save_document(second, sidecar)
    merged = time.perf_counter() - start
    assert len(outcome.merged) == 5
    return plain, merged


def tilt_coverage(folder: Path) -> float:
    import pydicom

    from isegformer_app.benchmarks.dicom_write import SeriesOptions, write_dicom_series
    from isegformer_app.volumes import load_dicom

    affine = np.diag([1.0, 1.0, 5.0, 1.0])
    affine[1, 2] = 5.0 * np.tan(np.radians(12.0))
    paths = write_dicom_series(np.ones((64, 64, 16), np.int16), affine, folder / "tilt", SeriesOptions())
    volume = load_dicom(folder / "tilt")
    inside = total = 0
    for path in paths:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        position = np.array([float(v) for v in ds.ImagePositionPatient])
        orientation = np.array([float(v) for v in ds.ImageOrientationPatient])
        rows, columns = np.mgrid[0:ds.Rows, 0:ds.Columns]
        lps = position + columns[..., None] * float(ds.PixelSpacing[1]) * orientation[:3] \
            + rows[..., None] * float(ds.PixelSpacing[0]) * orientation[3:]  # fmt: skip
        ras = lps.reshape(-1, 3) * np.array([-1.0, -1.0, 1.0])
        index = np.array([volume.world_to_index(p) for p in ras])
        inside += int(np.all((index > -0.5) & (index < np.array(volume.shape) - 0.5), axis=1).sum())
        total += len(index)
    return inside / total


def main() -> None:
    import platform

    cpu = platform.processor() or platform.machine()
    print(f"# trust checks — {cpu}, {__import__('os').cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, text in hostile_checkpoints(folder):
            print(f"hostile checkpoint, {name}: {text}")
        print(f"export: autosave checked against a 12 MP PNG (decode + digest): {export_check(folder):.2f} s")
        print(f"volume digest, 256x512x512 float32: {volume_digest():.2f} s")
        plain, merged = merge_write(folder)
        print(f"4096² autosave, 5 objects: plain write {plain:.2f} s; "
              f"merging another instance's 5: {merged:.2f} s")
        print(f"12° gantry tilt: written pixels held by the grid: {100 * tilt_coverage(folder):.1f} %")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory of this process: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
