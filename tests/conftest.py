"""Shared fixtures: the reference outputs of the original code in ../shared/reference/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _skip_summary import pytest_terminal_summary  # noqa: F401  (the hook: one line naming the skips)

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REFERENCE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """``../shared/reference`` (outputs of the original RITM/iSegFormer code)."""
    if not REFERENCE_DIR.is_dir():
        pytest.skip(f"reference fixtures not found at {REFERENCE_DIR} (they ship beside the repository)")
    return REFERENCE_DIR


@pytest.fixture(scope="session", autouse=True)
def _private_user_data_dir(tmp_path_factory):
    """Per-user autosave folders (read-only image folders, the bundled sample) go to a temp folder,
    never into the real user's data folder."""
    os.environ["ISEGFORMER_DATA_DIR"] = str(tmp_path_factory.mktemp("user-data"))
    yield
    os.environ.pop("ISEGFORMER_DATA_DIR", None)


@pytest.fixture(scope="session", autouse=True)
def _no_blocking_message_boxes():
    """Offscreen, a modal QMessageBox would wait forever (e.g. the unsaved-work prompt when pytest-qt
    closes a window after a failed test). For the whole session the static helpers answer at once:
    questions with Discard, notices with Ok. Tests that check dialogs monkeypatch them as before."""
    try:
        from PySide6.QtWidgets import QMessageBox
    except ImportError:  # pragma: no cover - PySide6 is a dependency
        yield
        return
    saved = {name: getattr(QMessageBox, name) for name in ("question", "warning", "critical", "information")}
    QMessageBox.question = staticmethod(lambda *a, **k: QMessageBox.StandardButton.Discard)
    for name in ("warning", "critical", "information"):
        setattr(QMessageBox, name, staticmethod(lambda *a, **k: QMessageBox.StandardButton.Ok))
    yield
    for name, original in saved.items():
        setattr(QMessageBox, name, original)


@pytest.fixture
def messages(monkeypatch) -> list[tuple[str, str]]:
    """Record the app's warning boxes as (title, text) instead of showing them; questions (e.g. the
    unsaved-work prompt) answer Discard. Tests assert on the list to check "one clear message"."""
    from PySide6.QtWidgets import QMessageBox

    seen: list[tuple[str, str]] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text, *a: seen.append((title, text)))
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Discard)
    return seen
