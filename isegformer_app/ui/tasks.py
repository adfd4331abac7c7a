"""Long file work (loading images and volumes, exports, autosaves) in a background thread.

The GUI thread starts a :class:`BackgroundTask` and gets its progress and result through queued
signals; it never waits for it. :func:`run_task` adds a window-modal progress dialog whose Cancel
sets the task's cancel flag (the work function decides where it can stop).
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QThread, Signal
from PySide6.QtWidgets import QProgressDialog, QWidget

from isegformer_app.state.annotation import AnnotationDocument
from isegformer_app.state.sidecar_location import SidecarLocator
from isegformer_app.state.snapshot import SaveOutcome
from isegformer_app.volumes import LoadCancelled
from isegformer_app.volumes.progress import ProgressCallback

# work(report, cancel) -> result; report: the ProgressCallback contract; cancel: threading.Event
Work = Callable[[ProgressCallback, threading.Event], object]


class TaskCancelled(Exception):
    """Raised by a work function that stopped because its cancel flag was set."""


class BackgroundTask(QThread):
    """Runs ``work`` once in its own thread; ``completed`` is delivered in the GUI thread. A child of its
    ``parent`` (which keeps it, and whose :func:`finish_tasks` joins it) until it has been handled."""

    progressed = Signal(float, str)
    completed = Signal(object)  # the task itself, after ``result`` / ``error`` / ``cancelled`` are set

    def __init__(self, work: Work, title: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.work, self.title = work, title
        self.cancel_event = threading.Event()
        self.result: object = None
        self.error: str | None = None
        self.exception: BaseException | None = None  # what ``error`` describes
        self.cancelled = False
        self.handled = False  # set in the GUI thread once the completion callbacks have run
        self.progress_dialog: QProgressDialog | None = None  # shown by :func:`run_task` when asked for
        self.job: _Write | None = None  # the autosave it writes, for :class:`SidecarWriter`
        self.superseded = False  # a newer write of the same file took over (:meth:`SidecarWriter.take_over`)
        self.finished.connect(self._on_finished)

    def run(self) -> None:
        try:
            self.result = self.work(self.progressed.emit, self.cancel_event)
        except (TaskCancelled, LoadCancelled):
            self.cancelled = True
        except Exception as exc:  # reported to the user; the app stays usable
            traceback.print_exc()
            self.error = f"{exc}" or type(exc).__name__
            self.exception = exc
        if self.cancel_event.is_set() and self.error is None:
            self.cancelled = True

    def cancel(self) -> None:
        self.cancel_event.set()

    def _on_finished(self) -> None:
        self.completed.emit(self)
        self.handled = True


class TaskProgress:
    """The window-modal progress dialog of a long task: follows ``advance(fraction, message)`` (the
    :data:`~isegformer_app.volumes.progress.ProgressCallback` contract) and calls ``on_cancel`` on Cancel."""

    def __init__(self, parent: QWidget, title: str, on_cancel: Callable[[], None] | None,
                 min_duration_ms: int = 300) -> None:  # fmt: skip
        self.title, self.on_cancel = title, on_cancel
        self.dialog = QProgressDialog(title, "Cancel" if on_cancel else "", 0, 1000, parent)
        self.dialog.setWindowTitle(title)
        self.dialog.setWindowModality(Qt.WindowModality.WindowModal)
        self.dialog.setMinimumDuration(min_duration_ms)
        self.dialog.setAutoClose(False)
        self.dialog.setAutoReset(False)
        if on_cancel is None:
            self.dialog.setCancelButton(None)
        else:
            self.dialog.canceled.connect(on_cancel)
        self.closed, self._depth, self._deleted = False, 0, False
        self.dialog.setValue(0)

    def advance(self, fraction: float, message: str) -> None:
        if self.closed:
            return  # a report queued before the task ended
        if message:
            self.dialog.setLabelText(f"{self.title}: {message}")
        # On a modal dialog setValue processes events, which may deliver another report (a nested call)
        # or end the task and close the dialog: its deletion then waits until the outermost call returns.
        self._depth += 1
        try:
            self.dialog.setValue(int(round(min(max(fraction, 0.0), 1.0) * 999)))
        finally:
            self._depth -= 1
        if self.closed and self._depth == 0 and not self._deleted:
            self._delete()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.on_cancel is not None:
            self.dialog.canceled.disconnect(self.on_cancel)  # closing the dialog emits ``canceled``
        self.dialog.close()
        if self._depth == 0:
            self._delete()

    def _delete(self) -> None:
        self._deleted = True
        self.dialog.deleteLater()


def run_task(parent: QWidget, title: str, work: Work, on_done: Callable[[BackgroundTask], None],
             dialog: bool = True, cancellable: bool = True, min_duration_ms: int = 300,
             keep_result: bool = True) -> BackgroundTask:  # fmt: skip
    """Start ``work`` in the background; ``on_done(task)`` runs in the GUI thread when it ends.

    With ``dialog`` a :class:`TaskProgress` dialog follows the reported fraction. Once ``on_done`` has
    run, the task lets go of ``work`` (whose closure may hold snapshots of a whole image) and, unless
    ``keep_result``, of its result (a decoded image), and its thread object is deleted; the Python
    object keeps ``result``, ``error`` and ``cancelled`` for whoever still holds it.
    """
    task = BackgroundTask(work, title, parent)
    progress = None
    if dialog:
        progress = TaskProgress(parent, title, task.cancel if cancellable else None, min_duration_ms)
        task.progress_dialog = progress.dialog
        task.progressed.connect(progress.advance)

    def finish(done: BackgroundTask) -> None:
        if progress is not None:
            progress.close()
        try:
            on_done(done)
        finally:  # let go of everything: the callbacks' closures hold documents and snapshots
            task.completed.disconnect(finish)
            if progress is not None:
                task.progressed.disconnect(progress.advance)
            done.work = None
            if not keep_result:
                done.result = None
            done.wait()  # run() has returned; the thread is ending (microseconds)
            done.deleteLater()  # no finished thread objects pile up under ``parent``

    task.completed.connect(finish)
    task.start()
    return task


def finish_tasks(parent: QWidget, cancel_titles: tuple[str, ...] = ("Open volume",)) -> None:
    """Before ``parent`` closes: cancel loads, let saves and exports run to the end, and join them, so
    nothing being written is lost and no thread outlives its window (Qt aborts on that)."""
    for task in parent.findChildren(BackgroundTask):
        if task.title in cancel_titles:
            task.cancel()
        task.wait()


@dataclass
class _Write:
    write: Callable[[object], None]
    target: Callable[[], object]
    source: Path
    on_saved: Callable[[], None]
    dialog: bool
    key: object


class SidecarWriter:
    """Background autosave writes for both modes, one at a time, in order.

    ``write(...)`` runs off the GUI thread; a write asked for while another runs waits its turn (a newer
    write of the same file replaces a waiting one, so an older snapshot never lands after a newer one).
    A write that fails because the folder beside the files cannot be written is redone once in the
    per-user folder, with one notice instead of an error box.
    """

    def __init__(self, parent: QWidget, locator: SidecarLocator,
                 inform: Callable[[str, str, bool], None]) -> None:  # fmt: skip
        self.parent, self.locator, self.inform = parent, locator, inform
        self.task: BackgroundTask | None = None
        self.waiting: dict[object, _Write] = {}  # key -> its newest waiting write
        self._when_idle: list[Callable[[], None]] = []
        self.closed = False

    @property
    def busy(self) -> bool:
        return self.task is not None or bool(self.waiting)

    def wait(self) -> None:
        """Block until every write asked for is on disk (before a synchronous save of the same file)."""
        while self.task is not None or self.waiting:
            if self.task is not None:
                self.task.wait()
                done, self.task = self.task, None
                self._finished(done)
            else:
                self._start(self.waiting.pop(next(iter(self.waiting))))
        self._run_idle_callbacks()

    def when_idle(self, callback: Callable[[], None]) -> None:
        """Run ``callback()`` in the GUI thread once every write asked for so far is done (now if none
        is): a load that reads a sidecar starts after the write of that sidecar, without blocking.
        Nothing runs once the writer is closed (the window is closing)."""
        if self.closed:
            return
        if not self.busy:
            callback()
        else:
            self._when_idle.append(callback)

    def close(self) -> None:
        """The window closes: every write asked for is written now, and loads waiting for them are dropped."""
        self._when_idle.clear()
        self.closed = True
        self.wait()

    def _run_idle_callbacks(self) -> None:
        while not self.busy and self._when_idle:
            self._when_idle.pop(0)()

    def take_over(self, key: object) -> BackgroundTask | None:
        """The caller writes ``key``'s newest state itself (e.g. a load task writing the image it
        leaves): waiting writes of it are dropped, the one in flight is not retried; returns the write
        in flight, which the caller's thread must wait for before writing."""
        if key is not None:
            self.waiting.pop(key, None)
            if self.task is not None and self.task.job is not None and self.task.job.key == key:
                self.task.superseded = True
        return self.task

    def write(self, write: Callable[[object], None], target: Callable[[], object], source: Path,
              on_saved: Callable[[], None], dialog: bool = False, key: object = None) -> None:  # fmt: skip
        """Write ``write(target())`` for the file (or folder) ``source`` in the background, after the
        one in flight; ``on_saved()`` runs in the GUI thread after success. ``key`` (default: ``source``)
        names what is written: a newer write of the same key replaces a waiting one."""
        job = _Write(write, target, source, on_saved, dialog, source if key is None else key)
        if self.task is not None:
            self.waiting[job.key] = job
            return
        self.waiting.pop(job.key, None)  # asked for before this one (from an ``on_saved``): older
        self._start(job)

    def save(self, doc: AnnotationDocument, then: Callable[[], object] | None = None,
             dialog: bool = False) -> None:  # fmt: skip
        """Autosave ``doc`` (an image or a volume) in the background if it changed: a snapshot is taken now,
        written off the GUI thread; then ``doc.saved(...)`` and ``then()`` run in the GUI thread."""
        if not doc.dirty:
            if then is not None:
                then()
            return
        snapshot = doc.snapshot()
        outcome: list[SaveOutcome] = []

        def saved() -> None:
            doc.saved(snapshot, outcome[-1])
            if outcome[-1].notice:
                self.inform("Autosave", outcome[-1].notice, False)
            if then is not None:
                then()

        self.write(lambda path: outcome.append(snapshot.write(path)),
                   lambda: snapshot.target(self.locator.folder_for(snapshot.source.parent)),
                   snapshot.source, saved, dialog, snapshot.key)  # fmt: skip

    def _start(self, job: _Write) -> None:
        path = job.target()
        task = run_task(self.parent, "Autosave", lambda report, cancel: job.write(path), self._done,
                        dialog=job.dialog, cancellable=False)  # fmt: skip
        task.job = job
        self.task = task

    def _done(self, task: BackgroundTask) -> None:
        if task is not self.task:
            return  # already handled by :meth:`wait`
        self.task = None
        self._finished(task)
        if self.task is None and self.waiting:
            self._start(self.waiting.pop(next(iter(self.waiting))))
        self._run_idle_callbacks()

    def _finished(self, task: BackgroundTask) -> None:
        job, task.job = task.job, None  # the job holds the snapshot written: let it go with this call
        if task.error is None:
            job.on_saved()
        elif self.locator.redirect_after_failure(job.source.parent, task.exception):
            self.inform("Autosave", self.locator.notices.pop(), False)
            if not task.superseded:
                self.waiting.setdefault(job.key, job)  # redone in the per-user folder
        elif not task.superseded:  # else the newer write that replaced it reports its own failure
            self.inform("Autosave", f"Could not write the autosave file: {task.error}", True)
