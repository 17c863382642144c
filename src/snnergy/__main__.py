"""``python -m snnergy``: the same as the ``snnergy`` command."""

import sys

from snnergy.cli import main

sys.exit(main())
