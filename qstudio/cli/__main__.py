"""``python -m qstudio.cli``: the same as the ``qstudio`` command."""

import sys

from qstudio.cli.main import main

sys.exit(main())
