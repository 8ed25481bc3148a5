"""The reconcile loop: observe a task's pods, decide, apply through the executor, report.

Every module of the loop lives here, in layers (``.importlinter`` enforces them):

- ``reconciler``: one level-based pass per task (observe, decide, apply, report) and its
  finalization; the only module that drives the executor and the status writer.
- ``applying``: carries out a decision through the executor, returning what it did.
- ``statuswriter``, ``podcache``, ``prober``: the I/O helpers of a pass (status patches and
  events through a ``StatusApi``; one shared ``rkt list`` per burst; exec probes).
- ``taskstate``: pure glue between the RktTask object, the decision and the status.
- ``plan`` (the pod decision), ``probeplan`` (probe bookkeeping) and ``status`` (conditions,
  phase and the status patch): pure values and functions, no I/O, no clock, no kopf.
"""
