"""``python -m onda.host.service``: run a scoring server in the foreground (what the workspace launches)."""

import sys

from .server import main

sys.exit(main())
