"""Training on the open project's annotations (Model > Train on this project's annotations…), Qt-free.

The window runs :func:`prepare_training` off the GUI thread (it exports the finished objects to a run
folder beside the project's autosaves), then starts :func:`training_command` as a separate process and
feeds its output to a :class:`TrainingMonitor`; at the end :func:`install_model` copies the new model and
its card to :func:`project_model_path`, which the Model menu offers whenever the project is open and
which the next run starts from. The process is the same ``isegformer-train finetune`` job as the
command line's (:mod:`training.finetune`).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isegformer_app.state.export import ExportPlan, export_items
from isegformer_app.state.labels import LabelList
from isegformer_app.state.project import Project
from isegformer_app.volumes.progress import CancelFlag, ProgressCallback
from training.config import FinetuneConfig
from training.finetune_events import CARD_FILE, RESULT_FILE, FinetuneEvent

MODEL_FOLDER = "finetuned"
MODEL_FILE = "model.pth"
RUN_PREFIX = "run-"


class TrainingInputError(ValueError):
    """The project cannot be trained on (too few finished objects); nothing was started."""


def model_folder(project: Project) -> Path:
    """The project's folder of fine-tuned models, beside its autosaves."""
    return project.sidecar_for(project.paths[0]).parent / MODEL_FOLDER


def project_model_path(project: Project) -> Path | None:
    """The project's fine-tuned model, or None when it has none yet."""
    path = model_folder(project) / MODEL_FILE
    return path if path.is_file() else None


@dataclass
class TrainingRequest:
    """One training run: the exported data, the run folder and the job's arguments."""

    data_dir: Path
    run_dir: Path
    model_dir: Path  # the project's model folder: where the result goes
    weights: Path | None  # None: the bundled network
    project: str
    objects: int
    images: int
    max_minutes: float = FinetuneConfig.max_minutes
    unfreeze_all: bool = False
    config: str = "finetune"  # the shipped configuration, or a TOML file of one's own


def project_name(project: Project) -> str:
    """The name of a project in model cards: its folder, or its one image."""
    return project.paths[0].parent.name if len(project.paths) > 1 else project.paths[0].name


def prepare_training(
    plan: ExportPlan,
    folder: Path,
    name: str,
    weights: Path | None,
    labels: LabelList,
    report: ProgressCallback | None = None,
    cancel: CancelFlag | None = None,
    min_objects: int = FinetuneConfig.min_objects,
) -> TrainingRequest:
    """Export the finished objects of a project (``plan``: :meth:`Project.export_plan`, made on the GUI
    thread) into a new run folder under ``folder`` (:func:`model_folder`); safe off the GUI thread.

    ``weights``: the model to start from (None = the bundled network); the caller passes the project's
    own fine-tuned model when it has one, so a second run continues from it. Raises
    :class:`TrainingInputError` with the numbers when there are fewer than ``min_objects`` finished
    objects or fewer than two images with objects (one is held out)."""
    items, _skipped = plan.collect()
    items = [item for item in items if item.objects]
    objects = sum(len(item.objects) for item in items)
    if objects < min_objects:
        raise TrainingInputError(
            f"This project has {objects} finished object{'s' if objects != 1 else ''}; training needs "
            f"at least {min_objects}. Finish more objects, then try again."
        )
    if len(items) < 2:
        raise TrainingInputError(
            f"All {objects} finished objects are in one image; training needs objects in at least 2 "
            "images (one is held out to measure the result)."
        )
    folder.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=RUN_PREFIX + time.strftime("%Y%m%d-%H%M%S-"), dir=folder))
    try:
        export_items(items, run_dir / "data", labels, report, cancel)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return TrainingRequest(run_dir / "data", run_dir / "output", folder, weights, name, objects, len(items))


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
    so each is one atomic rename, no copy); returns the model's path. OSError leaves the earlier model.
    The run folder is left for :func:`discard_run` (off the GUI thread: it holds the exported images)."""
    folder = request.model_dir
    checkpoint = request.run_dir / "checkpoints" / "last_checkpoint.pth"
    sources = {RESULT_FILE: request.run_dir / RESULT_FILE, CARD_FILE: request.run_dir / CARD_FILE}
    sources[MODEL_FILE] = checkpoint  # last: the model appears once its card is in place
    for name, source in sources.items():
        os.replace(source, folder / name)
    return folder / MODEL_FILE


def discard_run(request: TrainingRequest) -> None:
    """Remove a run's folder (its exported data and outputs)."""
    shutil.rmtree(request.run_dir.parent, ignore_errors=True)
