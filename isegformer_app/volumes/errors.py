"""Errors raised by the medical-volume layer."""

from __future__ import annotations


class VolumeError(ValueError):
    """A volume, label map or DICOM/NIfTI file that cannot be used; the message says why."""


class LoadCancelled(RuntimeError):
    """Raised when a load is cancelled through its cancel flag."""
