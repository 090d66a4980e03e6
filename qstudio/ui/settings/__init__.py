"""The settings panel's sections, one module per section of the form.

:class:`qstudio.ui.settings_panel.SettingsPanel` puts them together, top to
bottom: :mod:`.mode_section`, :mod:`.quantization_section` (backend, observer,
calibration batches), :mod:`.qat_section`, :mod:`.data_section` (calibration,
evaluation and training data), :mod:`.input_section` and
:mod:`.benchmark_section`.  Each ``build(panel)`` makes its section's widgets
as attributes of the panel and returns the section's box; :mod:`.form` holds
the form helpers they share.  The panel reads and shows the recipe.
"""
