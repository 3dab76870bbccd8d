"""``python -m convbench ...``: the same command line as the ``convbench`` script."""

import sys

from convbench.cli import main

sys.exit(main())
