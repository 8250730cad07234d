"""``python -m flexent``: the ``flexent`` command line."""

import sys

from flexent.cli import main

sys.exit(main())
