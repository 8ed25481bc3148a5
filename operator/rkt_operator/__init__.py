"""rkt-operator: runs RktTask resources as rkt pods on the node each task is bound to."""

__version__ = "0.1.0"
