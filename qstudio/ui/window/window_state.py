"""What the window remembers between sessions: geometry, splitter, the last recipe and File > Open recent.

All of it lives in the window's QSettings (:func:`open_settings`, an INI file
in the user's settings folder); an unreadable file is reset with a warning.
:class:`WindowStateMixin` is part of :class:`qstudio.ui.main_window.MainWindow`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

from qstudio.core.recipe import ModelSource

MAX_RECENT = 8


def open_settings() -> tuple[QSettings, str | None]:
    """The window's QSettings, and a warning if the stored file was unreadable (it is then reset)."""
    settings = QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "qstudio", "qstudio")
    settings.allKeys()  # QSettings reads its file lazily: status() reports a corrupt file only after a read
    if settings.status() != QSettings.Status.NoError:
        path = settings.fileName()
        warning = f"The settings file {path} could not be read and was reset to defaults."
        with contextlib.suppress(OSError):
            Path(path).unlink()
        settings = QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "qstudio", "qstudio")
        return settings, warning
    return settings, None


class WindowStateMixin:
    """Saving and restoring the main window's layout, and its list of recent models."""

    def _restore_state(self) -> None:
        geometry = self.qsettings.value("window/geometry")
        state = self.qsettings.value("window/state")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        if isinstance(state, QByteArray):
            self.restoreState(state)
        splitter = self.qsettings.value("window/splitter")
        if isinstance(splitter, QByteArray):
            self.splitter.restoreState(splitter)
        self._rebuild_recent()

    def _save_state(self) -> None:
        self.qsettings.setValue("window/geometry", self.saveGeometry())
        self.qsettings.setValue("window/state", self.saveState())
        self.qsettings.setValue("window/splitter", self.splitter.saveState())
        self.qsettings.setValue("recipe/last", self.controller.session.recipe.to_toml())
        self.qsettings.sync()

    def recent(self) -> list[dict[str, str]]:
        value = self.qsettings.value("recent/models", [])
        items = value if isinstance(value, list) else [value] if isinstance(value, str) else []
        out = []
        for item in items:
            spec, _, factory = str(item).partition("\t")
            if spec:
                out.append({"spec": spec, "factory": factory})
        return out

    def remember_model(self, source: ModelSource) -> None:
        """Put ``source`` first in *File > Open recent* (kept in the window's settings)."""
        entry = f"{source.spec}\t{source.factory or ''}"
        items = [f"{r['spec']}\t{r['factory']}" for r in self.recent() if f"{r['spec']}\t{r['factory']}" != entry]
        self.qsettings.setValue("recent/models", [entry, *items][:MAX_RECENT])
        self._rebuild_recent()

    def _rebuild_recent(self) -> None:
        self.recent_menu.clear()
        entries = self.recent()
        for r in entries:
            label = r["spec"] + (f"  (factory {Path(r['factory'].split(':')[0]).name})" if r["factory"] else "")
            act = self.recent_menu.addAction(label)
            act.triggered.connect(lambda _=False, r=r: self.open_model(ModelSource(r["spec"], r["factory"] or None)))
        self.recent_menu.setEnabled(bool(entries))
