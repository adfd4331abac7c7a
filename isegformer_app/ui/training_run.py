"""Model > Train on this project's annotations…: the dialog of one training run.

The training is a separate process (``python -m training.train finetune``, a :class:`QProcess`): the GUI
process only reads its progress lines, so the window stays responsive and clicking keeps working. Cancel
kills the process at once; the active model never changes until "Use the new model". The logic lives in
:mod:`isegformer_app.state.finetune_job`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from PySide6.QtCore import QProcess, QProcessEnvironment
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from isegformer_app.state.finetune_job import (
    TrainingInputError,
    TrainingMonitor,
    TrainingRequest,
    TrainingSource,
    child_environment,
    discard_run,
    install_model,
    prepare_training,
    training_command,
)
from isegformer_app.state.labels import LabelList
from isegformer_app.ui.model_control import ModelControl
from isegformer_app.ui.modes import Mode
from isegformer_app.ui.tasks import run_task
from training.finetune_events import comparison_rows

TITLE = "Train on this project's annotations"


class TrainingHost(Protocol):
    """What a training run needs of the window: the shown mode (its open folder of images or volume), the
    models, the labels, messages."""

    models: ModelControl
    labels: LabelList
    mode: Mode

    def inform(self, title: str, text: str, error: bool = False) -> None: ...


class ProjectTraining:
    """The Model menu's training entries of one window and the dialog of its run (one at a time)."""

    def __init__(self, parent: QWidget, host: TrainingHost) -> None:
        self.parent, self.host = parent, host
        self.dialog: TrainingDialog | None = None

    def source(self) -> TrainingSource | None:
        """The open project (folder of images or volume) as training data; None when none is open."""
        return self.host.mode.training_source()

    def own_model(self) -> Path | None:
        """The open project's own fine-tuned model (None: none yet, or nothing open)."""
        source = self.source()
        return source.model_path if source is not None else None

    def start_model(self, source: TrainingSource) -> Path | None:
        """The model a new run starts from: the project's fine-tuned one, else the active network (None:
        the bundled network, e.g. while a classical engine is active)."""
        host = self.host
        own = source.model_path
        if own is not None:
            return own
        kind, value = host.models.active
        if kind == "checkpoint":
            return Path(value)
        return host.models.networks.get(value) if kind == "engine" else None

    def start(self) -> None:
        """Check and export the project's annotations in the background, then start the run's dialog."""
        running = self.dialog
        if running is not None and running.running:
            running.show()
            running.raise_()
            return
        host, source = self.host, self.source()
        if source is None:
            host.inform(TITLE, "Open a folder of images or a volume first.", error=True)
            return
        plan = source.copy_objects()  # the open document's objects as they are now
        weights = self.start_model(source)
        labels = LabelList.from_json(host.labels.to_json())

        def work(report, cancel) -> TrainingRequest:
            return prepare_training(plan, source, weights, labels, report, cancel)

        def prepared(task) -> None:
            if task.cancelled:
                return
            if task.error is not None:
                kind = isinstance(task.exception, TrainingInputError)
                why = task.error if kind else f"Could not prepare the training data: {task.error}"
                host.inform(TITLE, why, error=True)
                return
            self.dialog = TrainingDialog(self.parent, host, task.result)
            self.dialog.show()

        run_task(self.parent, "Preparing the training data", work, prepared)

    def use_project_model(self) -> None:
        """Model > Use this project's fine-tuned model."""
        path = self.own_model()
        if path is None:
            self.host.inform(TITLE, "This project has no fine-tuned model yet.", error=True)
            return
        self.host.models.load_checkpoint(path)

    def add_actions(self, menu: QMenu, actions: dict[str, QAction]) -> None:
        """The Model menu's entries: train on the project, use the project's fine-tuned model (enabled
        whenever the open project has one)."""
        train = QAction("&Train on this project's annotations…", self.parent)
        train.setStatusTip("Fine-tune the network on the finished objects of this folder or volume (a "
                           "background process)")  # fmt: skip
        train.triggered.connect(lambda checked=False: self.start())
        own = QAction("Use this project's &fine-tuned model", self.parent)
        own.triggered.connect(lambda checked=False: self.use_project_model())
        menu.aboutToShow.connect(lambda: own.setEnabled(self.own_model() is not None))
        for key, action in (("train_project", train), ("project_model", own)):
            menu.addAction(action)
            actions[key] = action

    def confirm_close(self) -> bool:
        """The window is closing: while a run goes on, ask; True (after cancelling it) to close."""
        dialog = self.dialog
        if dialog is None or not dialog.running:
            return True
        question = "A training run is still going on. Cancel it and quit?"
        answer = QMessageBox.question(self.parent, TITLE, question)
        if answer != QMessageBox.StandardButton.Yes:
            return False
        dialog.cancel()
        dialog.process.waitForFinished(3000)
        return True


