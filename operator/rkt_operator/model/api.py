"""The API's names, in one place: group, version, kind and plural of RktTask, and the keys of
the labels, annotations and finalizer this project puts on objects. Everything else (the CRD
generator, the Kubernetes client, the kopf wiring, the binder, the converter, the pod
annotations, the node labels) builds on these; tests/unit/test_layout.py checks that no
other module of the agent spells them out.
"""

from __future__ import annotations

GROUP = "rktoperator.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "RktTask"
PLURAL = "rkttasks"
SINGULAR = "rkttask"
SHORT_NAMES = ("rkt",)

# Keys of labels, annotations and finalizers the project owns start with this.
PREFIX = f"{GROUP}/"
FINALIZER = PREFIX + "finalizer"
# With ``--selector=label``: the label naming the node whose agent owns a task.
NODE_LABEL = PREFIX + "node"
# Node labels of the agent's fingerprint (the binder filters on LABEL_RKT; the converter
# maps Nomad's driver attributes onto them).
LABEL_RKT = PREFIX + "rkt"
LABEL_RKT_VERSION = PREFIX + "rkt.version"
LABEL_APPC_VERSION = PREFIX + "appc.version"
LABEL_VOLUMES = PREFIX + "volumes.enabled"
