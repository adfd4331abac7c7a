"""Menus, actions and their shortcuts (shortcuts come from the settings), the Help menu."""

from __future__ import annotations

import platform
import re
from collections.abc import Callable
from html import escape
from typing import Protocol

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QMenu,
    QMenuBar,
    QMessageBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from isegformer_app.settings import Settings
from isegformer_app.state.labels import LABEL_PRESETS
from isegformer_app.ui.canvas import MOUSE_BINDINGS, CanvasView
from isegformer_app.ui.model_control import ModelControl
from isegformer_app.ui.panels import ObjectsPanel, ViewPanel
from isegformer_app.ui.qt_actions import new_action
from isegformer_app.ui.training_run import ProjectTraining
from isegformer_app.ui.volume_actions import add_volume_actions
from isegformer_app.ui.volume_mode import VolumeMode


class MenuHost(Protocol):
    """What the menus need of the main window: its parts, and the slots the actions call."""

    settings: Settings
    canvas: CanvasView
    view_panel: ViewPanel
    objects_panel: ObjectsPanel
    models: ModelControl
    volume: VolumeMode
    training: ProjectTraining
    recent_menu: QMenu  # the window's File > Open recent (filled from the settings)
    open_image_dialog: Callable[[], None]
    open_folder_dialog: Callable[[], None]
    previous_image: Callable[[], None]
    next_image: Callable[[], None]
    save_now: Callable[[], bool]
    export_dialog: Callable[..., None]
    undo: Callable[[], None]
    redo: Callable[[], None]
    finish_object: Callable[[], None]
    reset_clicks: Callable[[], None]
    mark_no_objects: Callable[[], None]
    make_labels_default: Callable[[], None]
    use_label_preset: Callable[[str], None]
    load_checkpoint_dialog: Callable[[], None]
    set_device: Callable[[str], None]
    show_shortcuts: Callable[[], None]
    show_about: Callable[[], None]

    def menuBar(self) -> QMenuBar: ...  # noqa: N802 (Qt name)

    def addAction(self, action: QAction) -> None: ...  # noqa: N802 (Qt name)

    def close(self) -> bool: ...


