"""A thin Qt item model over the engine's :class:`~qstudio.core.tree.ModuleNode` tree.

In the style of napari's ``qt_tree_model``: every index carries its node as
``internalPointer()``; parents are found through a name -> parent dict built
on reset.  The model only *shows* the tree: the one edit it allows (the
"keep in float" check box) goes to a callback the owner passes in, so no
session or quantization logic lives here.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from typing import Any

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QObject, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont

from qstudio.core.formatting import fmt_db as format_sqnr
from qstudio.core.summary import PALETTE, SQNR_BANDS, sqnr_band
from qstudio.core.tree import ModuleNode

#: The qualified module name ("layers.0.conv1") of a row, in every column.
NAME_ROLE = Qt.ItemDataRole.UserRole + 1
#: What the filter matches: the qualified name in the Module column, the type in the Type column.
FILTER_ROLE = Qt.ItemDataRole.UserRole + 2
#: The node's fusion group index (int) or None.
GROUP_ROLE = Qt.ItemDataRole.UserRole + 3


class Column(IntEnum):
    MODULE = 0
    TYPE = 1
    PARAMS = 2
    SHAPE = 3
    INT8 = 4
    GROUP = 5
    WEIGHT_SQNR = 6
    ACT_SQNR = 7
    STATE = 8


HEADERS = {
    Column.MODULE: ("Module", "Module name; tick a box to keep that module in float"),
    Column.TYPE: ("Type", "PyTorch module class"),
    Column.PARAMS: ("Params", "Parameters in this module and everything below it"),
    Column.SHAPE: ("Output shape", "Output shape from one sample forward pass"),
    Column.INT8: ("INT8?", "Whether PyTorch has a quantized kernel for this module type in the current mode"),
    Column.GROUP: ("Fusion group", "The fusion group this module belongs to (fused into one kernel before quantizing)"),
    Column.WEIGHT_SQNR: ("Weight SQNR", "Weight signal-to-quantization-noise ratio in dB (higher is better)"),
    Column.ACT_SQNR: ("Act. SQNR", "Output activation signal-to-quantization-noise ratio in dB (higher is better)"),
    Column.STATE: ("State", "How the last run left this module: int8, float, kept float, or fused into its group"),
}
NUMERIC_COLUMNS = (Column.PARAMS, Column.WEIGHT_SQNR, Column.ACT_SQNR)

#: Soft backgrounds, one per fusion group (cycled); light enough for dark text and the SQNR colours.
GROUP_PALETTE = tuple(
    QColor(c) for c in ("#dbeafe", "#fde2c8", "#d9f2d9", "#f6d5e5", "#e6dcf7", "#fff3b8", "#d2f0ee", "#ead9c8")
)
_GROUP_TEXT = QColor("#1f2328")  # dark text on the pastel rows, whatever the application palette
#: the engine's SQNR bands and palette (qstudio.core.summary), as Qt colours
SQNR_BAD, SQNR_FAIR, SQNR_GOOD = (QColor(band.colour) for band in SQNR_BANDS)
_MUTED = QColor(PALETTE["muted"])
_BAND_COLOURS = {band.name: QColor(band.colour) for band in SQNR_BANDS}
_BAND_LEGEND = "; ".join(band.label for band in SQNR_BANDS)
DASH = "—"


def group_colour(index: int) -> QColor:
    return GROUP_PALETTE[index % len(GROUP_PALETTE)]


def sqnr_colour(db: float | None) -> QColor | None:
    """The colour of ``db``'s band (:func:`qstudio.core.summary.sqnr_band`); None when there is no figure."""
    return _BAND_COLOURS.get(sqnr_band(db)[0])


def format_shape(shape: list[int] | None) -> str:
    return "×".join(str(d) for d in shape) if shape else ""


KeepFloat = Callable[[str, bool], None]


