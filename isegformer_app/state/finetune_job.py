"""Training on the open project's annotations (Model > Train on this project's annotations…), Qt-free.

The open project — a folder of images (:func:`image_folder_source`) or a volume (:func:`volume_source`)
— is a :class:`TrainingSource`: its model folder, its name and a copy of its finished objects. The window
runs :func:`prepare_training` off the GUI thread (it exports those objects, one image or annotated slice
each, to a run folder in the model folder), then starts :func:`training_command` as a separate process
and feeds its output to a :class:`TrainingMonitor`; at the end :func:`install_model` moves the new model
and its card into the model folder, which the Model menu offers whenever the project is open and which
the next run starts from. The process is the same ``isegformer-train finetune`` job as the command
line's (:mod:`training.finetune`).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from isegformer_app.state.export import ExportItem, ExportObject, SkippedImage, export_items
from isegformer_app.state.labels import LabelList
from isegformer_app.state.project import Project
from isegformer_app.state.volume_document import VolumeDocument, VolumeObject
from isegformer_app.state.volume_sidecar import volume_stem
from isegformer_app.volumes import Volume
from isegformer_app.volumes.progress import CancelFlag, ProgressCallback
from isegformer_app.volumes.slice_export import safe_name
from training.config import FinetuneConfig
from training.finetune_events import CARD_FILE, RESULT_FILE, FinetuneEvent

MODEL_FOLDER = "finetuned"
VOLUME_MODELS_FOLDER = "finetuned-volumes"
MODEL_FILE = "model.pth"
RUN_PREFIX = "run-"


class TrainingInputError(ValueError):
    """The project cannot be trained on (too few finished objects); nothing was started."""


def model_folder(autosave_folder: Path, volume: str = "") -> Path:
    """Where a project's fine-tuned models go, beside its autosaves (``autosave_folder``): ``finetuned/``
    for a folder of images, ``finetuned-volumes/<volume>/`` for a volume (``volume``: its
    :func:`volume_stem` without the frame, so the frames of a 4-D file share one)."""
    return autosave_folder / VOLUME_MODELS_FOLDER / volume if volume else autosave_folder / MODEL_FOLDER


def installed_model(folder: Path) -> Path | None:
    """The fine-tuned model in a model folder, or None when it has none yet."""
    path = folder / MODEL_FILE
    return path if path.is_file() else None


class ItemPlan(Protocol):
    """The finished objects of a project, copied on the GUI thread; ``collect()`` may run off it."""

    def collect(self) -> tuple[list[ExportItem], list[SkippedImage]]: ...


@dataclass(frozen=True)
class TrainingSource:
    """The open project as training data: ``folder`` (its :func:`model_folder`), ``name`` (in model
    cards) and ``copy_objects()`` (on the GUI thread: its finished objects as they are now)."""

    folder: Path
    name: str
    copy_objects: Callable[[], ItemPlan]
    kind: str = "project"  # in messages: "project" (a folder of images) or "volume"
    unit: str = "image"  # what one exported picture is: an "image" or a "slice"
    counted: str = ""  # how objects are counted, when not one per finished object

    @property
    def model_path(self) -> Path | None:
        """The project's own fine-tuned model (offered in the Model menu, the start of the next run)."""
        return installed_model(self.folder)


def project_name(project: Project) -> str:
    """The name of a project in model cards: its folder, or its one image."""
    return project.paths[0].parent.name if len(project.paths) > 1 else project.paths[0].name


def image_folder_source(project: Project) -> TrainingSource:
    """An open folder of images: the finished objects of every image (the open one from memory)."""
    return TrainingSource(model_folder(project.sidecar_for(project.paths[0]).parent), project_name(project),
                          lambda: project.export_plan(all_images=True))  # fmt: skip


