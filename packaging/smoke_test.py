"""Smoke test of an INSTALLED qstudio wheel: the package, its data files, the command and the window.

Run it with the Python of the environment the wheel was installed into, from a
directory outside the source checkout, so nothing can be imported from the
checkout by accident (packaging/build_and_smoke.sh does all of that):

    cd /some/empty/dir && /path/to/venv/bin/python smoke_test.py --source /path/to/checkout

``--source`` is only used to compare file lists (every module of the
checkout's ``qstudio/`` must be in the installed package) and to check that
nothing was imported from it.  Exit status 0 when every check passed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEMO_FILES = ("digits_resnet.safetensors", "data.py", "model.py", "meta.json")
WINDOW_SECONDS = 3.0

checks: list[str] = []


def ok(message: str) -> None:
    checks.append(message)
    print(f"  ok  {message}", flush=True)


def fail(message: str) -> None:
    print(f"FAIL  {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def check(condition: object, message: str, detail: str = "") -> None:
    if not condition:
        fail(f"{message}{': ' + detail if detail else ''}")
    ok(message)


def is_under(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def console_script() -> Path:
    """The ``qstudio`` command installed next to this interpreter."""
    bindir = Path(sys.executable).parent
    for name in ("qstudio", "qstudio.exe"):
        if (bindir / name).is_file():
            return bindir / name
    fail(f"no qstudio console script in {bindir}")
    raise AssertionError


def run_command(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    env.pop("PYTHONPATH", None)
    started = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        fail(f"`{' '.join(args)}` exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    print(
        f"      ({' '.join(Path(a).name if i == 0 else a for i, a in enumerate(args))}: {time.perf_counter() - started:.1f} s)"
    )
    return proc


# -- checks ------------------------------------------------------------------------------
def check_import(source: Path | None) -> Path:
    import qstudio

    package = Path(qstudio.__file__).resolve().parent
    print(f"qstudio {qstudio.__version__} from {package}")
    if source is not None:
        check(
            not is_under(package, source),
            "qstudio is imported from the installed wheel, not the checkout",
            str(package),
        )
    check(
        any(part in ("site-packages", "dist-packages") for part in package.parts),
        "qstudio lives in site-packages",
        str(package),
    )
    dist = importlib.metadata.distribution("qstudio")
    check(dist.version == qstudio.__version__, f"installed metadata version {dist.version} matches qstudio.__version__")
    record = dist.locate_file("qstudio/__init__.py")
    check(
        Path(str(record)).resolve() == package / "__init__.py",
        "the qstudio distribution found first is the one imported",
    )
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    check(scripts.get("qstudio") == "qstudio.cli:main", "console script entry point qstudio = qstudio.cli:main")
    return package


def check_package_files(package: Path, source: Path | None) -> None:
    from qstudio.core.paths import resources_dir

    resources = resources_dir().resolve()
    check(
        resources == package / "resources", "resources_dir() is the folder inside the installed package", str(resources)
    )
    for name in DEMO_FILES:
        check((resources / "demo" / name).is_file(), f"demo file resources/demo/{name} is installed")
    check((resources / "icons" / "qstudio.svg").is_file(), "icon resources/icons/qstudio.svg is installed")

    from qstudio.core import report

    template = Path(report.TEMPLATE_DIR) / report.TEMPLATE_NAME
    check(
        template.is_file() and is_under(template, package),
        f"report template {template.relative_to(package)} is installed",
    )

    if source is not None and (source / "qstudio").is_dir():

        def files(folder: Path, relative_to: Path) -> set[str]:
            return {
                p.relative_to(relative_to).as_posix()
                for p in folder.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
            }

        wanted, have = files(source / "qstudio", source), files(package, package.parent)
        missing = sorted(wanted - have)
        check(not missing, f"all {len(wanted)} files of the checkout's qstudio/ are in the wheel", ", ".join(missing))
        wanted_res, have_res = files(source / "resources", source / "resources"), files(resources, resources)
        missing = sorted(wanted_res - have_res)
        check(
            not missing,
            f"all {len(wanted_res)} files of the checkout's resources/ are in the wheel",
            ", ".join(missing),
        )


def check_ui_dependencies() -> None:
    # Requires-Dist lines: "pyqtgraph>=0.13.7" (always) or 'pytest>=8; extra == "test"' (with an extra only)
    requires = importlib.metadata.requires("qstudio") or []
    plain = {re.match(r"[A-Za-z0-9._-]+", r)[0].lower() for r in requires if ";" not in r}
    window = {"pyside6-essentials", "pyqtgraph", "superqt"}
    check(window <= plain, "the window's packages are plain dependencies of the wheel (no extra needed)", str(plain))
    extras = importlib.metadata.metadata("qstudio").get_all("Provides-Extra") or []
    check("ui" in extras, "the `ui` extra still exists, so `pip install 'qstudio[ui]'` keeps working", str(extras))
    import pyqtgraph
    import PySide6
    import superqt

    ok(
        f"UI dependencies import: PySide6 {PySide6.__version__}, pyqtgraph {pyqtgraph.__version__}, superqt {superqt.__version__}"
    )


def check_cli(workdir: Path) -> None:
    exe = console_script()
    ok(f"console script {exe}")
    proc = run_command([str(exe), "--help"], workdir)
    check("quantize" in proc.stdout, "`qstudio --help` lists the subcommands")
    env = {
        k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM", "PYTHONPATH")
    }
    proc = subprocess.run([str(exe)], cwd=workdir, env=env, capture_output=True, text=True, timeout=120)
    check(
        proc.returncode == 2 and proc.stderr.startswith("qstudio: error: no screen: set QT_QPA_PLATFORM=offscreen"),
        "`qstudio` without any screen exits 2 with one message (no Qt abort)",
        f"exit {proc.returncode}: {proc.stderr[-2000:]}",
    )
    proc = run_command([str(exe), "inspect", "demo"], workdir)
    check(
        "DigitsResNet" in proc.stdout and "conv1" in proc.stdout, "`qstudio inspect demo` prints the demo's module tree"
    )
    out, report_file = workdir / "out.json", workdir / "report.html"
    run_command(
        [str(exe), "quantize", "demo", "--mode", "fx", "--calib-batches", "1", "--iters", "2",
         "--json", str(out), "--report", str(report_file)],
        workdir,
    )  # fmt: skip
    doc = json.loads(out.read_text(encoding="utf-8"))
    fp32, int8 = doc["fp32"]["accuracy"], doc["int8"]["accuracy"]
    check(
        doc["model"] == "demo" and doc["mode"] == "fx",
        "`qstudio quantize demo --mode fx --json out.json` wrote the figures",
    )
    check(
        fp32 is not None and int8 is not None and int8 >= fp32 - 0.02,
        f"demo accuracy FP32 {fp32:.1%} -> INT8 {int8:.1%}",
    )
    check(
        doc["int8"]["size_mb"] < doc["fp32"]["size_mb"],
        f"INT8 model is smaller ({doc['fp32']['size_mb']:.2f} -> {doc['int8']['size_mb']:.2f} MB)",
    )
    html = report_file.read_text(encoding="utf-8")
    check(
        html.lstrip().lower().startswith("<!doctype html") and "demo" in html,
        f"HTML report rendered from the installed template ({len(html) // 1024} KB)",
    )


def window_child() -> int:
    """In a child process: open the window on the demo offscreen, quit after a few seconds."""
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication, QPushButton, QTreeView

    settings = os.environ.get("XDG_CONFIG_HOME") or tempfile.mkdtemp(prefix="qstudio-smoke-settings-")
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, settings)

    from qstudio.ui import create_main_window

    window = create_main_window([])
    app = QApplication.instance()
    window.show()
    QTimer.singleShot(int(WINDOW_SECONDS * 1000), app.quit)
    code = app.exec()
    session = window.controller.session
    tree = window.findChild(QTreeView, "modelTree")
    facts = {
        "exec": code,
        "loaded": session.loaded.name if session.loaded else None,
        "tree_rows": tree.model().rowCount() if tree else 0,
        "run_enabled": bool(window.findChild(QPushButton, "runButton").isEnabled()),
        "error": window.errors.last_message,
        "icon": not app.windowIcon().pixmap(64, 64).isNull(),
    }
    window.close()
    print("WINDOW " + json.dumps(facts))
    return 0


def check_window(workdir: Path) -> None:
    started = time.perf_counter()
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(workdir / "config"))
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--window-child"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if line.startswith("WINDOW ")]
    if proc.returncode != 0 or not lines:
        fail(
            f"the window did not exit cleanly (exit {proc.returncode})\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    facts = json.loads(lines[-1][len("WINDOW ") :])
    seconds = time.perf_counter() - started
    check(
        facts["exec"] == 0,
        f"window opened offscreen, ran its event loop {WINDOW_SECONDS:.0f} s and exited cleanly ({seconds:.1f} s in all)",
    )
    check(
        facts["loaded"] == "demo" and facts["tree_rows"] > 0,
        f"the window loaded the demo ({facts['tree_rows']} top-level modules in modelTree)",
    )
    check(facts["run_enabled"] and not facts["error"], "Run is enabled and no error was shown", facts["error"])
    check(facts["icon"], "the window icon renders from the installed SVG")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Smoke test of an installed qstudio wheel.")
    parser.add_argument("--source", type=Path, help="the source checkout (must not be where qstudio is imported from)")
    parser.add_argument("--window-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-window", action="store_true", help="skip the window check")
    args = parser.parse_args(argv)
    if args.window_child:
        return window_child()

    source = args.source.resolve() if args.source else None
    if source is not None and is_under(Path.cwd(), source):
        fail(f"run this from a directory outside the checkout {source}, not {Path.cwd()}")
    started = time.perf_counter()
    package = check_import(source)
    check_package_files(package, source)
    check_ui_dependencies()
    with tempfile.TemporaryDirectory(prefix="qstudio-smoke-") as tmp:
        work = Path(tmp)
        check_cli(work)
        if not args.no_window:
            check_window(work)
    print(f"\nsmoke test passed: {len(checks)} checks in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
