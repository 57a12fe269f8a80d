"""``python -m odenet``: see :mod:`odenet.cli`."""

import sys

from odenet.cli import main

sys.exit(main())