def build_menus(window: MenuHost) -> dict[str, QAction]:
    """Create the menu bar of ``window``; returns the actions by name."""
    a: dict[str, QAction] = {}
    bar = window.menuBar()

    def _action(text: str, slot, shortcut_key: str = "", tip: str = "") -> QAction:
        return new_action(window, window.settings.shortcuts, text, slot, shortcut_key, tip)

    file_menu = bar.addMenu("&File")
    a["open"] = _action("&Open image…", window.open_image_dialog, "open")
    a["open_folder"] = _action("Open &folder…", window.open_folder_dialog)
    a["prev"] = _action("&Previous image", window.previous_image, "prev")
    a["next"] = _action("&Next image", window.next_image, "next")
    a["save"] = _action("&Save annotations now", window.save_now, tip="Write the autosave sidecar")
    a["export"] = _action("&Export image…", lambda: window.export_dialog(all_images=False), "export")
    a["export_all"] = _action("Export &all images of the folder…", window.export_dialog)
    a["quit"] = _action("&Quit", window.close)
    for key in ("open", "open_folder"):
        file_menu.addAction(a[key])
    file_menu.addMenu(window.recent_menu)
    file_menu.addSeparator()
    for key in ("prev", "next", "save", "export", "export_all"):
        file_menu.addAction(a[key])
    file_menu.addSeparator()
    file_menu.addAction(a["quit"])
    a.update(add_volume_actions(window, window.settings.shortcuts, window.volume, file_menu, a["prev"]))

    edit = bar.addMenu("&Edit")
    a["undo"] = _action("&Undo", window.undo, "undo")
    a["redo"] = _action("&Redo", window.redo, "redo")
    a["finish"] = _action("&Finish object", window.finish_object, "finish")
    a["reset"] = _action("Reset &clicks", window.reset_clicks, "reset")
    a["delete"] = _action("&Delete selected object", window.objects_panel.delete, "delete")
    a["no_objects"] = _action("Mark image done: &no objects", window.mark_no_objects, "no_objects",
                              tip="Checked, nothing to annotate: exported with an empty mask")  # fmt: skip
    a["no_objects"].setCheckable(True)
    for key in ("undo", "redo", "finish", "reset", "delete", "no_objects"):
        edit.addAction(a[key])
    edit.addSeparator()
    a["labels_default"] = _action("Use these &labels for new projects", window.make_labels_default)
    a["labels_default"].setToolTip("Labels belong to the open folder or volume; a project opened for the "
                                   "first time starts from this default set")  # fmt: skip
    edit.addAction(a["labels_default"])
    presets = edit.addMenu("Label &presets")
    for name in LABEL_PRESETS:
        a[f"preset_{name}"] = _action(name, lambda n=name: window.use_label_preset(n))
        presets.addAction(a[f"preset_{name}"])

    view = bar.addMenu("&View")
    a["fit"] = _action("&Fit to window", window.canvas.fit_to_window, "fit")
    a["zoom_in"] = _action("Zoom &in", lambda: window.canvas.zoom(1.25))
    a["zoom_out"] = _action("Zoom &out", lambda: window.canvas.zoom(0.8))
    tools = window.view_panel
    a["click_tool"] = _action("&Click tool", lambda: tools.set_tool("click"), "click_tool")
    a["brush"] = _action("&Brush", lambda: window.view_panel.set_tool("brush"), "brush")
    a["eraser"] = _action("&Eraser", lambda: window.view_panel.set_tool("eraser"), "eraser")
    for key in ("fit", "zoom_in", "zoom_out", "click_tool", "brush", "eraser"):
        view.addAction(a[key])

    model = bar.addMenu("&Model")
    a["load_checkpoint"] = _action("&Load checkpoint…", window.load_checkpoint_dialog)
    model.addAction(a["load_checkpoint"])
    window.training.add_actions(model, a)
    device_menu = model.addMenu("&Device")
    group = QActionGroup(window)
    for dev in ("cpu", "cuda"):
        act = QAction(dev.upper(), window, checkable=True)
        act.setChecked(window.models.device == dev)
        act.triggered.connect(lambda checked=False, d=dev: window.set_device(d))
        group.addAction(act)
        device_menu.addAction(act)
        a[f"device_{dev}"] = act
    reduced = QAction("&Reduced precision (bf16/fp16 where native)", window, checkable=True)
    reduced.setChecked(window.models.settings.precision == "auto")
    reduced.toggled.connect(window.models.set_precision)
    model.addAction(reduced)
    a["reduced_precision"] = reduced
    local = QAction("Clicks &obey and never lose the object", window, checkable=True)
    local.setChecked(window.settings.local_edits)
    local.setStatusTip("A network's click always takes the pixel under it (a small disk where the network "
                       "ignored it), and when it would take away most of the mask far from where it was "
                       "made, the mask keeps it (applies to the next clicks)")  # fmt: skip

    def set_local_edits(on: bool) -> None:
        window.settings.local_edits = on

    local.toggled.connect(set_local_edits)
    model.addAction(local)
    a["local_edits"] = local
    engine_menu = model.addMenu("&Engine")
    engines = QActionGroup(window)
    for name in window.models.engines:
        act = QAction(name, window, checkable=True)
        act.triggered.connect(lambda checked=False, n=name: window.models.choose_engine(n))
        engines.addAction(act)
        engine_menu.addAction(act)
        a[f"engine_{name}"] = act
    if not window.models.engines:
        engine_menu.addAction("(no built-in engine available)").setEnabled(False)
    engine_menu.addSeparator()
    a["engine_defaults"] = _action("&Default for each kind of data", window.models.follow_defaults)
    engine_menu.addAction(a["engine_defaults"])
    for modality in ("photo", "volume"):
        text = window.models.describe_default(modality)
        note = QAction(f"{modality.capitalize()}s: {text.split(' (')[0]}", window)
        note.setEnabled(False)
        note.setToolTip(text)
        note.setStatusTip(text)
        engine_menu.addAction(note)
        a[f"engine_default_{modality}"] = note
    engine_menu.setToolTipsVisible(True)

    help_menu = bar.addMenu("&Help")
    a["shortcuts"] = _action("&Keyboard and mouse shortcuts", window.show_shortcuts)
    a["shortcuts"].setShortcut(QKeySequence(QKeySequence.StandardKey.HelpContents))
    a["about"] = _action("&About isegformer", window.show_about)
    help_menu.addAction(a["shortcuts"])
    help_menu.addAction(a["about"])
    window.canvas.set_hint(click_hint(a))  # shown once an image is displayed, until the first click
    return a


