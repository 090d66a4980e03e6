"""Start-up on a bare Linux: a missing screen or system library is one message and exit 2, never Qt's SIGABRT.

The end-to-end tests run the real ``qstudio`` command in a subprocess with an
X ``DISPLAY`` and ``QT_QPA_PLATFORM`` unset.  To hide a library Qt needs on
any machine, a copy of PySide6's xcb QPA library is made whose ``NEEDED``
entry for ``libxcb-cursor.so.0`` names a library that exists nowhere (the
same-length string is replaced inside the ELF's dynamic string table, so the
file stays a valid shared object; ``ldd`` reports it ``not found`` exactly as
on a machine without the package).  A folder with that copy, put first on
``PYTHONPATH`` as ``PySide6``, is what the check finds.  Where this machine
really lacks libraries (a fresh Debian 12 lacks libxcb-icccm4 and
libxcb-keysyms1), the real PySide6 is tested too, next to the abort Qt itself
ends in.
"""

from __future__ import annotations

import ctypes
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from qstudio.ui import platform_check as pc

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Qt's xcb plugin is Linux only")

REAL_PYSIDE6 = pc.pyside6_folder()
QSTUDIO = Path(sys.executable).with_name("qstudio")
HIDDEN, STAND_IN = b"libxcb-cursor.so.0", b"libxcb-nosuch.so.0"  # same length: the ELF layout is unchanged
NO_SCREEN = "no screen: set QT_QPA_PLATFORM=offscreen or run headless with `qstudio quantize ...`"


def qstudio_command() -> list[str]:
    return [str(QSTUDIO)] if QSTUDIO.is_file() else [sys.executable, "-m", "qstudio.cli"]


