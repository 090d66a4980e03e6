"""Copy the app icon into packaging/icons and render its PNG with QtSvg.

    QT_QPA_PLATFORM=offscreen .venv/bin/python packaging/render_icon.py [--size 256]

The SVG source is resources/icons/qstudio.svg (the one the window uses);
packaging/icons/qstudio.svg is a copy of it for desktop integration
(hicolor/scalable/apps), and qstudio.png the raster for hicolor/256x256/apps.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "resources" / "icons" / "qstudio.svg"
OUT = Path(__file__).resolve().parent / "icons"


def render(svg: Path, png: Path, size: int) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication([sys.argv[0]])
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"{svg} is not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter)  # scales the viewBox to the whole image
    painter.end()
    if not image.save(str(png), "PNG"):
        raise SystemExit(f"could not write {png}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    svg = OUT / "qstudio.svg"
    shutil.copyfile(SOURCE, svg)
    png = OUT / "qstudio.png"
    render(svg, png, args.size)
    print(f"wrote {svg.relative_to(ROOT)} and {png.relative_to(ROOT)} ({args.size}x{args.size})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
