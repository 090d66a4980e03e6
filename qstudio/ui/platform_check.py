"""Can Qt open a window here?  Checked before the QApplication exists.

Qt ends in ``abort()`` (SIGABRT, a core dump and a hint that often names a
package that is already installed) when its platform plugin cannot start: on
a fresh Debian or Ubuntu, the xcb plugin of the PySide6 wheel needs system
libraries (``libxcb-icccm4``, ``libxcb-keysyms1``, ``libxcb-cursor0`` ...)
that a desktop install has and a minimal one lacks; without any screen at
all the default xcb plugin aborts too.  This module finds those cases first
and raises :class:`WindowUnavailable`, a :class:`QStudioError` the ``qstudio``
command prints as one message (the missing libraries and the exact
``sudo apt-get install -y ...`` line) and exits 2.

How: Qt's xcb plugin, ``PySide6/Qt/plugins/platforms/libqxcb.so`` and its
``PySide6/Qt/lib/libQt6XcbQpa.so.6``, are given to ``ldd``, which resolves
their shared libraries the way the dynamic loader will (RUNPATH,
LD_LIBRARY_PATH, ld.so.cache); every ``=> not found`` is a library Qt would
fail on.  PySide6 is located with :func:`importlib.util.find_spec`, never
imported, so nothing here loads Qt.  When the check itself cannot run (no
``ldd``, another operating system) it says nothing and Qt proceeds as before.
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from qstudio.core.errors import QStudioError

HEADLESS_HINT = "run headless with `qstudio quantize ...`"
NO_SCREEN = f"no screen: set QT_QPA_PLATFORM=offscreen or {HEADLESS_HINT}"

# soname -> the Debian/Ubuntu package that ships it: what the xcb plugin and the Qt libraries
# under it load (Qt 6.5+ needs libxcb-cursor0).  A soname not listed is mapped by Debian's
# library-package naming rule (see debian_package).
DEBIAN_PACKAGES: dict[str, str] = {
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-xinput.so.0": "libxcb-xinput0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-glx.so.0": "libxcb-glx0",
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libXau.so.6": "libxau6",
    "libXdmcp.so.6": "libxdmcp6",
    "libSM.so.6": "libsm6",
    "libICE.so.6": "libice6",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libGLX.so.0": "libglx0",
    "libGLdispatch.so.0": "libglvnd0",
    "libOpenGL.so.0": "libopengl0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libgobject-2.0.so.0": "libglib2.0-0",
    "libz.so.1": "zlib1g",
    "libpng16.so.16": "libpng16-16",
    "libexpat.so.1": "libexpat1",
    "libzstd.so.1": "libzstd1",
    "libbrotlidec.so.1": "libbrotli1",
    "libbrotlicommon.so.1": "libbrotli1",
    "libpcre2-8.so.0": "libpcre2-8-0",
    "libbsd.so.0": "libbsd0",
    "libmd.so.0": "libmd0",
    "libstdc++.so.6": "libstdc++6",
    "libgcc_s.so.1": "libgcc-s1",
}

# Libraries that come inside the PySide6 wheel: missing means a broken PySide6, not a system package.
_WHEEL_LIBRARY = re.compile(r"^lib(Qt6|icu|pyside6|shiboken6)", re.IGNORECASE)


class WindowUnavailable(QStudioError):
    """The window cannot open here; the message says why and what to run."""

    def __init__(self, problem: str, fix: str, *, lines: Iterable[str] = ()) -> None:
        self.lines = list(lines)
        super().__init__(problem, fix)

    def __str__(self) -> str:
        # problem and fix on the first line; copy-and-paste commands each on a line of their own
        return "\n".join([super().__str__(), *self.lines])


# -- ldd ---------------------------------------------------------------------------------
@dataclass
class LddResult:
    """What ``ldd`` said about one or more files: sonames resolved to paths, and the ones not found."""

    found: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


_LDD_LINE = re.compile(r"^\s*(?P<name>\S+)\s+=>\s+(?P<target>.*?)\s*$")


def parse_ldd(text: str, into: LddResult | None = None) -> LddResult:
    """Parse ``ldd`` output: ``name => /path (0x...)``, ``name => not found``, ``/lib64/ld-linux... (0x...)``.

    Each soname is listed once, in the order ``ldd`` printed it; a name found
    in one file's output and missing in another's counts as missing.
    """
    result = into or LddResult()
    for line in text.splitlines():
        m = _LDD_LINE.match(line)
        if not m:
            continue  # the vdso, the loader itself, a file header of a multi-file run
        name, target = m["name"], m["target"]
        if target == "not found":
            if name not in result.missing:
                result.missing.append(name)
            result.found.pop(name, None)
        elif name not in result.missing:
            result.found.setdefault(name, re.sub(r"\s*\(0x[0-9a-f]+\)$", "", target))
    return result


@lru_cache(maxsize=8)
def _ldd(files: tuple[str, ...], library_path: str) -> LddResult | None:
    result = LddResult()
    for f in files:
        try:
            proc = subprocess.run(["ldd", f], capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.SubprocessError):
            return None  # no ldd here: nothing to say, Qt will try on its own
        if proc.returncode != 0 and "=>" not in proc.stdout:
            return None  # "not a dynamic executable" and the like
        parse_ldd(proc.stdout, result)
    return result


def missing_libraries(files: Iterable[Path]) -> list[str] | None:
    """Sonames the dynamic loader cannot find for ``files`` (``[]`` when all resolve, ``None`` when unknown)."""
    result = _ldd(tuple(str(f) for f in files), os.environ.get("LD_LIBRARY_PATH", ""))
    return None if result is None else list(result.missing)


def pyside6_folder() -> Path | None:
    """The installed PySide6 package folder, found without importing it."""
    try:
        spec = importlib.util.find_spec("PySide6")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(spec.origin).parent if spec.origin else None


def xcb_plugin_files(pyside6: Path | None = None) -> list[Path]:
    """Qt's xcb platform plugin and its QPA library inside the PySide6 wheel (the ones that exist)."""
    folder = pyside6 or pyside6_folder()
    if folder is None:
        return []
    candidates = [folder / "Qt" / "plugins" / "platforms" / "libqxcb.so", folder / "Qt" / "lib" / "libQt6XcbQpa.so.6"]
    return [p for p in candidates if p.is_file()]


