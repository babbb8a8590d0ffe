"""``python -m onda.host.cli``: the same as ``onda``."""

import sys

from . import main

sys.exit(main())
