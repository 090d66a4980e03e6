"""The qstudio engine: loading, fusion, quantization flows, comparison, benchmark, export, report.

Torch only, no Qt: the command line, the window and the tests all drive this package.
"""
