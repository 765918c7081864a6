"""``python -m optim_fn``: the command line (see :mod:`optim_fn.cli`)."""

import sys

from optim_fn.cli import main

sys.exit(main())
