"""``python -m optim_fn``: the command line (see :mod:`optim_fn.experiments.cli`)."""

import sys

from optim_fn.experiments.cli import main

sys.exit(main())
