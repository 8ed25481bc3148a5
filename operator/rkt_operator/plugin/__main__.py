"""``python -m rkt_operator.plugin``: the same as ``kubectl-rkt``."""

import sys

from rkt_operator.plugin.main import main

sys.exit(main())
