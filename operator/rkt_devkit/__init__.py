"""Support for tests, benchmarks and the demo: a real local control plane and its helpers.

``controlplane`` runs etcd + kube-apiserver from an assets folder (``make testenv``),
``pki`` makes its certificates and kubeconfigs, ``cluster`` is the ``make cluster-up/-down``
command line, ``kube`` holds small kubectl-based helpers for tests. Nothing here is imported
by the agent itself.
"""
