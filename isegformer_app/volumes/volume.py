"""The ``Volume`` dataclass: voxels, geometry, window presets and the model-input slice image."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from . import slicing
from .geometry import LPS_TO_RAS, SourceGeometry, voxel_spacing
from .windowing import WindowPreset, apply_window, modality_presets, percentile_window


@dataclass(frozen=True)
class ModelInput:
    """Which channels feed the model: one name (grey, replicated to RGB) or three (an RGB composite)."""

    channels: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.channels) not in (1, 3):
            raise ValueError(f"model input needs 1 channel or 3 (RGB composite), got {len(self.channels)}")

    @classmethod
    def single(cls, name: str) -> ModelInput:
        return cls((name,))

    @classmethod
    def rgb(cls, red: str, green: str, blue: str) -> ModelInput:
        return cls((red, green, blue))


WindowChoice = WindowPreset | Sequence[WindowPreset] | None


@dataclass
class Volume:
    """A 3-D image (optionally with several co-registered channels, e.g. BraTS modalities).

    ``voxels``: float32 ``(z, y, x)`` or ``(C, z, y, x)``, display-oriented (see ``geometry``);
    ``affine``: 4x4 RAS affine for index ``(x, y, z, 1)``; ``source``: the file's own grid for export;
    ``window_presets``: windows for channel 0 (DICOM ones first, then modality presets);
    ``channel_windows``: the default window of every channel; ``warnings``: what was guessed or fixed;
    ``model_input``: the default channel choice for ``slice_image`` (``None``: the first channel).
    """

    voxels: np.ndarray
    affine: np.ndarray
    source: SourceGeometry
    modality: str = "OT"
    channel_names: tuple[str, ...] = ("image",)
    window_presets: list[WindowPreset] = field(default_factory=list)
    channel_windows: dict[str, WindowPreset] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    description: str = ""
    metadata: dict = field(default_factory=dict)
    model_input: ModelInput | None = None

    def __post_init__(self) -> None:
        if self.voxels.dtype != np.float32:
            raise TypeError(f"Volume.voxels must be float32, got {self.voxels.dtype}")
        if self.voxels.ndim not in (3, 4):
            raise ValueError(f"Volume.voxels must be (z, y, x) or (C, z, y, x), got {self.voxels.shape}")
        if len(self.channel_names) != self.n_channels:
            raise ValueError(f"{self.n_channels} channels but {len(self.channel_names)} channel names")
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {self.affine.shape}")
        if not self.window_presets:
            self.window_presets = modality_presets(self.modality, self.channel(0))
        for index, name in enumerate(self.channel_names):
            if name not in self.channel_windows:
                self.channel_windows[name] = (
                    self.window_presets[0] if index == 0
                    else percentile_window(name, self.channel(index), 0.5, 99.5, nonzero_only=True))

    @cached_property
    def digest(self) -> str:
        """SHA-256 of the voxels (computed once, ~0.1 s per 256 MB): ties an autosave to this very data."""
        return hashlib.sha256(memoryview(np.ascontiguousarray(self.voxels)).cast("B")).hexdigest()

    # --- geometry -----------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        """Spatial shape ``(z, y, x)``."""
        z, y, x = self.voxels.shape[-3:]
        return int(z), int(y), int(x)

    @property
    def n_channels(self) -> int:
        return 1 if self.voxels.ndim == 3 else int(self.voxels.shape[0])

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size ``(z, y, x)`` in mm."""
        sx, sy, sz = voxel_spacing(self.affine)
        return sz, sy, sx

    @property
    def affine_lps(self) -> np.ndarray:
        """DICOM LPS affine for index ``(x, y, z, 1)``."""
        return LPS_TO_RAS @ self.affine

    def index_to_world(self, z: float, y: float, x: float) -> np.ndarray:
        """RAS position (mm, shape (3,)) of voxel ``(z, y, x)``."""
        return (self.affine @ np.array([x, y, z, 1.0]))[:3]

    def world_to_index(self, ras: Sequence[float]) -> np.ndarray:
        """Fractional voxel index ``(z, y, x)`` of RAS point ``ras``."""
        xyz = np.linalg.solve(self.affine, np.array([*ras, 1.0]))[:3]
        return xyz[::-1].copy()

    def file_index(self, z: int, y: int, x: int) -> tuple[int, int, int]:
        """The voxel ``(i, j, k)`` of the file this volume came from (its own grid, before the volume
        was re-oriented for display) that holds display voxel ``(z, y, x)``."""
        ijk = np.linalg.solve(self.source.affine, self.affine @ np.array([x, y, z, 1.0]))[:3]
        return int(round(ijk[0])), int(round(ijk[1])), int(round(ijk[2]))

    def acquisition_axis(self) -> str:
        """The view showing the file's own slices (the one its k index walks along): a coronal series,
        or a single coronal slice, opens in the coronal view instead of as a stripe in the axial one."""
        return next((axis for axis in slicing.AXES if self.file_slice(axis, 0)[0] == "k"), "axial")

    def describe_voxel(self, z: int, y: int, x: int) -> str:
        """One line for a cursor readout: the file's voxel (i, j, k), the RAS position in mm and the
        value of every channel at display voxel ``(z, y, x)``."""
        i, j, k = self.file_index(z, y, x)
        r, a, s = self.index_to_world(z, y, x)
        values = [f"{self.channel(n)[z, y, x]:.6g}" for n in range(self.n_channels)]
        if self.n_channels > 1:
            values = [f"{name} {v}" for name, v in zip(self.channel_names, values, strict=True)]
        values = ", ".join(values)
        return f"voxel (i, j, k) {i}, {j}, {k}  ·  RAS {r:.1f}, {a:.1f}, {s:.1f} mm  ·  value {values}"

    def file_slice(self, axis: str, index: int) -> tuple[str, int]:
        """Which file index (``"i"``, ``"j"`` or ``"k"``) a view ``axis`` walks along, and its value at
        slice ``index`` — the slice number other tools (ITK-SNAP, Slicer, nibabel) show for it."""
        centre = [s // 2 for s in self.shape]
        here, there = list(centre), list(centre)
        a = slicing.array_axis(axis)
        here[a], there[a] = index, index + (1 if index + 1 < self.shape[a] else -1)
        first, second = self.file_index(*here), self.file_index(*there)
        moved = int(np.argmax(np.abs(np.subtract(second, first))))
        return "ijk"[moved], first[moved]

    def slice_caption(self, axis: str, index: int) -> str:
        """How a slice is named to the user, everywhere: "Slice k = 5  (6/10)" (the file's own index,
        then the position in the view)."""
        name, file_index = self.file_slice(axis, index)
        return f"Slice {name} = {file_index}  ({index + 1}/{self.slice_count(axis)})"

    def view_index(self, axis: str, file_index: int) -> int:
        """The slice of view ``axis`` whose file index (see :meth:`file_slice`) is ``file_index``."""
        first, last = self.file_slice(axis, 0)[1], self.file_slice(axis, self.slice_count(axis) - 1)[1]
        return (file_index - first) * (1 if last >= first else -1)

    # --- channels and views -------------------------------------------------------------------
    def channel(self, channel: str | int = 0) -> np.ndarray:
        """The ``(z, y, x)`` float32 array of one channel (by name or position)."""
        if isinstance(channel, str) and channel not in self.channel_names:
            raise KeyError(f"no channel {channel!r}; channels are {list(self.channel_names)}")
        index = self.channel_names.index(channel) if isinstance(channel, str) else int(channel)
        if not 0 <= index < self.n_channels:
            raise IndexError(f"channel {index} is out of range 0..{self.n_channels - 1}")
        return self.voxels if self.voxels.ndim == 3 else self.voxels[index]

    def slice_count(self, axis: str) -> int:
        return slicing.slice_count(self.shape, axis)

    def pixel_aspect(self, axis: str) -> float:
        """Height/width of one pixel of a view along ``axis`` (from the voxel spacing)."""
        return slicing.pixel_aspect(self.spacing, axis)

    def slice_values(self, axis: str, index: int, channel: str | int = 0) -> np.ndarray:
        """Float32 2-D view of one channel (see ``slicing`` for the orientation of each axis)."""
        return slicing.extract_slice(self.channel(channel), axis, index)

    def default_model_input(self) -> ModelInput:
        return self.model_input or ModelInput.single(self.channel_names[0])

    def slice_image(self, axis: str, index: int, window: WindowChoice = None,
                    model_input: ModelInput | None = None) -> np.ndarray:
        """The model input for one slice: ``(H, W, 3)`` uint8.

        Each selected channel is windowed to 0..255 (``windowing.apply_window``); one channel is
        replicated to R, G and B, three channels form an RGB composite. ``window``: one preset for all
        channels, one per channel, or ``None`` for each channel's default window.
        """
        chosen = model_input or self.default_model_input()
        missing = [name for name in chosen.channels if name not in self.channel_names]
        if missing:
            raise KeyError(f"no channel(s) {missing}; channels are {list(self.channel_names)}")
        if window is None:
            windows = [self.channel_windows[name] for name in chosen.channels]
        elif isinstance(window, WindowPreset):
            windows = [window] * len(chosen.channels)
        else:
            windows = list(window)
            if len(windows) != len(chosen.channels):
                raise ValueError(f"{len(windows)} windows for {len(chosen.channels)} channels")
        planes = [apply_window(self.slice_values(axis, index, name), win)
                  for name, win in zip(chosen.channels, windows, strict=True)]
        if len(planes) == 1:
            planes = planes * 3
        return np.stack(planes, axis=-1)
