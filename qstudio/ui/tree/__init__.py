"""The module tree panel's parts.

:class:`qstudio.ui.tree_panel.ModelTreePanel` is made of them: the filter box
and the view state it keeps (:mod:`.tree_filter`), and the fusion editing:
buttons, group summary and context menu (:mod:`.fusion_editing`).  What the
tree shows, row by row, is :mod:`qstudio.ui.tree_model`.
"""
