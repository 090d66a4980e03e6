"""The module tree panel on the real demo model and a real session (no mocks)."""

from __future__ import annotations

import math
import os

from dialogs import Snapshot, still_usable

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication, QStyle, QStyleOptionViewItem

from qstudio.core.progress import run
from qstudio.core.recipe import DataSource, ModelSource
from qstudio.ui.controller import SessionController
from qstudio.ui.tree_model import (
    GROUP_PALETTE,
    NAME_ROLE,
    SQNR_BAD,
    SQNR_FAIR,
    SQNR_GOOD,
    Column,
    ModuleTreeModel,
    format_shape,
    format_sqnr,
    sqnr_colour,
)
from qstudio.ui.tree_panel import ModelTreePanel

STEM = ["stem.0", "stem.1", "stem.2"]


@pytest.fixture
def controller(qtbot):
    c = SessionController()
    c.session.load(ModelSource("demo"))
    return c


@pytest.fixture
def panel(qtbot, controller):
    p = ModelTreePanel(controller)
    qtbot.addWidget(p)
    p.resize(500, 800)
    p.show()
    qtbot.waitExposed(p)
    return p


@pytest.fixture
def errors(controller):
    seen: list[str] = []
    controller.errorDetails.connect(lambda message, _details: seen.append(message))
    return seen


# -- helpers -------------------------------------------------------------------------
def visible_names(panel: ModelTreePanel, parent: QModelIndex | None = None) -> list[str]:
    parent = parent or QModelIndex()
    out = []
    for row in range(panel.proxy.rowCount(parent)):
        index = panel.proxy.index(row, 0, parent)
        out.append(index.data(NAME_ROLE))
        out.extend(visible_names(panel, index))
    return out


def proxy_index(panel: ModelTreePanel, name: str, column: int = 0) -> QModelIndex:
    index = panel.proxy.mapFromSource(panel.model.index_for(name, column))
    assert index.isValid(), name
    return index


def cell(panel: ModelTreePanel, name: str, column: Column, role=Qt.ItemDataRole.DisplayRole):
    return proxy_index(panel, name, column).data(role)


def select(panel: ModelTreePanel, names: list[str]) -> None:
    panel.view.selectionModel().clearSelection()
    for name in names:
        panel.view.selectionModel().select(
            proxy_index(panel, name),
            panel.view.selectionModel().SelectionFlag.Select | panel.view.selectionModel().SelectionFlag.Rows,
        )


