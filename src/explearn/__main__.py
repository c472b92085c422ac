"""``python -m explearn``: the same as the ``explearn`` command."""

import sys

from explearn.cli import main

sys.exit(main())
