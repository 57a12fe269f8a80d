"""``python -m odenet``: see :mod:`odenet.cli`."""

import sys

from .cli import main

sys.exit(main())
