"""``python -m proxy`` is the ``taxmeter`` command."""

import sys

from proxy.cli import main

sys.exit(main())
