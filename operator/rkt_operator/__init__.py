"""rkt-operator: runs RktTask resources as rkt pods on the node each task is bound to.

The version has one home, the distribution's metadata (``pyproject.toml``); the chart's
``appVersion`` follows it (tests/unit/test_layout.py checks both).
"""

from importlib import metadata

try:
    __version__ = metadata.version("rkt-operator")
except metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
    __version__ = "0+unknown"
