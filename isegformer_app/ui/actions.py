"""Menus, actions and their shortcuts (shortcuts come from the settings)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtGui import QAction, QActionGroup, QKeySequence

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
    for key in ("undo", "redo", "finish", "reset", "delete"):
        edit.addAction(a[key])

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
        act.triggered.connect(lambda checked=False, n=name: window.models.use_engine(n))
        engines.addAction(act)
        engine_menu.addAction(act)
        a[f"engine_{name}"] = act
    if not window.models.engines:
        engine_menu.addAction("(no built-in engine available)").setEnabled(False)
    return a
