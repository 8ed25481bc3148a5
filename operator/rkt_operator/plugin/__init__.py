"""``kubectl rkt``: a task's logs, exec, signals, stats and description from anywhere kubectl
reaches the cluster, governed by RBAC.

The plugin drives ``kubectl`` itself (a kubectl plugin always has it at hand): it reads the
RktTask with the caller's credentials, finds the rkt-operator agent pod on the task's node (by
the chart's labels) and runs the node command (``rkt-operator logs|exec|signal|stats|pods``)
in the agent's container through the API server's ``pods/exec``, with stdin and the terminal
passed through and the exit code kept.

``plan`` holds every decision (arguments, kubectl command lines, error messages) as pure
functions; ``main`` is the thin layer that runs kubectl. Standard library only, importing
nothing else of the agent: the plugin starts fast and can ship on its own (the krew archive).
"""
