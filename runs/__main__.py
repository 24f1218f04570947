"""``python -m runs`` is the ``stepsize`` command."""

import sys

from runs.cli import main

sys.exit(main())
