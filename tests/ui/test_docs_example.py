"""The example test in docs/ui-testing.md runs and passes, exactly as a user would copy it.

The code between the ``<!-- example-test -->`` markers is written to a fresh
folder (no conftest, no qstudio pytest settings) and run with pytest in a
subprocess, so the page can never drift from the window it documents.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "ui-testing.md"
BLOCK = re.compile(r"<!-- example-test -->\s*```python\n(.*?)```\s*<!-- /example-test -->", re.DOTALL)


def example_code() -> str:
    blocks = BLOCK.findall(DOC.read_text(encoding="utf-8"))
    assert len(blocks) == 1, f"{DOC} needs exactly one ```python block between <!-- example-test --> markers"
    return blocks[0]


def test_example_is_a_complete_test_file():
    code = example_code()
    compile(code, "ui-testing.md example", "exec")
    assert "def test_" in code and "create_main_window" in code


def test_docs_example_passes(tmp_path):
    folder = tmp_path / "user_tests"
    folder.mkdir()
    test_file = folder / "test_qstudio_window.py"
    test_file.write_text(example_code(), encoding="utf-8")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path / "config"))
    env.pop("PYTEST_ADDOPTS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
        cwd=folder,  # outside the repository: none of qstudio's conftest or pytest settings apply
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert re.search(r"\b1 passed\b", output), output
