"""``python -m rkt_operator`` is the same as the ``rkt-operator`` console script."""

from rkt_operator.cli import main

raise SystemExit(main())
