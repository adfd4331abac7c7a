"""Menu entries of volume mode: open/import/export in the File menu and a Volume menu."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu

if TYPE_CHECKING:
    from isegformer_app.ui.main_window import MainWindow


def _action(window: MainWindow, text: str, slot, shortcut_key: str = "") -> QAction:
    act = QAction(text, window)
    if shortcut_key:
        act.setShortcut(QKeySequence(window.settings.shortcuts.get(shortcut_key, "")))
    act.triggered.connect(lambda checked=False: slot())
    window.addAction(act)  # shortcuts work with the menu closed
    return act


def add_volume_actions(window: MainWindow, file_menu: QMenu, before: QAction) -> dict[str, QAction]:
    """File-menu entries (inserted before ``before``) and the Volume menu; returns the actions by name."""
    ctl, files = window.volume, window.volume.files
    a = {
        "open_volume": _action(window, "Open &volume (NIfTI)…", files.open_file_dialog, "open_volume"),
        "open_dicom": _action(window, "Open &DICOM folder…", files.open_folder_dialog),
        "import_labels": _action(window, "&Import labels (NIfTI)…", files.import_labels_dialog),
        "export_nifti": _action(window, "Export label &map (NIfTI + tables)…", files.export_nifti_dialog),
        "export_slices": _action(window, "Export volume &slices (PNG)…", files.export_slices_dialog),
    }
    for key in a:
        file_menu.insertAction(before, a[key])
    file_menu.insertSeparator(before)
    menu = window.menuBar().addMenu("V&olume")
    entries = [
        ("axial", "&Axial view", lambda: ctl.show_slice(axis="axial")),
        ("coronal", "&Coronal view", lambda: ctl.show_slice(axis="coronal")),
        ("sagittal", "&Sagittal view", lambda: ctl.show_slice(axis="sagittal")),
        ("slice_up", "&Next slice", lambda: ctl.step_slice(+1)),
        ("slice_down", "&Previous slice", lambda: ctl.step_slice(-1)),
        ("slice_page_up", "10 slices forward", lambda: ctl.step_slice(+10)),
        ("slice_page_down", "10 slices back", lambda: ctl.step_slice(-10)),
        ("propagate_next", "Propagate to next slice", lambda: ctl.propagate_to(ctl.doc.index + 1)
         if ctl.doc else None),
        ("propagate_prev", "Propagate to previous slice", lambda: ctl.propagate_to(ctl.doc.index - 1)
         if ctl.doc else None),
        ("propagate_range", "Propagate over a &range…", ctl.propagate_range_dialog),
        ("wl_mode", "&Window/level drag mode", lambda: ctl.panel.wl_button.toggle()),
        ("edit_object", "&Edit selected object", ctl.edit_selected),
    ]  # fmt: skip
    for key, text, slot in entries:
        a[key] = _action(window, text, slot, key)
        menu.addAction(a[key])
    for key in VOLUME_ONLY:
        a[key].setEnabled(False)  # enabled while a volume is open (arrow keys pan images otherwise)
    return a


VOLUME_ONLY = ("import_labels", "export_nifti", "export_slices", "axial", "coronal", "sagittal", "slice_up",
               "slice_down", "slice_page_up", "slice_page_down", "propagate_next", "propagate_prev",
               "propagate_range", "wl_mode", "edit_object")