@dataclass
class VolumeSlicePlan:
    """The finished objects of a volume on the slices they were annotated on, in those slices' planes.

    ``label_slices``: (axis, index) -> the label slice (a copy); ``objects``: per slice, the objects
    annotated there. :meth:`collect` makes one item per slice: its image is ``Volume.slice_image`` — the
    predictor's input (the volume's default window, 0..255 RGB) on the voxel grid the predictor gets; the
    canvas only stretches it by the voxel spacing — and its masks are those objects' pixels."""

    volume: Volume
    stem: str
    label_slices: dict[tuple[str, int], np.ndarray]
    objects: dict[tuple[str, int], list[VolumeObject]]

    @classmethod
    def of(cls, doc: VolumeDocument) -> VolumeSlicePlan:
        """Copy the finished objects' annotated slices of ``doc`` (on the GUI thread). The active object
        is not finished; objects without annotated slices (imported from a label file, or finished before
        slices were recorded) are left out."""
        finished = [o for o in doc.object_list if o.uid != doc.active and o.uid in doc.finished_slices]
        objects: dict[tuple[str, int], list[VolumeObject]] = {}
        for o in finished:
            copy = replace(o)  # renaming it later changes nothing here
            for ref in doc.finished_slices[o.uid]:
                objects.setdefault(ref, []).append(copy)
        label_slices = {ref: doc.label_slice(*ref) for ref in objects}
        return cls(doc.volume, safe_name(volume_stem(doc.path, doc.volume)), label_slices, objects)

    def collect(self) -> tuple[list[ExportItem], list[SkippedImage]]:
        items = []
        for (axis, index), label_slice in sorted(self.label_slices.items()):
            masks = [(o, label_slice == o.uid) for o in self.objects[axis, index]]
            objects = [ExportObject(o.label, o.color, mask) for o, mask in masks if mask.any()]
            if objects:
                name = Path(f"{self.stem}_{axis}_{index:04d}.png")
                image = partial(self.volume.slice_image, axis, index)
                items.append(ExportItem(name, label_slice.shape, objects, make_image=image))
        return items, []


def volume_source(doc: VolumeDocument, autosave_folder: Path) -> TrainingSource:
    """An open volume (its autosave lives in ``autosave_folder``): the finished objects on the slices they
    were annotated on (:class:`VolumeSlicePlan`)."""
    stem = volume_stem(doc.path, doc.volume, with_frame=False)
    return TrainingSource(model_folder(autosave_folder, stem), doc.path.name, lambda: VolumeSlicePlan.of(doc),
                          "volume", "slice", " on annotated slices (one per object and slice)")  # fmt: skip


@dataclass
class TrainingRequest:
    """One training run: the exported data, the run folder and the job's arguments."""

    data_dir: Path
    run_dir: Path
    model_dir: Path  # the project's model folder: where the result goes
    weights: Path | None  # None: the bundled network
    project: str
    objects: int
    images: int  # exported pictures: images, or slices of a volume
    max_minutes: float = FinetuneConfig.max_minutes
    unfreeze_all: bool = False
    config: str = "finetune"  # the shipped configuration, or a TOML file of one's own
    unit: str = "image"  # what one exported picture is: an "image" or a "slice"


def prepare_training(
    plan: ItemPlan,
    source: TrainingSource,
    weights: Path | None,
    labels: LabelList,
    report: ProgressCallback | None = None,
    cancel: CancelFlag | None = None,
    min_objects: int = FinetuneConfig.min_objects,
) -> TrainingRequest:
    """Export the finished objects of a project (``plan``: ``source.copy_objects()``, made on the GUI
    thread) into a new run folder under ``source.folder``; safe off the GUI thread.

    ``weights``: the model to start from (None = the bundled network); the caller passes the project's
    own fine-tuned model when it has one, so a second run continues from it. Raises
    :class:`TrainingInputError` with the numbers when there are fewer than ``min_objects`` finished
    objects or fewer than two images (slices) with objects (one is held out)."""
    items, _skipped = plan.collect()
    items = [item for item in items if item.objects]
    objects = sum(len(item.objects) for item in items)
    _check_enough(objects, len(items), source, min_objects)
    folder = source.folder
    folder.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=RUN_PREFIX + time.strftime("%Y%m%d-%H%M%S-"), dir=folder))
    try:
        export_items(items, run_dir / "data", labels, report, cancel)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return TrainingRequest(run_dir / "data", run_dir / "output", folder, weights, source.name, objects,
                           len(items), unit=source.unit)  # fmt: skip


def _check_enough(objects: int, pictures: int, source: TrainingSource, min_objects: int) -> None:
    """Refuse (:class:`TrainingInputError`) too few objects, or objects in fewer than 2 images or slices."""
    if objects < min_objects:
        raise TrainingInputError(
            f"This {source.kind} has {objects} finished object{'s' if objects != 1 else ''}{source.counted}; "
            f"training needs at least {min_objects}. Finish more objects, then try again."
        )
    if pictures < 2:
        raise TrainingInputError(
            f"All {objects} finished objects are in one {source.unit}; training needs objects in at least 2 "
            f"{source.unit}s (one is held out to measure the result)."
        )


def child_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the training process: this installation's packages first on its path."""
    env = dict(os.environ if base is None else base)
    spec = importlib.util.find_spec("training")
    if spec is not None and spec.origin:
        root = str(Path(spec.origin).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    # one core stays with the window's inference, so clicking keeps working while training runs
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) - 1)))
    return env


