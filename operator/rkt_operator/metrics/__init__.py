"""The agent's Prometheus metrics: the text exposition format (``exposition``), what the agent
counts and samples (``collector``) and the HTTP endpoint serving it (``server``). Nothing here
imports kopf; ``rkt_operator.kopfapp`` wires it in."""
