"""``rkt-operator convert``: Nomad job files -> RktTask manifests.

A pure pipeline, no Kubernetes client and no kopf:

- ``jobfile``: read a file in one of Nomad's three job forms (HCL1, HCL2, the JSON of
  ``nomad job inspect`` / the HTTP API) into plain Python values, or fail with the file,
  line and reason (``JobFileError``);
- ``nomad``: those values -> a small typed model of the parts of a job that matter here
  (``Job`` / ``Group`` / ``Task``), the same whatever the input form;
- ``mapping``: the model -> RktTask manifests, one per rkt task and ``count`` instance,
  each checked against the agent's own spec model, plus ``Finding`` values: what was
  approximated (notes) and what has no equivalent and was left out (warnings);
- ``command``: the CLI (YAML on stdout or into a folder, findings on stderr, exit code).
"""