def training_command(request: TrainingRequest, device: str = "") -> list[str]:
    """The process to run: ``python -m training.train finetune …`` with JSON progress lines."""
    command = [sys.executable, "-m", "training.train", request.config, "--data-root", str(request.data_dir),
               "--output", str(request.run_dir), "--max-minutes", f"{request.max_minutes:g}",
               "--project", request.project, "--events", "--no-progress"]  # fmt: skip
    if request.weights is not None:
        command += ["--weights", str(request.weights)]
    if request.unfreeze_all:
        command.append("--unfreeze-all")
    if device:
        command += ["--device", device]
    return command


def clock(seconds: float) -> str:
    """``125`` -> ``"2:05"``."""
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"


@dataclass
class TrainingMonitor:
    """Reads the job's output as it comes and tells where it stands."""

    pending: str = ""
    last_step: FinetuneEvent | None = None
    phase: str = "starting"
    result: dict[str, Any] | None = None
    error: str = ""
    other_output: list[str] = field(default_factory=list)  # the last lines that were not events

    def feed(self, text: str) -> bool:
        """Take a chunk of the job's output; True when something shown changed."""
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        changed = False
        for line in lines:
            event = FinetuneEvent.from_line(line)
            if event is None:
                if line.strip():
                    self.other_output = (self.other_output + [line.strip()])[-20:]
                continue
            changed = True
            if event.kind == "step":
                self.last_step = event
                self.phase = "training"
            elif event.kind == "phase":
                self.phase = event.message
            elif event.kind == "done":
                self.result = event.result
            elif event.kind == "error":
                self.error = event.message
        return changed

    def status_text(self) -> str:
        """E.g. ``"training · 1,240 samples · loss 0.213 · 1:02 elapsed · 3:58 left"``."""
        step = self.last_step
        if step is None or self.phase != "training":
            return self.phase
        return (f"training · {step.samples:,} samples · loss {step.loss:.3f} · {clock(step.elapsed_s)} "
                f"elapsed · {clock(step.remaining_s)} left")  # fmt: skip

    def fraction(self) -> float:
        """Share of the training budget used (0 before the first step)."""
        step = self.last_step
        if step is None:
            return 0.0
        total = step.elapsed_s + step.remaining_s
        return min(1.0, step.elapsed_s / total) if total > 0 else 1.0

    def outcome(self, exit_code: int, crashed: bool, cancelled: bool) -> str:
        """What to tell the user once the process has ended ("" when it finished with a result)."""
        if cancelled:
            return "Training cancelled; the active model is unchanged."
        if self.result is not None and exit_code == 0 and not crashed:
            return ""
        if self.error:
            return f"Training stopped: {self.error}"
        if crashed or exit_code < 0:
            return ("The training process ended unexpectedly (it was killed or crashed); the active "
                    "model is unchanged.")  # fmt: skip
        detail = self.other_output[-1] if self.other_output else f"exit code {exit_code}"
        return f"Training failed ({detail}); the active model is unchanged."


def install_model(request: TrainingRequest) -> Path:
    """Move the run's model and its card into the project's model folder (the run folder lies inside it,
    so each is a rename, no copy); returns the model's path. The model goes last, so a new ``model.pth``
    never appears before its card; when a rename fails (OSError, e.g. a full disk) the earlier card is put
    back and the error raised: the earlier model stays, with its own card. The run folder is left for
    :func:`discard_run` (off the GUI thread: it holds the exported images)."""
    folder = request.model_dir
    checkpoint = request.run_dir / "checkpoints" / "last_checkpoint.pth"
    sources = {RESULT_FILE: request.run_dir / RESULT_FILE, CARD_FILE: request.run_dir / CARD_FILE}
    sources[MODEL_FILE] = checkpoint  # last: the model appears once its card is in place
    earlier = request.run_dir / "earlier"  # the earlier card, until the new model is in place
    earlier.mkdir(exist_ok=True)
    installed: list[Path] = []
    try:
        for name, source in sources.items():
            target = folder / name
            if name != MODEL_FILE and target.exists():
                os.replace(target, earlier / name)
            os.replace(source, target)
            installed.append(target)
    except OSError:
        for target in installed:
            target.unlink(missing_ok=True)
        for kept in earlier.iterdir():
            os.replace(kept, folder / kept.name)
        raise
    return folder / MODEL_FILE


def discard_run(request: TrainingRequest) -> None:
    """Remove a run's folder (its exported data and outputs)."""
    shutil.rmtree(request.run_dir.parent, ignore_errors=True)
