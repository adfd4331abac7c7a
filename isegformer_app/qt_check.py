"""``python -m isegformer_app.qt_check``: before the window opens, check that Qt's X11 (xcb) platform
plugin can load, and print the exact install line for the system libraries it lacks.

Without them Qt aborts with 'Could not load the Qt platform plugin "xcb"' and names only
xcb-cursor0, while ``ldd`` on the plugin shows what is really missing (on a fresh Debian 12:
libxcb-icccm4 and libxcb-keysyms1). Nothing is checked when another platform is chosen
(``QT_QPA_PLATFORM=offscreen`` / ``wayland`` ...) or off Linux. Exit status 1 when something is missing.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

# Qt >= 6.5 loads libxcb-cursor at run time (ldd does not list it)
LOADED_AT_RUN_TIME = ("libxcb-cursor.so.0",)

# What the distributions call the package of a library, where Debian's soname rule (below) is not it.
DEBIAN_EXCEPTIONS = {"libglib-2.0.so.0": "libglib2.0-0"}
FEDORA_PACKAGES = {
    "libxcb-icccm.so.4": "xcb-util-wm", "libxcb-keysyms.so.1": "xcb-util-keysyms",
    "libxcb-image.so.0": "xcb-util-image", "libxcb-render-util.so.0": "xcb-util-renderutil",
    "libxcb-cursor.so.0": "xcb-util-cursor", "libxcb-util.so.1": "xcb-util",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11", "libxkbcommon.so.0": "libxkbcommon",
    "libX11-xcb.so.1": "libX11-xcb", "libEGL.so.1": "libglvnd-egl", "libGL.so.1": "libglvnd-glx",
    "libfontconfig.so.1": "fontconfig", "libdbus-1.so.3": "dbus-libs",
}  # fmt: skip
ARCH_PACKAGES = {
    "libxcb-icccm.so.4": "xcb-util-wm", "libxcb-keysyms.so.1": "xcb-util-keysyms",
    "libxcb-image.so.0": "xcb-util-image", "libxcb-render-util.so.0": "xcb-util-renderutil",
    "libxcb-cursor.so.0": "xcb-util-cursor", "libxcb-util.so.1": "xcb-util",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11", "libxkbcommon.so.0": "libxkbcommon",
    "libX11-xcb.so.1": "libx11", "libEGL.so.1": "libglvnd", "libGL.so.1": "libglvnd",
    "libfontconfig.so.1": "fontconfig", "libdbus-1.so.3": "dbus",
}  # fmt: skip


def needs_check(env: Mapping[str, str], system: str = sys.platform) -> bool:
    """True when Qt will try the xcb plugin: on Linux, unless another platform is chosen."""
    chosen = env.get("QT_QPA_PLATFORM", "").strip().lower()
    return system.startswith("linux") and (not chosen or chosen.split(":")[0].startswith("xcb"))


def xcb_plugin() -> Path | None:
    """PySide6's ``libqxcb.so`` (found without importing Qt), None if it is not there."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    plugin = Path(next(iter(spec.submodule_search_locations))) / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    return plugin if plugin.is_file() else None