def click_row(qtbot, panel: ModelTreePanel, name: str, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    index = proxy_index(panel, name, Column.TYPE)
    panel.view.scrollTo(index)
    qtbot.mouseClick(panel.view.viewport(), Qt.MouseButton.LeftButton, modifier, panel.view.visualRect(index).center())


def checkbox_centre(panel: ModelTreePanel, name: str):
    index = proxy_index(panel, name)
    panel.view.scrollTo(index)
    option = QStyleOptionViewItem()
    panel.view.itemDelegateForIndex(index).initStyleOption(option, index)
    option.rect = panel.view.visualRect(index)
    return (
        panel.view.style().subElementRect(QStyle.SubElement.SE_ItemViewItemCheckIndicator, option, panel.view).center()
    )


# -- tests ------------------------------------------------------------------------------
def test_rows_and_columns_show_the_demo_tree(panel):
    assert panel.view.objectName() == "modelTree"
    top = [panel.proxy.index(r, 0).data() for r in range(panel.proxy.rowCount())]
    assert top == ["stem", "layers", "pool", "fc"]
    names = visible_names(panel)
    assert {"stem", "stem.0", "layers", "layers.0.conv1", "layers.2.downsample.1", "fc"} <= set(names)
    headers = [panel.proxy.headerData(c, Qt.Orientation.Horizontal) for c in Column]
    assert headers == [
        "Module",
        "Type",
        "Params",
        "Output shape",
        "INT8?",
        "Fusion group",
        "Weight SQNR",
        "Act. SQNR",
        "State",
    ]
    assert cell(panel, "layers", Column.PARAMS) == "1,206,912"
    assert cell(panel, "layers", Column.PARAMS, Qt.ItemDataRole.TextAlignmentRole) & Qt.AlignmentFlag.AlignRight
    assert cell(panel, "layers.0.conv1", Column.MODULE) == "conv1"
    assert cell(panel, "layers.0.conv1", Column.MODULE, Qt.ItemDataRole.ToolTipRole).startswith("layers.0.conv1")
    assert cell(panel, "layers.0.conv1", Column.TYPE) == "Conv2d"
    assert cell(panel, "stem.0", Column.SHAPE) == "1×32×32×32"
    assert cell(panel, "fc", Column.INT8) == "yes"
    assert cell(panel, "stem.0", Column.GROUP) == "#1 Conv2d+BatchNorm2d+ReLU"
    assert cell(panel, "layers.0.relu2", Column.GROUP) == ""
    assert cell(panel, "fc", Column.WEIGHT_SQNR) == "" and cell(panel, "fc", Column.STATE) == ""  # before any run
    # expanded two levels on load; deeper blocks closed
    assert panel.view.isExpanded(proxy_index(panel, "layers"))
    assert panel.view.isExpanded(proxy_index(panel, "layers.0"))
    assert not panel.view.isExpanded(proxy_index(panel, "layers.0.downsample"))
    assert panel.findChild(type(panel.summary_label), "groupSummary").text() == "10 fusion groups (data flow)"


def test_filter_keeps_matches_and_their_parents(qtbot, panel, controller):
    qtbot.keyClicks(panel.filter_edit, "conv2")
    assert panel.filter_edit.placeholderText() == "Filter modules…"
    # matches by qualified name or by type (Conv2d), case-insensitive, plus their parents
    matches = [n.name for n in controller.session.tree.walk() if n.name and ("conv2" in n.name or n.type == "Conv2d")]
    parents = {m.rsplit(".", i)[0] for m in matches for i in range(1, m.count(".") + 1)}
    expected = [n for n in panel.model.names() if n in set(matches) | parents]
    assert visible_names(panel) == expected
    assert {"stem", "stem.0", "layers.1", "layers.1.conv2", "layers.2.downsample.0"} <= set(expected)
    assert not {"stem.1", "layers.1.bn2", "pool", "fc"} & set(visible_names(panel))
    assert all(panel.view.isExpanded(proxy_index(panel, n)) for n in ["layers", "layers.1", "layers.2.downsample"])
    panel.filter_edit.setText("RELU1")  # a name, whatever the case
    assert visible_names(panel) == [
        "layers",
        "layers.0",
        "layers.0.relu1",
        "layers.1",
        "layers.1.relu1",
        "layers.2",
        "layers.2.relu1",
    ]
    panel.filter_edit.setText("downsample")  # a matching container shows its layers
    assert "layers.0.downsample.1" in visible_names(panel)
    panel.filter_edit.setText("32")  # shapes and numbers are not filtered on
    assert visible_names(panel) == []
    panel.filter_edit.clear()
    assert len(visible_names(panel)) == len(panel.model.names())
    assert not panel.view.isExpanded(proxy_index(panel, "layers.0.downsample"))  # expansion from before the filter


def test_checking_a_leaf_keeps_it_in_float(qtbot, panel, controller):
    view = panel.view
    assert cell(panel, "layers.0.conv1", Column.MODULE, Qt.ItemDataRole.CheckStateRole) == Qt.CheckState.Unchecked
    assert cell(panel, "layers", Column.MODULE, Qt.ItemDataRole.CheckStateRole) is None  # containers have no box
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=checkbox_centre(panel, "layers.0.conv1"))
    assert "layers.0.conv1" in controller.session.recipe.settings.skip
    assert controller.session.tree.find("layers.0.conv1").kept_float
    assert cell(panel, "layers.0.conv1", Column.MODULE, Qt.ItemDataRole.CheckStateRole) == Qt.CheckState.Checked
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=checkbox_centre(panel, "layers.0.conv1"))
    assert "layers.0.conv1" not in controller.session.recipe.settings.skip


def test_unfuse_then_fuse_the_stem_back(qtbot, panel, controller):
    click_row(qtbot, panel, "stem.1")
    assert panel.selected_names() == ["stem.1"]
    qtbot.mouseClick(panel.unfuse_button, Qt.MouseButton.LeftButton)
    assert STEM not in controller.session.groups
    assert cell(panel, "stem.0", Column.GROUP) == ""
    assert panel.summary_label.text() == "9 fusion groups (edited)"

    emitted: list[list[str]] = []
    panel.selectedNamesChanged.connect(emitted.append)
    click_row(qtbot, panel, "stem.0")
    click_row(qtbot, panel, "stem.2", Qt.KeyboardModifier.ShiftModifier)
    assert emitted == [["stem.0"], STEM]
    assert panel.fuse_button.isEnabled()
    qtbot.mouseClick(panel.fuse_button, Qt.MouseButton.LeftButton)
    assert STEM in controller.session.groups
    assert panel.problems_label.isHidden()
    assert cell(panel, "stem.2", Column.GROUP).endswith("Conv2d+BatchNorm2d+ReLU")
    assert panel.selected_names() == STEM  # selection survives the rebuilt tree
    assert panel.view.isExpanded(proxy_index(panel, "stem"))


