"""Charts as PNG images: rendered in memory, written atomically (File > Export chart PNGs…)."""

from __future__ import annotations

from pathlib import Path

import pyqtgraph as pg
import pyqtgraph.exporters
from PySide6.QtCore import QBuffer, QByteArray, QIODevice


def render_png(widget: pg.PlotWidget, width: int | None = None) -> bytes:
    """``widget``'s plot as PNG bytes, rendered in memory; raises ExportError if Qt produced no image."""
    from qstudio.core.errors import ExportError

    exporter = pyqtgraph.exporters.ImageExporter(widget.getPlotItem())
    if width:
        exporter.parameters()["width"] = int(width)
    image = exporter.export(toBytes=True)
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    ok = image is not None and not image.isNull() and image.save(buffer, "PNG")
    buffer.close()
    png = bytes(data.data())
    if not ok or not png:
        name = widget.objectName() or "chart"
        raise ExportError(f"the chart {name} could not be rendered as a PNG", "resize the window and export again")
    return png


def export_png(widget: pg.PlotWidget, path: str | Path, width: int | None = None) -> Path:
    """Save ``widget``'s plot as a PNG (the window's "Export chart PNG" action).

    The image is rendered to memory and written atomically, so a full or
    read-only disk is an :class:`~qstudio.core.errors.ExportError` (never a
    0-byte file) and an earlier PNG at ``path`` is kept.
    """
    from qstudio.core.fileio import atomic_write_bytes

    path = Path(path)
    if path.suffix.lower() != ".png":
        path = path.with_suffix(".png")
    atomic_write_bytes(path, render_png(widget, width), "chart PNG")
    return path
