"""The results panel's parts, one module per part of the panel.

:class:`qstudio.ui.results_panel.ResultsPanel` puts them together: the cards
and the warnings banner (:mod:`.summary_view`), the Latency, Per-layer error,
Training, History and Search tabs (:mod:`.latency_tab`, :mod:`.layers_tab`,
:mod:`.training_tab`, :mod:`.history_tab`, :mod:`.search_tab`) and the labels and tables they
share (:mod:`.widgets`).  What a result means comes from
:func:`qstudio.core.summary.summarize`; these only show it.
"""