def test_unsupported_fusion_is_shown_inline_and_changes_nothing(qtbot, panel, controller, errors):
    before = [list(g) for g in controller.session.groups]
    select(panel, ["fc", "pool"])
    qtbot.mouseClick(panel.fuse_button, Qt.MouseButton.LeftButton)
    label = panel.findChild(type(panel.problems_label), "fusionProblems")
    assert label.isVisible()
    assert "fc" in label.text() and "cannot fuse" in label.text() and "supported:" in label.text()
    assert controller.session.groups == before
    assert errors == []  # inline, no dialog
    select(panel, STEM)  # a later success clears it
    panel.unfuse_selected()
    assert label.isHidden() and label.text() == ""


def test_suggest_restores_the_suggested_groups(qtbot, panel, controller):
    suggested = [list(g) for g in controller.session.groups]
    select(panel, ["layers"])  # a container: unfuse everything under it
    qtbot.mouseClick(panel.unfuse_button, Qt.MouseButton.LeftButton)
    assert controller.session.groups == [STEM]
    qtbot.mouseClick(panel.suggest_button, Qt.MouseButton.LeftButton)
    assert controller.session.groups == suggested
    assert panel.summary_label.text() == "10 fusion groups (data flow)"


def test_delete_key_unfuses_and_ctrl_f_focuses_filter(qtbot, panel, controller):
    panel.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is panel)
    panel.select_module("layers.0.conv1")
    panel.view.setFocus()
    qtbot.waitUntil(panel.view.hasFocus)
    qtbot.keyClick(panel.view, Qt.Key.Key_Delete)
    assert not any("layers.0.conv1" in g for g in controller.session.groups)
    qtbot.keyClick(panel.view, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(panel.filter_edit.hasFocus)


def test_select_module_selects_expands_and_scrolls(qtbot, panel):
    panel.view.collapseAll()
    panel.filter_edit.setText("stem")  # hides the target: select_module clears the filter
    with qtbot.waitSignal(panel.selectedNamesChanged) as sig:
        assert panel.select_module("layers.1.conv2")
    assert sig.args == [["layers.1.conv2"]]
    assert panel.filter_edit.text() == ""
    assert panel.selected_names() == ["layers.1.conv2"]
    index = proxy_index(panel, "layers.1.conv2")
    assert panel.view.currentIndex() == index
    assert panel.view.isExpanded(proxy_index(panel, "layers")) and panel.view.isExpanded(proxy_index(panel, "layers.1"))
    assert panel.view.viewport().rect().intersects(panel.view.visualRect(index))
    assert not panel.select_module("no.such.module")


def test_fusion_groups_get_distinct_background_colours(panel):
    bg = Qt.ItemDataRole.BackgroundRole
    first = cell(panel, "stem.0", Column.TYPE, bg).color()
    assert cell(panel, "stem.2", Column.PARAMS, bg).color() == first  # the whole group, every column
    second = cell(panel, "layers.0.conv1", Column.TYPE, bg).color()
    assert first != second
    assert cell(panel, "layers.0.relu2", Column.TYPE, bg) is None
    assert len({c.name() for c in GROUP_PALETTE}) == len(GROUP_PALETTE) >= 8


def test_busy_disables_editing(qtbot, panel, controller):
    select(panel, STEM)
    assert panel.unfuse_button.isEnabled() and panel.fuse_button.isEnabled()
    controller.busyChanged.emit(True)
    for b in (panel.fuse_button, panel.unfuse_button, panel.suggest_button):
        assert not b.isEnabled()
    index = proxy_index(panel, "fc")
    assert not panel.proxy.flags(index) & Qt.ItemFlag.ItemIsUserCheckable
    assert not panel.proxy.setData(index, Qt.CheckState.Checked.value, Qt.ItemDataRole.CheckStateRole)
    panel.unfuse_selected()  # the Delete key path is refused too
    assert STEM in controller.session.groups
    menu = panel.context_menu()
    assert not any(
        a.isEnabled() for a in menu.actions() if a.objectName() in ("keepFloatAction", "fuseAction", "unfuseAction")
    )
    controller.busyChanged.emit(False)
    assert panel.suggest_button.isEnabled() and panel.unfuse_button.isEnabled()
    assert (
        panel.proxy.flags(proxy_index(panel, "fc")) & Qt.ItemFlag.ItemIsUserCheckable
    )  # indexes do not survive a layout change


def test_context_menu_keeps_in_float_and_copies(qtbot, panel, controller):
    panel.select_module("fc")
    actions = {a.objectName(): a for a in panel.context_menu().actions() if a.objectName()}
    assert actions["keepFloatAction"].text() == "Keep in float"
    assert not actions["fuseAction"].isEnabled()  # one module cannot be fused
    actions["keepFloatAction"].trigger()
    assert controller.session.recipe.settings.skip == ["fc"]
    actions = {a.objectName(): a for a in panel.context_menu().actions() if a.objectName()}
    assert actions["keepFloatAction"].text() == "Quantize this module"
    actions["keepFloatAction"].trigger()
    assert controller.session.recipe.settings.skip == []
    actions["copyNameAction"].trigger()
    assert QGuiApplication.clipboard().text() == "fc"


def test_groups_change_keeps_expansion(qtbot, panel, controller):
    panel.view.collapse(proxy_index(panel, "stem"))
    panel.view.expand(proxy_index(panel, "layers.1.downsample"))
    select(panel, ["layers.2.conv1"])
    panel.unfuse_selected()
    assert not panel.view.isExpanded(proxy_index(panel, "stem"))
    assert panel.view.isExpanded(proxy_index(panel, "layers.1.downsample"))
    assert panel.view.isExpanded(proxy_index(panel, "layers.2"))
    assert panel.selected_names() == ["layers.2.conv1"]


def test_sqnr_columns_after_a_real_run(qtbot, panel, controller):
    session = controller.session
    session.recipe.settings.calib_batches = 1
    session.recipe.benchmark.iters = 2
    session.recipe.benchmark.warmup = 1
    session.recipe.eval = DataSource(kind="demo", split="eval", limit=32)
    panel.view.expand(proxy_index(panel, "layers.0.downsample"))
    panel.select_module("layers.0.conv1")
    session.set_skip("layers.2.conv2", True)
    result = run(session.run())
    with qtbot.waitSignal(controller.resultsChanged):
        session.add_result(result)
    for name in ("stem.0", "layers.0.conv1", "fc"):
        for col in (Column.WEIGHT_SQNR, Column.ACT_SQNR):
            text = cell(panel, name, col)
            assert text == "∞" or math.isfinite(float(text)), (name, col, text)
            colour = cell(panel, name, col, Qt.ItemDataRole.ForegroundRole).color()
            assert colour in (SQNR_BAD, SQNR_FAIR, SQNR_GOOD)
        assert cell(panel, name, Column.STATE) == "int8"
    assert cell(panel, "stem.1", Column.WEIGHT_SQNR) == "—"
    assert cell(panel, "stem.1", Column.STATE) == "fused"
    assert cell(panel, "layers.2.conv2", Column.STATE) == "kept float"
    assert cell(panel, "layers", Column.WEIGHT_SQNR) == ""
    # refreshed in place: expansion and selection kept
    assert panel.view.isExpanded(proxy_index(panel, "layers.0.downsample"))
    assert panel.selected_names() == ["layers.0.conv1"]


# -- the model on its own ---------------------------------------------------------------
def test_formatting_helpers():
    assert format_sqnr(None) == "—"
    assert format_sqnr(float("inf")) == "∞"
    assert format_sqnr(31.26) == "31.3"
    assert sqnr_colour(12.0) == SQNR_BAD
    assert sqnr_colour(25.0) == SQNR_FAIR
    assert sqnr_colour(35.0) == SQNR_GOOD
    assert sqnr_colour(float("inf")) == SQNR_GOOD
    assert sqnr_colour(None) is None
    assert format_shape([1, 10]) == "1×10" and format_shape(None) == ""


def test_model_without_a_tree_is_empty(qtbot):
    model = ModuleTreeModel()
    assert model.rowCount() == 0
    assert not model.index_for("fc").isValid()
    model.refresh()  # no tree: nothing to do, no error


def test_model_passes_qt_model_tester(qtmodeltester, controller):
    model = ModuleTreeModel(controller.session.set_skip)
    model.set_root(controller.session.tree)
    qtmodeltester.check(model)
    model.refresh()
    model.set_root(None)
    qtmodeltester.check(model)


# -- in the window -------------------------------------------------------------------


def test_invalid_fusion_group_is_refused_inline_and_groups_stay(qtbot, window):
    panel = window.tree_panel
    before = Snapshot.of(window)
    selection = panel.view.selectionModel()
    selection.clearSelection()
    for name in ("fc", "pool"):  # a Linear and a pooling layer: no fused kernel exists for them
        index = panel.proxy.mapFromSource(panel.model.index_for(name, 0))
        selection.select(index, selection.SelectionFlag.Select | selection.SelectionFlag.Rows)
    assert panel.fuse_button.isEnabled()
    panel.fuse_button.click()
    label = window.findChild(type(panel.problems_label), "fusionProblems")
    assert label.isVisible()
    assert "cannot fuse" in label.text() and "supported:" in label.text()  # problem and what would work
    before.assert_kept(window)
    assert window.errors.box is None
    still_usable(qtbot, window)