# -- packages ------------------------------------------------------------------------------
def debian_package(soname: str) -> str:
    """The Debian/Ubuntu package shipping ``soname``: from the table, else by Debian's naming rule.

    The rule (Debian policy 8.1): ``libfoo.so.4`` is in ``libfoo4``, and
    ``libfoo-1.so.3``, whose name ends in a digit, in ``libfoo-1-3``.
    """
    if soname in DEBIAN_PACKAGES:
        return DEBIAN_PACKAGES[soname]
    m = re.match(r"^(?P<stem>.+?)\.so\.(?P<version>[0-9][0-9.]*)$", soname)
    if not m:
        return soname.lower()
    stem, version = m["stem"].lower(), m["version"].split(".")[0]
    return f"{stem}-{version}" if stem[-1].isdigit() else f"{stem}{version}"


def apt_install_line(sonames: Iterable[str]) -> str:
    """``sudo apt-get install -y`` with the packages for ``sonames``, each package once, in order."""
    packages = list(dict.fromkeys(debian_package(s) for s in sonames))
    return "sudo apt-get install -y " + " ".join(packages)


def missing_libraries_error(missing: list[str], what: str) -> WindowUnavailable:
    """The message for shared libraries ``what`` needs that are not installed."""
    from_wheel = [s for s in missing if _WHEEL_LIBRARY.match(s)]
    system = [s for s in missing if s not in from_wheel]
    if not system:
        return WindowUnavailable(
            f"the window cannot start: {what} needs {', '.join(from_wheel)}, which should have come with PySide6",
            f"reinstall it: `{sys.executable} -m pip install --force-reinstall PySide6-Essentials`, or {HEADLESS_HINT}",
        )
    return WindowUnavailable(
        f"the window cannot start: {what} needs system libraries that are not installed: {', '.join(missing)}",
        f"install them (Debian/Ubuntu package names) with the line below, or {HEADLESS_HINT}",
        lines=[apt_install_line(system)],
    )


