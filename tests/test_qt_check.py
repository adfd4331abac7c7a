"""Issue 22, point 1: `make run` checks Qt's xcb platform plugin before starting and says what to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from isegformer_app import qt_check

# what `ldd libqxcb.so` printed on a fresh Debian 12 (the libraries of the issue)
LDD_FRESH_DEBIAN = """\
\tlinux-vdso.so.1 (0x00007ffd2a5f2000)
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f5d0b600000)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-cursor.so.0 => /lib/x86_64-linux-gnu/libxcb-cursor.so.0 (0x00007f5d0b4f0000)
\tlibxcb-icccm.so.4 => not found
\tlibxkbcommon-x11.so.0 => /lib/x86_64-linux-gnu/libxkbcommon-x11.so.0 (0x00007f5d0b4e0000)
"""
DEBIAN = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n'
UBUNTU = 'NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\n'
FEDORA = 'NAME="Fedora Linux"\nID=fedora\n'


def test_the_libraries_ldd_cannot_find_become_the_exact_install_line() -> None:
    missing = qt_check.missing_libraries(Path("libqxcb.so"), lambda _p: LDD_FRESH_DEBIAN, lambda _n: True)
    assert missing == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    text = qt_check.report({}, DEBIAN, Path("libqxcb.so"), lambda _p: LDD_FRESH_DEBIAN, lambda _n: True)
    assert "sudo apt-get install libxcb-icccm4 libxcb-keysyms1\n" in text
    assert qt_check.install_lines(missing, UBUNTU) == ["sudo apt-get install libxcb-icccm4 libxcb-keysyms1"]
    assert qt_check.install_lines(missing, FEDORA) == ["sudo dnf install xcb-util-wm xcb-util-keysyms"]
    everywhere = qt_check.install_lines(missing, "")  # an unknown distribution: every known line
    assert "sudo pacman -S xcb-util-wm xcb-util-keysyms" in everywhere and len(everywhere) == 4


def test_the_cursor_library_qt_opens_at_run_time_is_checked_too() -> None:
    ok = "\tlibxcb.so.1 => /lib/libxcb.so.1\n"
    missing = qt_check.missing_libraries(Path("p"), lambda _p: ok, lambda name: name != "libxcb-cursor.so.0")
    assert missing == ["libxcb-cursor.so.0"]
    assert qt_check.install_lines(missing, DEBIAN) == ["sudo apt-get install libxcb-cursor0"]
    assert qt_check.debian_package("libxkbcommon-x11.so.0") == "libxkbcommon-x11-0"
    assert qt_check.debian_package("libX11-xcb.so.1") == "libx11-xcb1"
    assert qt_check.install_lines(["libxcb-shape.so.0"], FEDORA) == ["sudo dnf install libxcb"]


def test_nothing_is_checked_when_another_platform_is_chosen() -> None:
    def never(_path):
        raise AssertionError("ldd must not run")

    for platform in ("offscreen", "wayland", "eglfs", "minimal"):
        assert qt_check.report({"QT_QPA_PLATFORM": platform}, DEBIAN, Path("p"), never) == ""
    assert qt_check.needs_check({"QT_QPA_PLATFORM": "xcb"}, "linux") and qt_check.needs_check({}, "linux")
    assert not qt_check.needs_check({}, "darwin") and not qt_check.needs_check({}, "win32")


def test_make_run_stops_with_the_install_line_before_qt_aborts(tmp_path) -> None:
    """The real module on the real PySide6 plugin, with an `ldd` that reports the issue's libraries."""
    if qt_check.xcb_plugin() is None:  # pragma: no cover - PySide6 wheels for Linux ship it
        raise AssertionError("PySide6 has no xcb plugin")
    fake = tmp_path / "bin" / "ldd"
    fake.parent.mkdir()
    lines = "\\tlibxcb-icccm.so.4 => not found\\n\\tlibxcb-keysyms.so.1 => not found\\n"
    fake.write_text(f"#!/bin/sh\nprintf '{lines}'\n")
    fake.chmod(0o755)
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
    run = subprocess.run([sys.executable, "-m", "isegformer_app.qt_check"], env=env, capture_output=True,
                         text=True, cwd=Path(__file__).resolve().parents[1], timeout=60)  # fmt: skip
    assert run.returncode == 1
    assert "libxcb-icccm.so.4, libxcb-keysyms.so.1" in run.stderr and "install" in run.stderr
    env["QT_QPA_PLATFORM"] = "offscreen"
    quiet = subprocess.run([sys.executable, "-m", "isegformer_app.qt_check"], env=env, capture_output=True,
                           text=True, cwd=Path(__file__).resolve().parents[1], timeout=60)  # fmt: skip
    assert quiet.returncode == 0 and quiet.stderr == ""
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    run_rule = makefile.split("\nrun:")[1].split("\n\n")[0]
    assert run_rule.index("isegformer_app.qt_check") < run_rule.index("isegformer_app.main")


def make_dry_run(folder: Path) -> str:
    return subprocess.run(["make", "-n", "run", f"PYTHON={sys.executable}"], cwd=folder, capture_output=True,
                          text=True, timeout=60, check=True).stdout  # fmt: skip


def test_make_run_installs_only_when_pyproject_changed(tmp_path) -> None:
    """Point 9: the pip reinstall (6 s of every `make run`) happens once per change of pyproject.toml."""
    import os
    import shutil
    import time

    root = Path(__file__).resolve().parents[1]
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(root / name, tmp_path / name)
    assert "pip install -q -e ." in make_dry_run(tmp_path)  # never installed from here: install
    stamps = tmp_path / ".make"
    stamps.mkdir()
    for line in make_dry_run(tmp_path).splitlines():  # the stamp the rule would touch
        if "touch " in line:
            for stamp in line.split("touch ", 1)[1].split():
                (tmp_path / stamp).touch()
    assert list(stamps.iterdir())
    second = make_dry_run(tmp_path)
    assert "pip install" not in second and "isegformer_app.main" in second  # opens at once
    later = time.time() + 5
    os.utime(tmp_path / "pyproject.toml", (later, later))  # the dependencies changed
    assert "pip install -q -e ." in make_dry_run(tmp_path)