class TrainingDialog(QDialog):
    """Progress (samples, loss, elapsed and remaining time), Cancel, then the before/after table and
    "Use the new model"."""

    def __init__(self, parent: QWidget, host: TrainingHost, request: TrainingRequest) -> None:
        super().__init__(parent)
        self.host, self.request = host, request
        self.monitor = TrainingMonitor()
        self.cancelled = False
        self.running = True
        self.model_path: Path | None = None
        self.setWindowTitle(TITLE)
        start = request.weights.name if request.weights else "the bundled network"
        self.summary = QLabel(f"{request.objects} finished objects in {request.images} {request.unit}s; "
                              f"starting from {start}; at most {request.max_minutes:g} minutes.")  # fmt: skip
        self.status = QLabel("starting the training process…")
        self.status.setObjectName("training_status")
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["held-out part", "before", "after"])
        self.table.hide()
        self.buttons = QDialogButtonBox()
        self.cancel_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        self.cancel_button.clicked.connect(self.cancel)
        self.use_button = QPushButton("Use the new model")
        self.use_button.clicked.connect(self.use_new_model)
        self.use_button.hide()
        self.buttons.addButton(self.use_button, QDialogButtonBox.ButtonRole.AcceptRole)
        layout = QVBoxLayout(self)
        for widget in (self.summary, self.status, self.bar, self.table, self.buttons):
            layout.addWidget(widget)
        self.resize(520, 200)

        command = training_command(request, "cuda" if host.models.device == "cuda" else "")
        self.process = QProcess(self)
        environment = QProcessEnvironment()
        for key, value in child_environment().items():
            environment.insert(key, value)
        self.process.setProcessEnvironment(environment)
        self.process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        self.process.readyReadStandardOutput.connect(self._read)
        self.process.finished.connect(self._finished)
        self.process.errorOccurred.connect(self._error)
        self.process.start(command[0], command[1:])

    def _read(self) -> None:
        text = bytes(self.process.readAllStandardOutput()).decode("utf-8", "replace")
        if self.monitor.feed(text):
            self.status.setText(self.monitor.status_text())
            self.bar.setValue(int(self.monitor.fraction() * 1000))

    def _error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self.running = False
            self._end(f"The training process could not start: {self.process.errorString()}")

    def cancel(self) -> None:
        """Stop the run now (the process is killed); the active model stays."""
        if not self.running:
            self.close()
            return
        self.cancelled = True
        self.status.setText("cancelling…")
        self.process.kill()

    def _finished(self, exit_code: int, status: QProcess.ExitStatus) -> None:
        self._read()
        self.running = False
        crashed = status == QProcess.ExitStatus.CrashExit
        message = self.monitor.outcome(exit_code, crashed and not self.cancelled, self.cancelled)
        if not message:
            try:
                self.model_path = install_model(self.request)
            except OSError as exc:
                message = f"Could not save the new model ({exc}); the active model is unchanged."
        request = self.request
        run_task(self, "Removing the training data", lambda _report, _cancel: discard_run(request),
                 lambda _task: None, dialog=False, cancellable=False)  # fmt: skip
        if message:
            self._end(message)
            return
        result = self.monitor.result or {}
        self._end(f"Done: {result.get('minutes', 0):.1f} min, {result.get('samples', 0):,} samples. "
                  f"Saved as {self.model_path}.", succeeded=True)  # fmt: skip
        rows = comparison_rows(result)
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                self.table.setItem(r, c, QTableWidgetItem(text))
        self.table.show()
        self.use_button.show()
        self.resize(520, 420)

    def _end(self, message: str, succeeded: bool = False) -> None:
        self.status.setText(message)
        self.bar.setValue(1000 if succeeded else 0)
        self.cancel_button.setText("Close")
        self.host.inform(TITLE, message.splitlines()[0])

    def use_new_model(self) -> None:
        if self.model_path is not None:
            self.host.models.load_checkpoint(self.model_path)
        self.close()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        if self.running:
            self.cancel()
        super().closeEvent(event)
