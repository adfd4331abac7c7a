"""What an annotation mode (images or volumes) is given by the window, and what it provides.

The window holds one :class:`Mode` per kind of data and shows one at a time (like napari's
``layer_to_controls``): clicks, saving, export and the close check go to the shown mode, which
gets its predictions from the worker itself (:class:`~isegformer_app.ui.prediction_link.PredictionLink`);
modes never reach into the window, only into the narrow :class:`WindowServices`. The document a mode
shows is an :class:`~isegformer_app.state.annotation.AnnotationDocument` (image or volume); the window
subscribes its widgets to that document's events (``show_document``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMainWindow

from isegformer_app.settings import Settings
from isegformer_app.state.annotation import AnnotationDocument
from isegformer_app.state.finetune_job import TrainingSource
from isegformer_app.state.labels import DataKind
from isegformer_app.state.sidecar_location import SidecarLocator
from isegformer_app.ui.canvas import CanvasView
from isegformer_app.ui.panels import LabelsPanel, ObjectsPanel, ViewPanel
from isegformer_app.ui.tasks import SidecarWriter
from isegformer_app.ui.worker import InferenceWorker


@dataclass
class WindowServices:
    """The parts of the window a mode may use."""

    parent: QMainWindow  # parent of dialogs, docks and background tasks
    settings: Settings
    canvas: CanvasView
    worker: InferenceWorker
    view: ViewPanel  # opacity / threshold / brush, tools
    labels: LabelsPanel  # the class given to the next finished object
    objects: ObjectsPanel
    sidecars: SidecarLocator  # where autosaves go
    writer: SidecarWriter  # background autosave writes, both modes
    inform: Callable[..., None]  # inform(title, text, error=False)
    show_busy: Callable[[bool], None]
    show_document: Callable[[AnnotationDocument | None], None]  # the widgets follow this document now
    activate: Callable[[Mode], None]  # make this mode the shown one (the other one is closed)
    remember_recent: Callable[[Path], None]
    start_dir: Callable[[], str]  # where file dialogs start
    export_dir: Callable[[], str]  # where export dialogs start (a folder we may write in)
    show_cursor: Callable[[str], None]  # the status bar's readout of what is under the cursor
    project_opened: Callable[[], None]  # a new folder or volume is shown: the window loads its labels
    actions: dict[str, QAction] = field(default_factory=dict)  # filled once the menus exist


class Mode(Protocol):
    """One kind of annotation the window can show; the window calls these and nothing else."""

    image_key: str  # the key the worker knows the shown image (or slice) by
    data_kind: DataKind  # "photos" / "volumes": which default label set a new project starts with

    @property
    def doc(self) -> AnnotationDocument | None:
        """The shown document (an image, or a volume shown slice by slice)."""

    def request_prediction(self) -> bool:
        """Send a prediction request if the current clicks need one; True if one was sent."""

    def autosave(self) -> None:
        """Timer: write the autosave in the background if something changed."""

    def save(self, then: Callable[[], object] | None = None) -> bool:
        """Write the autosave in the background now (images and volumes alike: the GUI never waits on the
        disk); ``then()`` after the write. False (with a message) if it could not start."""

    def export_dialog(self, all_images: bool = True) -> None:
        """Ask where to export, then export in the background."""

    def close_check(self, close_again: Callable[[], object]) -> bool:
        """Before the window closes: True if it may close now (``close_again`` after a background save)."""

    def labels_file(self) -> Path | None:
        """Where the shown project's (folder's, volume's) label list is kept; None when none is open."""

    def training_source(self) -> TrainingSource | None:
        """The shown project (folder of images, volume) as training data (Model > Train on this project's
        annotations); None when none is open."""

    def on_hover(self, row: float, col: float) -> None:
        """The cursor is over image pixel (row, col) of the canvas; (-1, -1) when off the image."""

    def deactivate(self) -> None:
        """Another mode is shown now: save what is unsaved and let go of the document."""
