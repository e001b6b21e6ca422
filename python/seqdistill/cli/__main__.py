"""``python -m seqdistill.cli``: the same as the ``seqdistill`` command."""

import sys

from seqdistill.cli import main

sys.exit(main())
