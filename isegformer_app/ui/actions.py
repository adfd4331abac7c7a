"""Menus, actions and their shortcuts (shortcuts come from the settings), the Help menu."""

from __future__ import annotations

import platform
import re
from html import escape
from typing import TYPE_CHECKING

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QMenu,
    QMessageBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from isegformer_app.state.labels import LABEL_PRESETS
from isegformer_app.ui.canvas import MOUSE_BINDINGS
from isegformer_app.ui.training_run import add_training_actions
from isegformer_app.ui.volume_actions import add_volume_actions

if TYPE_CHECKING:
    from isegformer_app.ui.main_window import MainWindow


def _action(window: MainWindow, text: str, slot, shortcut_key: str = "", tip: str = "") -> QAction:
    act = QAction(text, window)
    if shortcut_key:
        act.setShortcut(QKeySequence(window.settings.shortcuts.get(shortcut_key, "")))
    if tip:
        act.setStatusTip(tip)
    act.triggered.connect(lambda checked=False: slot())
    window.addAction(act)  # shortcuts work with the menu closed
    return act


def build_menus(window: MainWindow) -> dict[str, QAction]:
    """Create the menu bar of ``window``; returns the actions by name."""
    a: dict[str, QAction] = {}
    bar = window.menuBar()

    file_menu = bar.addMenu("&File")
    a["open"] = _action(window, "&Open image…", window.open_image_dialog, "open")
    a["open_folder"] = _action(window, "Open &folder…", window.open_folder_dialog)
    window.recent_menu = file_menu.addMenu("Open &recent")
    a["prev"] = _action(window, "&Previous image", window.previous_image, "prev")
    a["next"] = _action(window, "&Next image", window.next_image, "next")
    a["save"] = _action(window, "&Save annotations now", window.save_now, tip="Write the autosave sidecar")
    a["export"] = _action(window, "&Export image…", lambda: window.export_dialog(all_images=False), "export")
    a["export_all"] = _action(window, "Export &all images of the folder…", window.export_dialog)
    a["quit"] = _action(window, "&Quit", window.close)
    for key in ("open", "open_folder"):
        file_menu.addAction(a[key])
    file_menu.addMenu(window.recent_menu)
    file_menu.addSeparator()
    for key in ("prev", "next", "save", "export", "export_all"):
        file_menu.addAction(a[key])
    file_menu.addSeparator()
    file_menu.addAction(a["quit"])
    a.update(add_volume_actions(window, file_menu, a["prev"]))

    edit = bar.addMenu("&Edit")
    a["undo"] = _action(window, "&Undo", window.undo, "undo")
    a["redo"] = _action(window, "&Redo", window.redo, "redo")
    a["finish"] = _action(window, "&Finish object", window.finish_object, "finish")
    a["reset"] = _action(window, "Reset &clicks", window.reset_clicks, "reset")
    a["delete"] = _action(window, "&Delete selected object", window.objects_panel.delete, "delete")
    a["no_objects"] = _action(window, "Mark image done: &no objects", window.mark_no_objects, "no_objects",
                              tip="Checked, nothing to annotate: exported with an empty mask")  # fmt: skip
    a["no_objects"].setCheckable(True)
    for key in ("undo", "redo", "finish", "reset", "delete", "no_objects"):
        edit.addAction(a[key])
    edit.addSeparator()
    a["labels_default"] = _action(window, "Use these &labels for new projects", window.make_labels_default)
    a["labels_default"].setToolTip("Labels belong to the open folder or volume; a project opened for the "
                                   "first time starts from this default set")  # fmt: skip
    edit.addAction(a["labels_default"])
    presets = edit.addMenu("Label &presets")
    for name in LABEL_PRESETS:
        a[f"preset_{name}"] = _action(window, name, lambda n=name: window.use_label_preset(n))
        presets.addAction(a[f"preset_{name}"])

    view = bar.addMenu("&View")
    a["fit"] = _action(window, "&Fit to window", window.canvas.fit_to_window, "fit")
    a["zoom_in"] = _action(window, "Zoom &in", lambda: window.canvas.zoom(1.25))
    a["zoom_out"] = _action(window, "Zoom &out", lambda: window.canvas.zoom(0.8))
    tools = window.view_panel
    a["click_tool"] = _action(window, "&Click tool", lambda: tools.set_tool("click"), "click_tool")
    a["brush"] = _action(window, "&Brush", lambda: window.view_panel.set_tool("brush"), "brush")
    a["eraser"] = _action(window, "&Eraser", lambda: window.view_panel.set_tool("eraser"), "eraser")
    for key in ("fit", "zoom_in", "zoom_out", "click_tool", "brush", "eraser"):
        view.addAction(a[key])

    model = bar.addMenu("&Model")
    a["load_checkpoint"] = _action(window, "&Load checkpoint…", window.load_checkpoint_dialog)
    model.addAction(a["load_checkpoint"])
    add_training_actions(window, model, a)
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
    a["engine_defaults"] = _action(window, "&Default for each kind of data", window.models.follow_defaults)
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
    a["shortcuts"] = _action(window, "&Keyboard and mouse shortcuts", lambda: show_shortcut_sheet(window))
    a["shortcuts"].setShortcut(QKeySequence(QKeySequence.StandardKey.HelpContents))
    a["about"] = _action(window, "&About isegformer", lambda: show_about(window))
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


def shortcut_rows(window: MainWindow) -> list[tuple[str, str, str]]:
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

    for top in window.menuBar().actions():
        if top.menu() is not None:
            walk(top.menu(), plain_text(top))
    for action in window.findChildren(QAction):
        if id(action) not in seen and key_text(action):
            seen.add(id(action))
            rows.append(("Other", plain_text(action), key_text(action)))
    return rows


def show_shortcut_sheet(window: MainWindow) -> QDialog:
    """Open (non-modal) the sheet of the keyboard shortcuts and mouse bindings; returns the dialog
    (also kept as ``window.shortcut_sheet``)."""
    old = getattr(window, "shortcut_sheet", None)
    if old is not None:
        old.close()
    rows = [(menu, text, keys) for menu, text, keys in shortcut_rows(window)]
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
    window.shortcut_sheet = dialog
    dialog.show()
    return dialog


def app_version() -> str:
    """The installed package's version (package metadata), or a note that it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("isegformer")
    except PackageNotFoundError:
        return "unknown (not installed as a package)"


def about_text(window: MainWindow) -> str:
    """Rich text of the About box: version, the model/engine in use, device, library versions."""
    models = getattr(window, "models", None)
    engine = getattr(window, "engine_text", "") or "none loaded yet"
    active = getattr(models, "active", ("", ""))
    kind = {"engine": "built-in engine", "checkpoint": "checkpoint"}.get(active[0], "")
    device = getattr(models, "device", "")
    lines = [
        f"<b>isegformer</b> {escape(app_version())}",
        "Interactive segmentation with clicks: left = object, right = background.",
        f"Model: {escape(engine)}" + (f" ({kind})" if kind else ""),
    ]
    if device:
        lines.append(f"Device: {escape(str(device).upper())}")
    lines.append(f"Python {platform.python_version()}, PySide6 {pyside_version}")
    return "<br>".join(lines)


def show_about(window: MainWindow) -> QMessageBox:
    """The About box (non-modal; kept as ``window.about_box``)."""
    box = QMessageBox(QMessageBox.Icon.Information, "About isegformer", about_text(window),
                      QMessageBox.StandardButton.Ok, window)  # fmt: skip
    box.setTextFormat(Qt.TextFormat.RichText)
    window.about_box = box
    box.open()
    return box
