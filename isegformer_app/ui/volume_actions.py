"""Menu entries of volume mode: open/import/export in the File menu and a Volume menu."""

from __future__ import annotations

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMainWindow, QMenu

from isegformer_app.ui.qt_actions import new_action
from isegformer_app.ui.volume_mode import VOLUME_ONLY, VolumeMode


def add_volume_actions(window: QMainWindow, shortcuts: dict[str, str], ctl: VolumeMode, file_menu: QMenu,
                       before: QAction) -> dict[str, QAction]:  # fmt: skip
    """File-menu entries (inserted before ``before``) and the Volume menu of ``window`` for volume mode
    ``ctl`` (keys bound as in ``shortcuts``); returns the actions by name."""
    files = ctl.files

    def _action(text: str, slot, shortcut_key: str = "") -> QAction:
        return new_action(window, shortcuts, text, slot, shortcut_key)

    a = {
        "open_volume": _action("Open &volume (NIfTI)…", files.open_file_dialog, "open_volume"),
        "open_dicom": _action("Open &DICOM folder…", files.open_folder_dialog),
        "import_labels": _action("&Import labels (NIfTI)…", files.import_labels_dialog),
        "export_nifti": _action("Export label &map (NIfTI + tables)…", files.export_nifti_dialog),
        "export_slices": _action("Export volume &slices (PNG)…", files.export_slices_dialog),
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
        a[key] = _action(text, slot, key)
        menu.addAction(a[key])
    for key in VOLUME_ONLY:
        a[key].setEnabled(False)  # enabled while a volume is open (arrow keys pan images otherwise)
    return a

