"""The main window's parts, one module per part.

:class:`qstudio.ui.main_window.MainWindow` is made of them: the run dock,
status bar, progress and log (:mod:`.run_dock`), the actions, menus and
toolbar (:mod:`.actions`), the TorchScript/report/chart exports
(:mod:`.exports`) and what it remembers between sessions, recent models
included (:mod:`.window_state`).  Opening models and recipes, and asking
before running their code (:mod:`qstudio.ui.trust_prompt`), stay in the
window itself.
"""
