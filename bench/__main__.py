"""``python -m bench``: run the DistKV benchmark suite (see bench/README.md)."""

import sys

from .runner import main

sys.exit(main())