# ------------------------------------------------------------------ first-minute help
def key_text(action: QAction) -> str:
    """The action's shortcuts as shown to the user ("Ctrl+Z", "Space"), comma-separated; "" if none."""
    keys = [k.toString(QKeySequence.SequenceFormat.NativeText) for k in action.shortcuts()]
    return ", ".join(k for k in keys if k)


def plain_text(action: QAction) -> str:
    """Menu text without the mnemonic ampersands and the trailing ellipsis."""
    return re.sub("&(.)", r"\1", action.text()).rstrip("…").strip()  # "&&" is a literal "&"


def click_hint(actions: dict[str, QAction]) -> str:
    """The canvas hint before the first click, with the finish key as it is bound now."""
    finish = actions.get("finish")
    keys = key_text(finish) if finish is not None else ""
    finish_text = f"{keys} = finish object" if keys else "Edit > Finish object"
    return f"Left click = object  ·  Right click = background  ·  {finish_text}"


def shortcut_rows(window: QWidget, bar: QMenuBar) -> list[tuple[str, str, str]]:
    """(menu, action, keys) of every action of ``window`` that has a shortcut, in menu order; actions
    found in no menu come last under "Other". Read from the QActions themselves, so the sheet is
    always what the keys do."""
    rows: list[tuple[str, str, str]] = []
    seen: set[int] = set()

    def walk(menu: QMenu, title: str) -> None:
        for action in menu.actions():
            if action.menu() is not None:
                walk(action.menu(), title)
            elif id(action) not in seen and key_text(action):
                seen.add(id(action))
                rows.append((title, plain_text(action), key_text(action)))

    for top in bar.actions():
        if top.menu() is not None:
            walk(top.menu(), plain_text(top))
    for action in window.findChildren(QAction):
        if id(action) not in seen and key_text(action):
            seen.add(id(action))
            rows.append(("Other", plain_text(action), key_text(action)))
    return rows


def show_shortcut_sheet(window: QWidget, bar: QMenuBar) -> QDialog:
    """Open (non-modal) the sheet of the keyboard shortcuts of ``window`` (its menu ``bar`` first) and the
    mouse bindings; returns the dialog."""
    rows = [(menu, text, keys) for menu, text, keys in shortcut_rows(window, bar)]
    rows += [("Mouse (canvas)", what, how) for how, what in MOUSE_BINDINGS]
    dialog = QDialog(window)
    dialog.setWindowTitle("Keyboard and mouse shortcuts")
    table = QTableWidget(len(rows), 3, dialog)
    table.setObjectName("shortcut_table")
    table.setHorizontalHeaderLabels(["Menu", "Action", "Keys / mouse"])
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            table.setItem(r, c, QTableWidgetItem(text))
    table.verticalHeader().setVisible(False)
    table.verticalHeader().setDefaultSectionSize(table.fontMetrics().height() + 8)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.horizontalHeader().setStretchLastSection(True)
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, dialog)
    buttons.rejected.connect(dialog.close)
    layout = QVBoxLayout(dialog)
    layout.addWidget(table)
    layout.addWidget(buttons)
    dialog.resize(560, 620)
    dialog.show()
    return dialog


def app_version() -> str:
    """The installed package's version (package metadata), or a note that it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("isegformer")
    except PackageNotFoundError:
        return "unknown (not installed as a package)"


def about_text(models: ModelControl, engine_text: str) -> str:
    """Rich text of the About box: version, the model/engine in use (``engine_text``), device, library
    versions."""
    engine = engine_text or "none loaded yet"
    kind = {"engine": "built-in engine", "checkpoint": "checkpoint"}.get(models.active[0], "")
    device = models.device
    lines = [
        f"<b>isegformer</b> {escape(app_version())}",
        "Interactive segmentation with clicks: left = object, right = background.",
        f"Model: {escape(engine)}" + (f" ({kind})" if kind else ""),
    ]
    if device:
        lines.append(f"Device: {escape(str(device).upper())}")
    lines.append(f"Python {platform.python_version()}, PySide6 {pyside_version}")
    return "<br>".join(lines)


def show_about(window: QWidget, models: ModelControl, engine_text: str) -> QMessageBox:
    """The About box (non-modal)."""
    box = QMessageBox(QMessageBox.Icon.Information, "About isegformer", about_text(models, engine_text),
                      QMessageBox.StandardButton.Ok, window)  # fmt: skip
    box.setTextFormat(Qt.TextFormat.RichText)
    box.open()
    return box