# -- which platform, which screen ----------------------------------------------------------------
def qt_platform(environ: Mapping[str, str]) -> str | None:
    """The platform plugin Qt will start with, as far as it matters here; ``None`` when there is no screen.

    ``QT_QPA_PLATFORM`` wins (its first entry, without options: ``xcb:foo;wayland`` is ``xcb``);
    unset, Qt takes Wayland in a Wayland session and xcb with an X ``DISPLAY``.
    """
    requested = environ.get("QT_QPA_PLATFORM", "").strip()
    if requested:
        return requested.split(";")[0].split(":")[0].strip().lower() or None
    if environ.get("WAYLAND_DISPLAY"):
        return "wayland"
    if environ.get("DISPLAY"):
        return "xcb"
    return None


def x_display_reachable(display: str, socket_dir: Path = Path("/tmp/.X11-unix")) -> bool | None:
    """Whether an X server listens on a local ``DISPLAY`` (``:0``, ``unix:1.0``); ``None`` when not local.

    Tries the socket file, then Linux's abstract socket of the same name, the
    two places a local X server (Xorg, Xvfb, Xwayland) listens.  Displays on
    another host (``localhost:10.0`` of ssh -X) are not probed.
    """
    m = re.fullmatch(r"(?:unix)?:(\d+)(?:\.\d+)?", display.strip())
    if not m:
        return None
    path = str(socket_dir / f"X{m[1]}")
    for address in (path, "\0" + path):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2.0)
            try:
                s.connect(address)
                return True
            except OSError:
                continue
    return False


def window_problem(environ: Mapping[str, str] | None = None, pyside6: Path | None = None) -> WindowUnavailable | None:
    """Why Qt would abort opening a window here, or ``None`` when nothing is known to stop it."""
    env = os.environ if environ is None else environ
    if not sys.platform.startswith("linux"):
        return None
    platform = qt_platform(env)
    if platform not in (None, "xcb"):
        return None  # offscreen, wayland, eglfs ...: not checked
    files = xcb_plugin_files(pyside6)
    missing = missing_libraries(files) if files else None
    libraries = missing_libraries_error(missing, "Qt's xcb platform plugin") if missing else None
    if platform is None or not env.get("DISPLAY"):
        why = (
            "neither DISPLAY nor WAYLAND_DISPLAY is set"
            if platform is None
            else "QT_QPA_PLATFORM=xcb but DISPLAY is not set"
        )
        problem = f"{NO_SCREEN} ({why}, so Qt has nowhere to open the window)"
        if libraries is None:
            return WindowUnavailable(problem, "")
        # both: the screen first, then what a screen would also need
        return WindowUnavailable(
            problem, "", lines=[f"with a screen the window would also need: {', '.join(missing)}", *libraries.lines]
        )
    if libraries is not None:
        return libraries
    display = env["DISPLAY"]
    if x_display_reachable(display) is False:
        return WindowUnavailable(
            f"no screen: no X server answers on DISPLAY={display}",
            f"start one or fix DISPLAY, set QT_QPA_PLATFORM=offscreen, or {HEADLESS_HINT}",
        )
    return None


def ensure_window_can_open(environ: Mapping[str, str] | None = None) -> None:
    """Raise :class:`WindowUnavailable` when Qt would abort creating the application here."""
    problem = window_problem(environ)
    if problem is not None:
        raise problem


# -- PySide6 that does not import ----------------------------------------------------------
_SHARED_OBJECT = re.compile(r"([\w.+-]+\.so(?:\.[0-9.]+)?): cannot open shared object file")
WINDOW_PACKAGES = ("PySide6", "pyqtgraph", "superqt", "shiboken6")


def import_problem(exc: ImportError) -> WindowUnavailable | None:
    """The message for an ImportError raised while importing the window, or ``None`` when it is qstudio's own bug.

    A system library Qt cannot load gets the apt-get line; a missing window
    package (PySide6, pyqtgraph, superqt) the pip line.
    """
    m = _SHARED_OBJECT.search(str(exc))
    if m:
        return missing_libraries_error([m[1]], "Qt")
    name = (getattr(exc, "name", None) or "").split(".")[0]
    if name in WINDOW_PACKAGES:
        return WindowUnavailable(
            f"the qstudio window is not available in this environment ({exc})",
            "install the window's packages, ordinary dependencies of qstudio: "
            f"`{sys.executable} -m pip install PySide6-Essentials pyqtgraph superqt`, or {HEADLESS_HINT}",
        )
    return None
