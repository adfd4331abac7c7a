"""Side panel of volume annotation: view axis, slice, window/level, propagation."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QSlider,
    QSpinBox,
)

from isegformer_app.volumes import AXES, WindowPreset


def _button(text: str, tip: str, checkable: bool = False) -> QPushButton:
    button = QPushButton(text)
    button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    button.setToolTip(tip)
    button.setCheckable(checkable)
    return button


class VolumePanel(QGroupBox):
    """Widgets only; the :class:`~isegformer_app.ui.volume_mode.VolumeMode` does the work."""

    axis_chosen = Signal(str)
    slice_chosen = Signal(int)
    preset_chosen = Signal(int)
    propagate = Signal(str)  # "prev" | "next" | "range"
    frame_chosen = Signal(int)  # a frame (4th dimension) of a 4-D file
    shown = Signal()  # became visible, or its contents changed width (the side column fits itself again)

    def __init__(self, parent=None) -> None:
        super().__init__("Volume", parent)
        self.axes = QButtonGroup(self)
        axis_row = QHBoxLayout()
        for axis in AXES:
            radio = QRadioButton(axis.capitalize())
            radio.setObjectName(axis)
            radio.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            self.axes.addButton(radio)
            axis_row.addWidget(radio)
        self.axes.buttonClicked.connect(lambda b: self.axis_chosen.emit(b.objectName()))
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.slider.valueChanged.connect(self.slice_chosen.emit)
        self.slice_label = QLabel("–")
        self.frame = QSpinBox()
        self.frame.setKeyboardTracking(False)  # typing "12" opens frame 12, not 1 then 12
        self.frame.setToolTip("Frame of the 4-D file shown (each frame is annotated on its own)")
        self.frame.valueChanged.connect(self._on_frame)
        self.frame_label = QLabel("Frame")
        self._presets: list[WindowPreset] = []
        self.presets = QComboBox()
        self.presets.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.presets.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.presets.activated.connect(self._on_preset_activated)
        self.wl_button = _button("W/L drag", "Left drag changes window (right: wider) and level (down: "
                                 "higher); Alt+drag works with any tool", checkable=True)  # fmt: skip
        self.window_label = QLabel("")
        wl_row = QHBoxLayout()
        wl_row.addWidget(self.wl_button)
        wl_row.addWidget(self.window_label, 1)
        prop_row = QHBoxLayout()
        for name, text, tip in (("prev", "◀ Prev", "Propagate the object to the previous slice"),
                                ("next", "Next ▶", "Propagate the object to the next slice"),
                                ("range", "Range…", "Propagate slice after slice up to a chosen slice")):
            button = _button(text, tip)
            button.clicked.connect(lambda _c=False, n=name: self.propagate.emit(n))
            prop_row.addWidget(button)
        prop_row.addStretch(1)
        form = QFormLayout(self)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)  # long rows go below the label
        form.addRow(axis_row)  # the whole width: the axis names say what the row is
        form.addRow(self.slice_label, self.slider)
        form.addRow(self.frame_label, self.frame)
        form.addRow("Window", self.presets)  # a row of its own: preset names can be long
        form.addRow(wl_row)
        form.addRow("Propagate", prop_row)

    def show_view(self, axis: str, index: int, count: int) -> None:
        """Reflect the document's view without emitting signals."""
        for button in self.axes.buttons():
            button.setChecked(button.objectName() == axis)
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, count - 1))
        self.slider.setValue(index)
        self.slider.blockSignals(False)
        self.slice_label.setText(f"Slice {index + 1}/{count}")

    def show_frames(self, frame: int, frames: int) -> None:
        """The frame selector: shown for files with more than one frame, without emitting signals."""
        self.frame.blockSignals(True)
        self.frame.setRange(0, max(0, frames - 1))
        self.frame.setValue(frame)
        self.frame.setSuffix(f" of 0–{frames - 1}")
        self.frame.blockSignals(False)
        for widget in (self.frame, self.frame_label):
            widget.setVisible(frames > 1)
        self.shown.emit()

    def showEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().showEvent(event)
        self.shown.emit()

    def _on_frame(self, frame: int) -> None:
        self.frame_chosen.emit(frame)

    def set_presets(self, presets: list[WindowPreset]) -> None:
        self._presets = list(presets)
        self.presets.clear()
        for preset in presets:
            self.presets.addItem(_preset_text(preset))
        self.shown.emit()

    def show_window(self, window: WindowPreset) -> None:
        """Show the displayed window: its values, and in the preset box the preset it is, or
        "Custom" once it is none of them (after a W/L drag)."""
        self.window_label.setText(f"level {window.center:.1f}  width {window.width:.1f}")
        position = next((i for i, p in enumerate(self._presets)
                         if (p.center, p.width) == (window.center, window.width)), None)  # fmt: skip
        if position is None:
            self.show_custom_window(window)
        else:
            self._drop_custom()
            self.presets.setCurrentIndex(position)

    def show_custom_window(self, window: WindowPreset | None = None) -> None:
        """Select a "Custom" entry (after the presets) in the preset box, with ``window``'s values."""
        name = "Custom" if window is None or window.name in ("", "custom") else window.name
        text = name if window is None else f"{name} ({window.center:.4g}/{window.width:.4g})"
        if self.presets.count() == len(self._presets):
            self.presets.addItem(text)
        else:
            self.presets.setItemText(len(self._presets), text)
        self.presets.setCurrentIndex(len(self._presets))

    def _drop_custom(self) -> None:
        while self.presets.count() > len(self._presets):
            self.presets.removeItem(self.presets.count() - 1)

    def _on_preset_activated(self, position: int) -> None:
        if 0 <= position < len(self._presets):  # choosing "Custom" again changes nothing
            self.preset_chosen.emit(position)


def _preset_text(preset: WindowPreset) -> str:
    return f"{preset.name} ({preset.center:g}/{preset.width:g})"
