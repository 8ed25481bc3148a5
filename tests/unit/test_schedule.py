"""The node resync loop's bookkeeping (rkt_operator.reconcile.schedule): when each task is
looked at again."""

from __future__ import annotations

from rkt_operator.reconcile.schedule import Pass, Schedule


def test_a_task_is_first_resynced_one_interval_after_it_is_first_seen() -> None:
    s = Schedule(interval=5.0)
    assert s.next_pass("a", 100.0, probed=False) is None
    assert s.next_pass("a", 104.9, probed=False) is None
    assert s.next_pass("a", 105.0, probed=False) is Pass.RESYNC


def test_no_second_pass_while_one_runs_and_the_next_is_an_interval_after_it_ended() -> None:
    s = Schedule(interval=5.0)
    s.next_pass("a", 0.0, probed=False)
    assert s.next_pass("a", 5.0, probed=True) is Pass.RESYNC
    assert s.next_pass("a", 6.0, probed=True) is None  # still running
    assert s.running() == 1
    s.finished("a", Pass.RESYNC, 9.0, None)  # a slow pass: 4 s
    assert s.running() == 0
    assert s.next_pass("a", 13.9, probed=False) is None
    assert s.next_pass("a", 14.0, probed=False) is Pass.RESYNC


def test_a_back_off_due_before_the_interval_brings_the_next_resync_forward() -> None:
    s = Schedule(interval=5.0, min_delay=1.0)
    s.next_pass("a", 0.0, probed=False)
    assert s.next_pass("a", 5.0, probed=False) is Pass.RESYNC
    s.finished("a", Pass.RESYNC, 5.0, requeue_after=2.5)
    assert s.next_pass("a", 7.4, probed=False) is None
    assert s.next_pass("a", 7.5, probed=False) is Pass.RESYNC
    # Due at once (or overdue): not before the next tick.
    s.finished("a", Pass.RESYNC, 7.5, requeue_after=-3.0)
    assert s.next_pass("a", 8.4, probed=False) is None
    assert s.next_pass("a", 8.5, probed=False) is Pass.RESYNC
    # Due later than the interval: the interval wins.
    s.finished("a", Pass.RESYNC, 8.5, requeue_after=60.0)
    assert s.next_pass("a", 13.5, probed=False) is Pass.RESYNC


def test_tasks_with_probes_get_a_probe_pass_each_tick_between_resyncs() -> None:
    s = Schedule(interval=5.0)
    assert s.next_pass("p", 0.0, probed=True) is Pass.PROBE
    s.finished("p", Pass.PROBE, 0.1, None)
    assert s.next_pass("q", 0.0, probed=False) is None
    assert s.next_pass("p", 1.0, probed=True) is Pass.PROBE
    s.finished("p", Pass.PROBE, 1.1, None)
    assert s.next_pass("p", 5.0, probed=True) is Pass.RESYNC  # the resync runs the probes' verdict
    # A probe pass does not push the resync back; a verdict change asks for a pass soon.
    s.finished("p", Pass.RESYNC, 5.0, None)
    assert s.next_pass("p", 6.0, probed=True) is Pass.PROBE
    s.finished("p", Pass.PROBE, 6.0, requeue_after=0.0)
    assert s.next_pass("p", 7.0, probed=True) is Pass.RESYNC


def test_gone_tasks_are_forgotten_even_with_a_pass_running() -> None:
    s = Schedule(interval=5.0)
    s.next_pass("a", 0.0, probed=False)
    s.next_pass("b", 0.0, probed=False)
    assert s.next_pass("a", 5.0, probed=False) is Pass.RESYNC
    assert s.keep_only({"b"}) == ["a"]
    assert len(s) == 1
    s.finished("a", Pass.RESYNC, 6.0, requeue_after=1.0)  # the pass of a deleted task ends
    assert len(s) == 1
    # Seen again (re-created with the same uid is impossible, but a new kopf run is not):
    # first sight again, so one interval from now.
    assert s.next_pass("a", 6.0, probed=False) is None
    assert s.next_pass("a", 11.0, probed=False) is Pass.RESYNC