def screen_env(pythonpath: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment of a desktop session on X: DISPLAY set, no Wayland, no QT_QPA_PLATFORM."""
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY", "DISPLAY")}
    env.pop("PYTHONPATH", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    env.update(extra)
    return env


def no_core_dump() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=120, preexec_fn=no_core_dump, check=False
    )


def unused_display() -> str:
    for n in range(99, 200):
        path = f"/tmp/.X11-unix/X{n}"
        if os.path.exists(path):
            continue
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect("\0" + path)
                continue
            except OSError:
                return f":{n}"
    pytest.skip("no free X display number")


def assert_clean_exit_2(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)  # -6 / 134 would be SIGABRT
    assert proc.stderr.startswith("qstudio: error: "), proc.stderr
    for sign in ("Traceback", "Aborted", "core dumped", "could not load the Qt platform plugin", "qt.qpa"):
        assert sign not in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def real_xcb_files() -> list[Path]:
    if REAL_PYSIDE6 is None or shutil.which("ldd") is None:
        pytest.skip("needs PySide6 and ldd")
    files = pc.xcb_plugin_files()
    if not files:
        pytest.skip("this PySide6 has no xcb platform plugin")
    return files


@pytest.fixture(scope="module")
def fake_pyside6(tmp_path_factory, real_xcb_files) -> Path:
    """A folder holding ``PySide6/`` whose xcb QPA library needs a library no machine has."""
    root = tmp_path_factory.mktemp("fake-pyside6")
    pkg = root / "PySide6"
    (pkg / "Qt" / "plugins" / "platforms").mkdir(parents=True)
    (pkg / "Qt" / "lib").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    for lib in (REAL_PYSIDE6 / "Qt" / "lib").iterdir():
        if lib.name != "libQt6XcbQpa.so.6":
            (pkg / "Qt" / "lib" / lib.name).symlink_to(lib)
    qpa = (REAL_PYSIDE6 / "Qt" / "lib" / "libQt6XcbQpa.so.6").read_bytes()
    assert qpa.count(b"\0" + HIDDEN + b"\0") == 1, "the QPA library no longer names libxcb-cursor.so.0"
    (pkg / "Qt" / "lib" / "libQt6XcbQpa.so.6").write_bytes(
        qpa.replace(b"\0" + HIDDEN + b"\0", b"\0" + STAND_IN + b"\0")
    )
    # a copy, not a link: its RUNPATH $ORIGIN/../../lib must lead to the fake lib folder
    shutil.copy2(REAL_PYSIDE6 / "Qt" / "plugins" / "platforms" / "libqxcb.so", pkg / "Qt" / "plugins" / "platforms")
    ldd = subprocess.run(
        ["ldd", str(pkg / "Qt" / "plugins" / "platforms" / "libqxcb.so")], capture_output=True, text=True
    )
    assert f"{STAND_IN.decode()} => not found" in ldd.stdout, ldd.stdout  # the set-up hides what it should
    return root


# -- ldd output ---------------------------------------------------------------------------
def test_parse_real_ldd_output_of_the_xcb_plugin(real_xcb_files):
    plugin = real_xcb_files[0]
    text = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True, check=True).stdout
    parsed = pc.parse_ldd(text)
    assert parsed.found["libQt6XcbQpa.so.6"].endswith("libQt6XcbQpa.so.6")
    assert Path(parsed.found["libQt6XcbQpa.so.6"]).resolve() == (REAL_PYSIDE6 / "Qt/lib/libQt6XcbQpa.so.6").resolve()
    assert "libc.so.6" in parsed.found and "libxcb.so.1" in parsed.found
    for name, path in parsed.found.items():
        assert os.path.exists(path), (name, path)  # a path, with the load address stripped
    assert len(parsed.missing) == len(set(parsed.missing)) == len(set(re.findall(r"(\S+) => not found", text)))
    for name in parsed.missing:  # the dynamic loader agrees: these do not load
        with pytest.raises(OSError):
            ctypes.CDLL(name)
    assert not set(parsed.missing) & set(parsed.found)
    assert (
        pc.missing_libraries(real_xcb_files)
        == pc.parse_ldd(
            subprocess.run(["ldd", *map(str, real_xcb_files)], capture_output=True, text=True).stdout
        ).missing
    )


def test_parse_ldd_lines():
    text = (
        "\tlinux-vdso.so.1 (0x00007ffd5e5f2000)\n"
        "\tlibQt6XcbQpa.so.6 => /opt/PySide6/Qt/plugins/platforms/../../lib/libQt6XcbQpa.so.6 (0x00007f60341b1000)\n"
        "\tlibxcb-icccm.so.4 => not found\n"
        "\tlibxcb.so.1 => /lib/x86_64-linux-gnu/libxcb.so.1 (0x00007f6032db9000)\n"
        "\tlibxcb-icccm.so.4 => not found\n"
        "\tlibxcb-keysyms.so.1 => not found\n"
        "\t/lib64/ld-linux-x86-64.so.2 (0x00007f6034281000)\n"
    )
    parsed = pc.parse_ldd(text)
    assert parsed.missing == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    assert parsed.found == {
        "libQt6XcbQpa.so.6": "/opt/PySide6/Qt/plugins/platforms/../../lib/libQt6XcbQpa.so.6",
        "libxcb.so.1": "/lib/x86_64-linux-gnu/libxcb.so.1",
    }
    # found for one file, missing for another: missing
    both = pc.parse_ldd("\tlibxcb.so.1 => not found\n", parsed)
    assert "libxcb.so.1" in both.missing and "libxcb.so.1" not in both.found


def test_debian_packages_and_the_apt_line():
    assert pc.debian_package("libxcb-icccm.so.4") == "libxcb-icccm4"
    assert pc.debian_package("libxcb-cursor.so.0") == "libxcb-cursor0"
    assert pc.debian_package("libxkbcommon-x11.so.0") == "libxkbcommon-x11-0"
    assert pc.debian_package("libGLdispatch.so.0") == "libglvnd0"
    # not in the table: Debian's naming rule
    assert pc.debian_package("libxcb-nosuch.so.0") == "libxcb-nosuch0"
    assert pc.debian_package("libfoo-2.so.3.1") == "libfoo-2-3"
    for soname, package in pc.DEBIAN_PACKAGES.items():  # the table only where the rule is not enough or for the record
        assert re.fullmatch(r"[a-z0-9][a-z0-9.+-]+", package), (soname, package)
    line = pc.apt_install_line(["libglib-2.0.so.0", "libgthread-2.0.so.0", "libxcb-keysyms.so.1"])
    assert line == "sudo apt-get install -y libglib2.0-0 libxcb-keysyms1"


def test_libraries_of_the_wheel_itself_point_at_pip_not_apt():
    err = pc.missing_libraries_error(["libQt6Gui.so.6"], "Qt's xcb platform plugin")
    assert "apt-get" not in str(err) and "--force-reinstall PySide6-Essentials" in str(err)


# -- which platform, which screen ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("env", "platform"),
    [
        ({}, None),
        ({"DISPLAY": ":0"}, "xcb"),
        ({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"}, "wayland"),
        ({"QT_QPA_PLATFORM": "offscreen"}, "offscreen"),
        ({"QT_QPA_PLATFORM": "xcb"}, "xcb"),
        ({"QT_QPA_PLATFORM": "xcb:nograb;wayland", "WAYLAND_DISPLAY": "w"}, "xcb"),
        ({"QT_QPA_PLATFORM": "wayland;xcb", "DISPLAY": ":0"}, "wayland"),
    ],
)
def test_qt_platform(env, platform):
    assert pc.qt_platform(env) == platform


def test_other_platforms_are_not_checked(tmp_path):
    for env in ({"QT_QPA_PLATFORM": "offscreen"}, {"QT_QPA_PLATFORM": "wayland"}, {"WAYLAND_DISPLAY": "wayland-0"}):
        assert pc.window_problem(env, pyside6=tmp_path) is None


def test_x_display_probe_connects_to_the_server_socket(tmp_path):
    folder = tmp_path / "x11"
    folder.mkdir()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(folder / "X7"))
        server.listen(1)
        assert pc.x_display_reachable(":7", folder) is True
        assert pc.x_display_reachable("unix:7.0", folder) is True
    assert pc.x_display_reachable(":8", folder) is False
    assert pc.x_display_reachable("localhost:10.0", folder) is None  # ssh -X: not probed


def test_a_display_nobody_answers_on_is_a_message(tmp_path):
    display = unused_display()
    err = pc.window_problem({"DISPLAY": display}, pyside6=tmp_path)  # no plugin here: only the screen is checked
    assert err is not None and f"no X server answers on DISPLAY={display}" in str(err)


def test_importing_the_check_loads_no_qt():
    code = "import sys, qstudio.ui.platform_check; print(sorted(m for m in sys.modules if m.startswith(('PySide6', 'shiboken6'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- the qstudio command, end to end -----------------------------------------------------------------
def test_missing_xcb_library_is_an_apt_line_and_exit_2(fake_pyside6, tmp_path):
    display = unused_display()
    proc = run(qstudio_command(), screen_env(fake_pyside6, DISPLAY=display), tmp_path)
    assert_clean_exit_2(proc)
    assert STAND_IN.decode() in proc.stderr.splitlines()[0]
    apt = [line for line in proc.stderr.splitlines() if line.startswith("sudo apt-get install -y ")]
    assert len(apt) == 1, proc.stderr
    assert "libxcb-nosuch0" in apt[0].split()
    # every package of the line is one the check found missing, and only those
    missing = pc.parse_ldd(
        subprocess.run(
            ["ldd", str(fake_pyside6 / "PySide6/Qt/plugins/platforms/libqxcb.so")], capture_output=True, text=True
        ).stdout
    ).missing
    assert apt[0] == pc.apt_install_line(missing)


def test_explicit_xcb_platform_is_checked_too(fake_pyside6, tmp_path):
    proc = run(qstudio_command(), screen_env(fake_pyside6, DISPLAY=unused_display(), QT_QPA_PLATFORM="xcb"), tmp_path)
    assert_clean_exit_2(proc)
    assert "libxcb-nosuch0" in proc.stderr


def test_this_machines_missing_libraries_instead_of_qts_abort(real_xcb_files, tmp_path):
    missing = pc.missing_libraries(real_xcb_files)
    if not missing:
        pytest.skip("every library of Qt's xcb plugin is installed here (the fake PySide6 tests cover the check)")
    display = unused_display()
    # what Qt does on its own with these libraries missing: abort
    qt_alone = run([sys.executable, "-c", "from PySide6.QtWidgets import QApplication; QApplication([])"],
                   screen_env(DISPLAY=display), tmp_path)  # fmt: skip
    assert qt_alone.returncode < 0 or qt_alone.returncode == 134, (qt_alone.returncode, qt_alone.stderr)
    proc = run(qstudio_command(), screen_env(DISPLAY=display), tmp_path)
    assert_clean_exit_2(proc)
    for soname in missing:
        assert soname in proc.stderr
    assert proc.stderr.splitlines()[-1] == pc.apt_install_line(missing)
    if {"libxcb-icccm.so.4", "libxcb-keysyms.so.1"} <= set(missing):  # the fresh Debian 12 of the issue
        assert "libxcb-icccm4" in proc.stderr and "libxcb-keysyms1" in proc.stderr


def test_no_screen_at_all_says_so(tmp_path):
    proc = run(qstudio_command(), screen_env(), tmp_path)
    assert_clean_exit_2(proc)
    assert NO_SCREEN in proc.stderr.splitlines()[0]


def test_display_without_x_server_is_a_message(tmp_path):
    empty = tmp_path / "pyside6-without-xcb" / "PySide6"  # the libraries are not in question here
    empty.mkdir(parents=True)
    (empty / "__init__.py").write_text("")
    display = unused_display()
    proc = run(qstudio_command(), screen_env(empty.parent, DISPLAY=display), tmp_path)
    assert_clean_exit_2(proc)
    assert f"no X server answers on DISPLAY={display}" in proc.stderr


def test_help_needs_no_screen(tmp_path):
    proc = run([*qstudio_command(), "demo", "--help"], screen_env(), tmp_path)
    assert proc.returncode == 0 and "usage: qstudio" in proc.stdout, proc.stderr


def test_offscreen_is_not_blocked():
    assert pc.window_problem({"QT_QPA_PLATFORM": "offscreen"}) is None
    pc.ensure_window_can_open({"QT_QPA_PLATFORM": "offscreen"})


# -- the window that does not import ---------------------------------------------------------------
def test_a_missing_system_library_at_import_is_an_apt_line():
    exc = ImportError("libEGL.so.1: cannot open shared object file: No such file or directory")
    err = pc.import_problem(exc)
    assert "libEGL.so.1" in str(err) and str(err).splitlines()[-1] == "sudo apt-get install -y libegl1"


def test_an_import_error_inside_qstudio_is_left_to_the_internal_error_handler():
    exc = ImportError("cannot import name 'run_recipe' from 'qstudio.core.pipeline'", name="qstudio.core.pipeline")
    assert pc.import_problem(exc) is None


BLOCK = r"""
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "pyqtgraph":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
from qstudio.cli import main
sys.exit(main([]))
"""


def test_a_missing_window_package_names_the_pip_line(tmp_path):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = run([sys.executable, "-c", BLOCK], env, tmp_path)
    assert_clean_exit_2(proc)
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "No module named 'pyqtgraph'" in proc.stderr
    assert f"{sys.executable} -m pip install PySide6-Essentials pyqtgraph superqt" in proc.stderr
    assert "qstudio quantize" in proc.stderr