class ModuleTreeModel(QAbstractItemModel):
    """Rows are ``ModuleNode`` s (the root itself is hidden); see :class:`Column` for the columns."""

    #: cell contents changed in place (SQNR after a run, editability); views repaint, nothing is re-mapped
    contentsChanged = Signal()

    def __init__(self, set_keep_float: KeepFloat | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._set_keep_float = set_keep_float
        self._root: ModuleNode | None = None
        self._parent_of: dict[str, ModuleNode] = {}
        self._row_of: dict[str, int] = {}
        self._nodes: dict[str, ModuleNode] = {}
        self._group_label: dict[int, str] = {}
        self._group_members: dict[int, list[str]] = {}
        self._has_run = False
        self._editable = True

    # -- content -----------------------------------------------------------------
    @property
    def root(self) -> ModuleNode | None:
        return self._root

    def set_root(self, root: ModuleNode | None) -> None:
        """Show a new tree (a full reset: views lose expansion and selection)."""
        self.beginResetModel()
        self._root = root
        self._index_tree()
        self.endResetModel()

    def refresh(self) -> None:
        """Re-read every node in place (after a run annotated the tree); keeps expansion and selection."""
        if self._root is None:
            return
        self._index_groups()
        # The structure and the filtered text (name, type) never change here, only cell contents, so a
        # repaint of the visible rows is enough.  dataChanged per parent or layoutChanged make the filter
        # proxy re-map every row (~6-13k index() calls) and froze the window for 200-300 ms.
        self.contentsChanged.emit()

    def set_editable(self, editable: bool) -> None:
        """Allow or refuse check-box edits (refused while a run is going)."""
        if editable == self._editable:
            return
        self._editable = editable
        # no repaint: only interaction flags change; the check boxes look the same (a repaint of the
        # visible rows costs ~40 ms of Python on the GUI thread just as a run starts)

    @property
    def editable(self) -> bool:
        return self._editable

    def _index_tree(self) -> None:
        self._parent_of.clear()
        self._row_of.clear()
        self._nodes.clear()
        if self._root is not None:
            for node in self._root.walk():
                self._nodes[node.name] = node
                for row, child in enumerate(node.children):
                    self._parent_of[child.name] = node
                    self._row_of[child.name] = row
        self._index_groups()

    def _index_groups(self) -> None:
        members: dict[int, list[ModuleNode]] = {}
        self._has_run = False
        if self._root is not None:
            for node in self._root.walk():
                if node.fusion_group is not None:
                    members.setdefault(node.fusion_group, []).append(node)
                self._has_run = self._has_run or node.quantized is not None
        self._group_members = {g: [n.name for n in ns] for g, ns in members.items()}
        self._group_label = {g: f"#{g + 1} " + "+".join(n.type for n in ns) for g, ns in members.items()}

    # -- lookup ------------------------------------------------------------------
    def node(self, index: QModelIndex | QPersistentModelIndex) -> ModuleNode | None:
        return index.internalPointer() if index.isValid() else None  # type: ignore[no-any-return]

    def index_for(self, name: str, column: int = 0) -> QModelIndex:
        """The index of the module called ``name`` (invalid if unknown or the hidden root)."""
        node = self._nodes.get(name)
        if node is None or node is self._root:
            return QModelIndex()
        return self.createIndex(self._row_of[name], column, node)

    def _index_of(self, node: ModuleNode) -> QModelIndex:
        return QModelIndex() if node is self._root else self.index_for(node.name)

    def group_members(self, group: int) -> list[str]:
        return list(self._group_members.get(group, []))

    def names(self) -> list[str]:
        """Every module name in model order (the hidden root excluded)."""
        return [n for n in self._nodes if n]

    # -- QAbstractItemModel ------------------------------------------------------
    def index(self, row: int, column: int, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> QModelIndex:  # noqa: B008
        if self._root is None or not self.hasIndex(row, column, parent):
            return QModelIndex()
        owner = self.node(parent) if parent.isValid() else self._root
        if owner is None or row >= len(owner.children):
            return QModelIndex()
        return self.createIndex(row, column, owner.children[row])

    def parent(self, index: QModelIndex | QPersistentModelIndex | None = None) -> Any:  # type: ignore[override]
        if index is None:  # QObject.parent()
            return super().parent()
        node = self.node(index)
        if node is None:
            return QModelIndex()
        owner = self._parent_of.get(node.name)
        if owner is None or owner is self._root:
            return QModelIndex()
        return self.createIndex(self._row_of[owner.name], 0, owner)

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        if self._root is None or parent.column() > 0:
            return 0
        owner = self.node(parent) if parent.isValid() else self._root
        return len(owner.children) if owner is not None else 0

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return len(Column)

    def hasChildren(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> bool:  # noqa: B008
        return self.rowCount(parent) > 0

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation != Qt.Orientation.Horizontal or section not in range(len(Column)):
            return None
        title, tip = HEADERS[Column(section)]
        if role == Qt.ItemDataRole.DisplayRole:
            return title
        if role == Qt.ItemDataRole.ToolTipRole:
            return tip
        if role == Qt.ItemDataRole.TextAlignmentRole and section in NUMERIC_COLUMNS:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        node = self.node(index)
        if node is None:
            return Qt.ItemFlag.NoItemFlags
        flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        if index.column() == Column.MODULE and not node.children and self._editable:
            flags |= Qt.ItemFlag.ItemIsUserCheckable
        if not node.children:
            flags |= Qt.ItemFlag.ItemNeverHasChildren
        return flags

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        node = self.node(index)
        if node is None:
            return None
        col = Column(index.column())
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(node, col)
        if role == NAME_ROLE:
            return node.name
        if role == FILTER_ROLE:
            return node.name if col == Column.MODULE else node.type if col == Column.TYPE else None
        if role == GROUP_ROLE:
            return node.fusion_group
        if role == Qt.ItemDataRole.CheckStateRole:
            if col == Column.MODULE and not node.children:
                return Qt.CheckState.Checked if node.kept_float else Qt.CheckState.Unchecked
            return None
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(node, col)
        if role == Qt.ItemDataRole.TextAlignmentRole:
            if col in NUMERIC_COLUMNS:
                return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            return int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.BackgroundRole:
            if node.fusion_group is not None:
                return QBrush(group_colour(node.fusion_group))
            return None
        if role == Qt.ItemDataRole.ForegroundRole:
            return self._foreground(node, col)
        if role == Qt.ItemDataRole.FontRole and node.kept_float and col in (Column.MODULE, Column.STATE):
            font = QFont()
            font.setItalic(True)
            return font
        return None

    def setData(
        self, index: QModelIndex | QPersistentModelIndex, value: Any, role: int = Qt.ItemDataRole.EditRole
    ) -> bool:
        node = self.node(index)
        if (
            role != Qt.ItemDataRole.CheckStateRole
            or node is None
            or node.children
            or index.column() != Column.MODULE
            or not self._editable
            or self._set_keep_float is None
        ):
            return False
        checked = _is_checked(value)
        self._set_keep_float(node.name, checked)  # the owner updates the session (and node.kept_float)
        node.kept_float = checked
        self.dataChanged.emit(index.siblingAtColumn(0), index.siblingAtColumn(self.columnCount() - 1))
        return True

    # -- cell contents ---------------------------------------------------------------
    def _text(self, node: ModuleNode, col: Column) -> str:
        leaf = not node.children
        if col == Column.MODULE:
            return node.short_name
        if col == Column.TYPE:
            return node.type
        if col == Column.PARAMS:
            return f"{node.params:,}"
        if col == Column.SHAPE:
            return format_shape(node.output_shape)
        if col == Column.INT8:
            return ("yes" if node.quantizable else DASH) if leaf else ""
        if col == Column.GROUP:
            return self._group_label.get(node.fusion_group, "") if node.fusion_group is not None else ""
        if col in (Column.WEIGHT_SQNR, Column.ACT_SQNR):
            db = node.weight_sqnr_db if col == Column.WEIGHT_SQNR else node.activation_sqnr_db
            if db is None and (not leaf or not self._has_run):
                return ""  # nothing measured yet, or a container
            return format_sqnr(db)
        if col == Column.STATE:
            return self._state(node)
        return ""

    def _state(self, node: ModuleNode) -> str:
        if node.children:
            return ""
        if node.quantized is True:
            return "int8"
        if node.quantized is False:
            return "kept float" if node.kept_float else "float"
        if self._has_run and node.fusion_group is not None:
            return "fused"
        return ""

    def _tooltip(self, node: ModuleNode, col: Column) -> str | None:
        if col == Column.MODULE:
            tip = node.name
            if not node.children:
                tip += "\nticked: kept in float" if node.kept_float else "\ntick to keep this module in float"
            return tip
        if col == Column.GROUP and node.fusion_group is not None:
            return f"fusion group #{node.fusion_group + 1}: " + " + ".join(
                self._group_members.get(node.fusion_group, [])
            )
        if col in (Column.WEIGHT_SQNR, Column.ACT_SQNR):
            db = node.weight_sqnr_db if col == Column.WEIGHT_SQNR else node.activation_sqnr_db
            if db is None:
                return None
            what = "weight" if col == Column.WEIGHT_SQNR else "output activation"
            return f"{what} SQNR {format_sqnr(db)} dB ({_BAND_LEGEND})"
        if col == Column.STATE and self._state(node) == "fused":
            members = self._group_members.get(node.fusion_group or 0, [])
            return f"folded into {members[0]} when fused" if members else None
        if col == Column.SHAPE and node.output_shape:
            return str(node.output_shape)
        return None

    def _foreground(self, node: ModuleNode, col: Column) -> QBrush | None:
        if col in (Column.WEIGHT_SQNR, Column.ACT_SQNR):
            colour = sqnr_colour(node.weight_sqnr_db if col == Column.WEIGHT_SQNR else node.activation_sqnr_db)
            if colour is not None:
                return QBrush(colour)
        if col == Column.INT8 and not node.quantizable:
            return QBrush(_MUTED)
        if col == Column.STATE and node.quantized is False:
            return QBrush(SQNR_FAIR)
        if col == Column.PARAMS and node.children:
            return QBrush(_MUTED)
        if node.fusion_group is not None:
            return QBrush(_GROUP_TEXT)
        return None


def _is_checked(value: Any) -> bool:
    if isinstance(value, Qt.CheckState):
        return value == Qt.CheckState.Checked
    try:
        return int(value) == Qt.CheckState.Checked.value
    except (TypeError, ValueError):
        return bool(value)
