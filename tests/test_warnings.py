"""A warning fails the test that raised it: Python warnings (filterwarnings) and Qt's own (qt_log_level_fail).

The settings live in pyproject.toml's [tool.pytest.ini_options]; these tests prove they
are in force, so a warning can never again scroll by in a summary nobody reads.
"""

from __future__ import annotations

import os
import warnings

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def test_a_python_warning_is_an_error() -> None:
    with pytest.raises(UserWarning, match="anything"):
        warnings.warn("anything a test's code warns about", UserWarning, stacklevel=1)
    with pytest.raises(DeprecationWarning):
        warnings.warn("a deprecation of ours", DeprecationWarning, stacklevel=1)


def test_only_named_third_party_deprecations_are_let_through(pytestconfig) -> None:
    filters = pytestconfig.getini("filterwarnings")
    assert filters[0] == "error"
    ignored = [f for f in filters[1:] if f.startswith("ignore:")]
    assert ignored == filters[1:]  # after "error", only ignores: nothing turns an error back into a summary line
    for f in ignored:
        message, category = f.split(":")[1:3]
        assert message and category, f"{f!r} must name the message and the category it lets through"


@pytest.mark.qt_log_ignore("Attempting to add QLayout")  # this test raises it on purpose, to see it caught
def test_a_qt_warning_is_caught_at_the_level_that_fails_a_test(qtbot, qtlog, pytestconfig) -> None:
    from PySide6.QtCore import QtMsgType
    from PySide6.QtWidgets import QVBoxLayout, QWidget

    assert pytestconfig.getini("qt_log_level_fail") == "WARNING"
    widget = QWidget()
    qtbot.addWidget(widget)
    QVBoxLayout(widget)
    QVBoxLayout(widget)  # a second layout on one widget: Qt's qWarning, a bug in the code that did it
    caught = [r for r in qtlog.records if "Attempting to add QLayout" in r.message]
    assert caught and caught[0].type == QtMsgType.QtWarningMsg
