"""The window's exports: the INT8 model for any runtime measured, the HTML report and the chart PNGs.

:class:`ExportsMixin` is part of :class:`qstudio.ui.main_window.MainWindow`;
the work is the engine's (:func:`~qstudio.core.pipeline.export_result`,
:func:`~qstudio.core.report.write_report`, atomic writes), so a full disk is
an error dialog and never a half-written file.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog

from qstudio.core.errors import QStudioError
from qstudio.core.pipeline import RunResult, export_result
from qstudio.core.progress import Progress
from qstudio.ui.controller import describe_error


class ExportsMixin:
    """File > Export INT8 model/report/chart PNGs of the main window, on the session's last result."""

    def _last_result(self) -> RunResult | None:
        result = self.controller.session.last
        if result is None:
            self.errors.report("There is no result to export yet. Fix: run a quantization first.", "")
        return result

    def export_targets(self, result: RunResult) -> list[tuple[str, str]]:
        """(runtime name, file-dialog filter) for every INT8 model measured in ``result``, its export target first."""
        from qstudio.core.runtimes import get_runtime

        names = [f.name for f in result.runtimes if f.precision == "int8"] or ["torchscript"]
        target = result.deployed.name if result.deployed is not None else "torchscript"
        names = sorted(dict.fromkeys(names), key=lambda n: n != target)
        found = []
        for name in names:
            runtime = get_runtime(name)
            found.append((name, f"{runtime.title} INT8 (*{runtime.suffix})"))
        return found

    def export_torchscript(self) -> None:
        """File > Export INT8 model: any runtime measured in the run, chosen by the dialog's file type."""
        result = self._last_result()
        if result is None:
            return
        targets = self.export_targets(result)
        first = targets[0][0]
        from qstudio.core.runtimes import get_runtime

        suffix = get_runtime(first).suffix  # the runtime's own: one home for each file type
        path, chosen = QFileDialog.getSaveFileName(
            self, "Export INT8 model", f"model_int8{suffix}", ";;".join(f for _n, f in targets)
        )
        if not path:
            return
        by_filter = {f: n for n, f in targets}
        target = by_filter.get(chosen)
        if target is None:  # no file type chosen: from the suffix typed, else the run's target
            typed = Path(path).suffix.lower()
            target = next((n for n, f in targets if f.endswith(f"(*{typed})")), first)

        def work():
            yield Progress("export", 0, 1, f"writing {path}")
            info = export_result(result, path, target=target)
            yield Progress("export", 1, 1)
            return info

        def done(info) -> None:
            files = ", ".join(info.files) if info.files else info.path
            self.log_line(
                f"exported {files} ({info.runtime} {info.precision.upper()}, {info.size_mb:.2f} MB, {info.method}, "
                f"reloaded and verified: max diff {info.max_abs_diff:.2g})"
            )
            self.statusBar().showMessage(f"Exported {info.path}", 8000)

        self.controller.start(f"export {target}", work, done)

    def export_report(self) -> None:
        result = self._last_result()
        if result is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export report", "qstudio-report.html", "HTML (*.html)")
        if not path:
            return
        from qstudio.core.report import write_report

        try:
            write_report(result, path)
        except QStudioError as exc:
            self.errors.report(str(exc), "")
            return
        self.log_line(f"report written to {path}")

    def export_charts(self) -> None:
        if self._last_result() is None:
            return
        folder = QFileDialog.getExistingDirectory(self, "Folder for chart PNGs")
        if not folder:
            return
        from qstudio.core.fileio import atomic_write_bytes
        from qstudio.ui.charts import render_png

        try:
            # both images are rendered in memory first: a chart that cannot be drawn writes nothing at all
            charts = self.results_panel.latency_chart, self.results_panel.layer_chart
            images = [(Path(folder) / f"{w.objectName()}.png", render_png(w)) for w in charts]
            for out, png in images:
                atomic_write_bytes(out, png, "chart PNG")  # ExportError on a full disk; an earlier PNG is kept
                self.log_line(f"chart saved to {out} ({len(png) / 1e3:.0f} KB)")
        except Exception as exc:
            self.errors.report(*describe_error(exc))