def run_ldd(path: Path) -> str:
    """``ldd path`` output ("" when ldd is not there)."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return ""
    return subprocess.run([ldd, str(path)], capture_output=True, text=True, timeout=30).stdout


def not_found(ldd_output: str) -> list[str]:
    """The libraries ``ldd`` could not find, each once, in order: ``libxcb-icccm.so.4 => not found``."""
    names = re.findall(r"^\s*(\S+)\s*=>\s*not found", ldd_output, flags=re.MULTILINE)
    return list(dict.fromkeys(names))


def loadable(soname: str) -> bool:
    """True if the dynamic loader finds ``soname`` (a library Qt opens at run time)."""
    import ctypes

    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def missing_libraries(plugin: Path, ldd: Callable[[Path], str] = run_ldd,
                      can_load: Callable[[str], bool] = loadable) -> list[str]:  # fmt: skip
    """The sonames the xcb plugin needs and the system lacks."""
    missing = not_found(ldd(plugin))
    return missing + [name for name in LOADED_AT_RUN_TIME if name not in missing and not can_load(name)]


def debian_package(soname: str) -> str:
    """Debian's package of a shared library: ``libfoo-bar.so.4`` -> ``libfoo-bar4``, a hyphen before
    the number when the name ends in a digit (``libxkbcommon-x11.so.0`` -> ``libxkbcommon-x11-0``)."""
    if soname in DEBIAN_EXCEPTIONS:
        return DEBIAN_EXCEPTIONS[soname]
    stem, _, version = soname.partition(".so.")
    stem, version = stem.lower(), version.split(".")[0]
    return f"{stem}-{version}" if stem[-1].isdigit() else f"{stem}{version}"


def distribution(os_release: str) -> str:
    """"debian", "fedora", "arch", "suse" or "" from the text of ``/etc/os-release``."""
    ids = " ".join(re.findall(r"^(?:ID|ID_LIKE)=\"?([^\"\n]*)", os_release, flags=re.MULTILINE)).lower()
    for family, words in (("debian", ("debian", "ubuntu")), ("fedora", ("fedora", "rhel", "centos")),
                          ("arch", ("arch",)), ("suse", ("suse",))):  # fmt: skip
        if any(word in ids.split() for word in words):
            return family
    return ""


def _package(table: dict[str, str], soname: str) -> str:
    """The package in ``table``; the other xcb / X11 libraries come in one package (libxcb, libX11)."""
    for prefix in ("libxcb", "libX11"):
        if soname not in table and soname.startswith(prefix):
            return prefix if table is FEDORA_PACKAGES else prefix.lower()
    return table.get(soname, soname.partition(".so")[0])


def install_lines(missing: list[str], os_release: str) -> list[str]:
    """The command that installs ``missing`` on this distribution (all known ones when it is not known)."""
    debian = " ".join(dict.fromkeys(debian_package(name) for name in missing))
    fedora = " ".join(dict.fromkeys(_package(FEDORA_PACKAGES, name) for name in missing))
    arch = " ".join(dict.fromkeys(_package(ARCH_PACKAGES, name) for name in missing))
    lines = {
        "debian": f"sudo apt-get install {debian}",
        "fedora": f"sudo dnf install {fedora}",
        "arch": f"sudo pacman -S {arch}",
        "suse": f"sudo zypper install {debian}",  # openSUSE names these libraries as Debian does
    }
    family = distribution(os_release)
    return [lines[family]] if family else list(lines.values())


def report(env: Mapping[str, str], os_release: str, plugin: Path | None = None,
           ldd: Callable[[Path], str] = run_ldd,
           can_load: Callable[[str], bool] = loadable) -> str:  # fmt: skip
    """What to tell the user ("" when the window can open)."""
    if not needs_check(env):
        return ""
    plugin = plugin or xcb_plugin()
    if plugin is None:
        return ""
    missing = missing_libraries(plugin, ldd, can_load)
    own = [name for name in missing if name.startswith("libQt6")]  # PySide6's own: a broken install
    if own:
        return (f"PySide6 is incomplete ({', '.join(own)} not found): reinstall it with "
                f"{sys.executable} -m pip install --force-reinstall PySide6")  # fmt: skip
    if not missing:
        return ""
    lines = install_lines(missing, os_release)
    return ("Qt's X11 platform plugin (xcb) cannot load: the system lacks " + ", ".join(missing) + ".\n"
            "Install them with:\n    " + "\n    ".join(lines) + "\n"
            "(or run with QT_QPA_PLATFORM=wayland on a Wayland desktop; "
            "see README, 'System packages').")  # fmt: skip


def main() -> int:
    try:
        os_release = Path("/etc/os-release").read_text(encoding="utf-8", errors="replace")
    except OSError:
        os_release = ""
    text = report(os.environ, os_release)
    if text:
        print(text, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
