"""``python -m streamvxl``: the command line (`streamvxl.cli`)."""

import sys

from .cli import main

sys.exit(main())
