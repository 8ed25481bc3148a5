"""Unit tests of the kopf-facing layer: the one error mapping (rkt_operator.handlers), the
operator settings and log format (rkt_operator.kopfapp), and the CLI (rkt_operator.cli)."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import kopf
import pytest

import rkt_operator
from rkt_operator import cli, errors, handlers, kopfapp, logconfig, memtrim
from rkt_operator.settings import Settings

SETTINGS = Settings(node_name="node-a", restart_backoff_seconds=2, restart_backoff_max_seconds=30)


@pytest.mark.parametrize(
    "error",
    [
        errors.SpecError("bad", field="spec.image"),
        errors.NetworkRequiredError("ports mapped, no ip"),
    ],
    ids=["spec", "network-required"],
)
def test_terminal_errors_are_permanent(error: errors.RktTaskError) -> None:
    with pytest.raises(kopf.PermanentError) as info:
        handlers.raise_for(error, settings=SETTINGS, retry=0)
    assert str(info.value).startswith(f"{error.reason}: ")
    assert info.value.__cause__ is error


@pytest.mark.parametrize(
    ("error", "retry", "delay"),
    [
        (errors.DependencyError("secret x"), 0, 2.0),
        (errors.DependencyError("secret x"), 3, 16.0),
        (errors.RktTimeout("slow"), 4, 30.0),
        (errors.NetworkDiscoveryError("no ip"), 1, 4.0),
        (errors.RktError("boom"), 100, 30.0),
        # a start refused by rkt can heal (image not in the store yet, a lock): retried
        (errors.PrepareError("no such image"), 0, 2.0),
        (errors.TrustError("key server down"), 2, 8.0),
    ],
)
def test_retryable_errors_back_off(error: errors.RktTaskError, retry: int, delay: float) -> None:
    with pytest.raises(kopf.TemporaryError) as info:
        handlers.raise_for(error, settings=SETTINGS, retry=retry)
    assert info.value.delay == delay


def test_no_error_no_exception() -> None:
    handlers.raise_for(None, settings=SETTINGS, retry=0)


def _selectors(mapping: Any) -> dict[tuple[str, str], str]:
    return {(key.group, key.any_name): value for key, value in dict(mapping).items()}


def test_configure_field_selector_mode() -> None:
    ks = kopf.OperatorSettings()
    kopfapp.configure(ks, SETTINGS)
    assert ks.peering.standalone is True
    assert _selectors(ks.watching.field_selectors) == {
        ("rktoperator.io", "rkttasks"): "spec.nodeName=node-a"
    }
    assert not dict(ks.watching.label_selectors)
    assert ks.persistence.finalizer == "rktoperator.io/finalizer"
    assert ks.posting.reporting_component == "rkt-operator"
    assert ks.posting.reporting_instance == "node-a"
    assert ks.scanning.disabled is True
    # The handled spec is remembered in memory: storing it patches nothing on the object.
    storage = ks.persistence.diffbase_storage
    body = kopf.Body(
        {
            "metadata": {
                "uid": "u1",
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "x",
                    "rktoperator.io/last-handled-configuration": "{}",  # an older agent's
                },
            },
            "spec": {"image": "a"},
        }
    )
    patch = kopf.Patch()
    storage.store(body=body, patch=patch, essence=storage.build(body=body))
    assert not patch
    assert storage.fetch(body=body) == {"spec": {"image": "a"}}
    # The same instance serves every kopf run of the process (configure runs per run).
    kopfapp.configure(ks, SETTINGS)
    assert ks.persistence.diffbase_storage is storage
    assert isinstance(storage, handlers.MemoryDiffBase)
    storage.forget("u1")
    assert storage.fetch(body=body) is None


def test_configure_label_mode_and_namespace_globs() -> None:
    ks = kopf.OperatorSettings()
    kopfapp.configure(
        ks, Settings(node_name="node-b", selector="label", namespaces=("team-*", "ops"))
    )
    assert _selectors(ks.watching.label_selectors) == {
        ("rktoperator.io", "rkttasks"): "rktoperator.io/node=node-b"
    }
    assert not dict(ks.watching.field_selectors)
    assert ks.scanning.disabled is False  # globs need kopf's namespace watch


def test_caught_up_follows_the_diff_base() -> None:
    storage = handlers.MemoryDiffBase(prefix="rktoperator.io")
    raw: Any = {"metadata": {"name": "x", "uid": "u1"}, "spec": {"image": "a"}}
    assert not handlers.caught_up(kopf.Body(raw), storage)  # never handled
    patch = kopf.Patch()
    storage.store(body=kopf.Body(raw), patch=patch, essence=storage.build(body=kopf.Body(raw)))
    handled: Any = {**raw, "status": {"phase": "Running"}}
    assert handlers.caught_up(kopf.Body(handled), storage)
    changed: Any = {**handled, "spec": {"image": "b"}}
    assert not handlers.caught_up(kopf.Body(changed), storage)


def test_caught_up_answers_again_for_the_same_version_and_handled_essence() -> None:
    """The answer is kept per resourceVersion, and only while kopf's stored essence is the
    one it was compared with: a newer handled change is compared afresh."""
    storage = handlers.MemoryDiffBase(prefix="rktoperator.io")
    raw: Any = {"metadata": {"name": "x", "uid": "u1", "resourceVersion": "5"}, "spec": {"a": 1}}
    storage.store(
        body=kopf.Body(raw), patch=kopf.Patch(), essence=storage.build(body=kopf.Body(raw))
    )
    newer: Any = {**raw, "metadata": {**raw["metadata"], "resourceVersion": "6"}, "spec": {"a": 2}}
    assert not handlers.caught_up(kopf.Body(newer), storage)
    assert not handlers.caught_up(kopf.Body(newer), storage)  # kept: still not handled
    # kopf handles the change: the same version is now caught up
    storage.store(
        body=kopf.Body(newer), patch=kopf.Patch(), essence=storage.build(body=kopf.Body(newer))
    )
    assert handlers.caught_up(kopf.Body(newer), storage)
    assert handlers.caught_up(kopf.Body(newer), storage)
    storage.forget("u1")
    assert not handlers.caught_up(kopf.Body(newer), storage)


def test_memory_diff_base_builds_kopfs_essence_without_copying_the_rest() -> None:
    """The agent's essence is kopf's own (labels, annotations, spec; no status, no other
    metadata), for the fields kopf asks for too, though only the kept parts are copied."""
    raw: Any = {
        "apiVersion": "rktoperator.io/v1alpha1",
        "kind": "RktTask",
        "metadata": {
            "name": "x",
            "uid": "u1",
            "resourceVersion": "7",
            "labels": {"app": "a"},
            "annotations": {"team": "a", "rktoperator.io/create": "{}"},
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
            "finalizers": ["rktoperator.io/finalizer"],
        },
        "spec": {"image": "a", "args": ["1"]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready"}]},
    }
    mine = handlers.MemoryDiffBase(prefix="rktoperator.io")
    kopfs = kopf.AnnotationsDiffBaseStorage(prefix="other.example")
    for extra in ([], ["spec"], ["status.phase"], [("metadata", "finalizers")]):
        theirs: Any = kopfs.build(body=kopf.Body(raw), extra_fields=extra)
        del theirs["metadata"]["annotations"]["rktoperator.io/create"]
        assert mine.build(body=kopf.Body(raw), extra_fields=extra) == theirs, extra
    essence: Any = mine.build(body=kopf.Body(raw))
    assert essence == {
        "metadata": {"labels": {"app": "a"}, "annotations": {"team": "a"}},
        "spec": {"image": "a", "args": ["1"]},
    }
    essence["spec"]["args"].append("2")  # a copy: the object is untouched
    assert raw["spec"]["args"] == ["1"]


def test_key_value_log_lines() -> None:
    formatter = logconfig.KeyValueFormatter()
    record = logging.LogRecord(
        "kopf.objects", logging.INFO, __file__, 1, "pod %s up", ("ab",), None
    )
    record.k8s_ref = {"namespace": "team", "name": "web"}
    line = formatter.format(record)
    assert ' level=INFO logger=kopf.objects object=team/web msg="pod ab up"' in line
    plain = logging.LogRecord("x", logging.WARNING, __file__, 1, "ok", (), None)
    assert formatter.format(plain).endswith(" level=WARNING logger=x msg=ok")


def test_cli_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["version"]) == 0
    assert capsys.readouterr().out == f"rkt-operator {rkt_operator.__version__}\n"


def test_cli_run_needs_a_node(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--rkt-path=/nonexistent"]) == 2
    assert "no node name" in capsys.readouterr().err


def test_cli_bad_setting(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--node-name=a", "--selector=both"]) == 2
    assert "selector" in capsys.readouterr().err


def test_cli_fingerprint_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rkt_sim = Path(sys.executable).parent / "rkt-sim"
    code = cli.main(
        [
            "fingerprint",
            f"--rkt-path={rkt_sim}",
            f"--rkt-dir={tmp_path / 'rkt'}",
            f"--rkt-local-config={tmp_path / 'etc'}",
        ]
    )
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"detected", "healthy", "description", "attributes", "labels"}
    assert result["detected"] is (os.geteuid() == 0) or result["detected"] is True
    assert code == (0 if result["healthy"] else 1)
    assert result["labels"]["rktoperator.io/rkt"] == ("true" if result["healthy"] else "false")


def test_progress_of_a_handled_change_leaves_nothing_to_write() -> None:
    """kopf stores then purges a handler's progress in one cycle: nothing is left in the
    patch (no marker annotation), so a handled change costs no write of kopf's own."""
    storage = handlers.UnmarkedProgress(prefix="rktoperator.io")
    body = kopf.Body({"metadata": {"name": "x", "uid": "u1"}, "spec": {"image": "a"}})
    patch = kopf.Patch()
    record: Any = {"started": "2026-01-01T00:00:00", "success": True}
    storage.store(key=kopf.HandlerId("create"), record=record, body=body, patch=patch)
    assert "rktoperator.io/create" in patch["metadata"]["annotations"]
    assert "rktoperator.io/kopf-managed" not in patch["metadata"]["annotations"]
    storage.purge(key=kopf.HandlerId("create"), body=body, patch=patch)
    assert not patch.get("metadata", {}).get("annotations")
    # The agent's diff-base leaves its own annotations out of the essence.
    diffbase = handlers.MemoryDiffBase(prefix="rktoperator.io")
    annotated: Any = {
        "metadata": {"uid": "u1", "annotations": {"rktoperator.io/create": "{}", "team": "a"}},
        "spec": {"image": "a"},
    }
    assert diffbase.build(body=kopf.Body(annotated)) == {
        "metadata": {"annotations": {"team": "a"}},
        "spec": {"image": "a"},
    }


class _Passes:
    """A reconciler that records the passes the node loop runs (no rkt, no API)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.posted: list[tuple[str, str, str]] = []
        self.api = self
        self.requeue_after: float | None = None
        self.fail_with: Exception | None = None

    async def reconcile(self, body: Any, **_: Any) -> Any:
        from rkt_operator.reconcile.statuswriter import Event, Outcome

        self.calls.append(("resync", body["metadata"]["name"]))
        if self.fail_with is not None:
            raise self.fail_with
        events = [Event("Normal", "Exited", "pod exited"), Event("Normal", "Restarting", "x", True)]
        return Outcome(events=events, requeue_after=self.requeue_after)

    async def probe(self, body: Any, **_: Any) -> Any:
        from rkt_operator.reconcile.statuswriter import Outcome

        self.calls.append(("probe", body["metadata"]["name"]))
        return Outcome()

    async def post_task_event(self, task: Any, **kw: Any) -> bool:
        self.posted.append((task["metadata"]["name"], kw["reason"], kw["key"]))
        return True


def _loop_with(
    bodies: list[dict[str, Any]], handled: list[dict[str, Any]]
) -> tuple[handlers.NodeLoop, _Passes, list[float]]:
    storage = handlers.MemoryDiffBase(prefix="rktoperator.io")
    for raw in handled:
        body = kopf.Body(cast(Any, raw))
        storage.store(body=body, patch=kopf.Patch(), essence=storage.build(body=body))
    passes = _Passes()
    agent = handlers.Agent(settings=SETTINGS, reconciler=cast(Any, passes), diffbase=storage)
    now = [1000.0]
    loop = handlers.NodeLoop(agent, kopf_settings=kopf.OperatorSettings(), clock=lambda: now[0])
    for raw in bodies:
        loop.observe("ADDED", kopf.Body(cast(Any, raw)))
    return loop, passes, now


def _task_body(name: str, **extra: Any) -> dict[str, Any]:
    meta = {"name": name, "namespace": "team", "uid": f"uid-{name}", "resourceVersion": "1"}
    return {"metadata": meta, "spec": {"image": "a", "nodeName": SETTINGS.node_name, **extra}}


async def _ticks(loop: handlers.NodeLoop, now: list[float], *times: float) -> list[int]:
    started = []
    for at in times:
        now[0] = at
        started.append(loop.run_due())
        await loop.stop(grace=5)  # lets the passes of this tick end
    return started


async def test_node_loop_resyncs_caught_up_tasks_each_interval_and_posts_their_events() -> None:
    """One loop runs every task's resync (SETTINGS: every 5 s) once its change handlers are
    done; a task whose change kopf has not handled yet, or that is being deleted, is left to
    its handlers; events are posted through the agent's API, a pre-posted one is not."""
    ready = _task_body("ready")
    pending = _task_body("pending")  # its create handler has not finished
    dying = _task_body("dying")
    dying["metadata"]["deletionTimestamp"] = "2026-12-03T00:00:00Z"
    loop, passes, now = _loop_with([ready, pending, dying], handled=[ready, dying])
    assert await _ticks(loop, now, 1000.0, 1004.0) == [0, 0]
    assert await _ticks(loop, now, 1005.0) == [2]  # pending: a pass that does nothing
    assert passes.calls == [("resync", "ready")]
    assert [(n, r) for n, r, _ in passes.posted] == [("ready", "Exited")]
    assert await _ticks(loop, now, 1006.0, 1009.9, 1010.0) == [0, 0, 2]
    assert passes.calls == [("resync", "ready")] * 2
    assert len({key for _, _, key in passes.posted}) == 2  # one event each time, not one name


async def test_node_loop_probes_every_tick_and_honours_a_back_off_due_sooner() -> None:
    probed = _task_body("probed", readinessProbe={"exec": {"command": ["true"]}})
    loop, passes, now = _loop_with([probed], handled=[probed])
    await _ticks(loop, now, 1000.0, 1001.0, 1002.0)
    assert passes.calls == [("probe", "probed")] * 3
    passes.requeue_after = 1.5
    await _ticks(loop, now, 1005.0)
    assert passes.calls[-1] == ("resync", "probed")
    passes.requeue_after = None
    await _ticks(loop, now, 1006.0, 1006.5)
    assert passes.calls[-2:] == [("probe", "probed"), ("resync", "probed")]


async def test_a_failing_pass_is_logged_and_the_loop_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ready = _task_body("ready")
    loop, passes, now = _loop_with([ready], handled=[ready])
    passes.fail_with = ConnectionRefusedError(111, "Connection refused")
    with caplog.at_level(logging.WARNING):
        await _ticks(loop, now, 1000.0, 1005.0)
    assert "resync pass failed temporarily: API unavailable" in caplog.text
    assert "Traceback" not in caplog.text
    passes.fail_with = RuntimeError("a bug")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        await _ticks(loop, now, 1010.0)
    assert "resync pass failed" in caplog.text
    assert "RuntimeError: a bug" in caplog.text
    passes.fail_with = None
    await _ticks(loop, now, 1015.0)
    assert passes.calls == [("resync", "ready")] * 3


async def test_the_loop_follows_the_watch_and_forgets_deleted_tasks() -> None:
    """The event handler feeds the loop the latest body; a deleted task (or one of another
    node) gets no further pass."""
    ready = _task_body("ready")
    loop, passes, now = _loop_with([ready], handled=[ready])
    newer = {**ready, "metadata": {**ready["metadata"], "resourceVersion": "2"}}
    memo = kopf.Memo()
    memo.node_loop = loop
    handlers.track(body=kopf.Body(cast(Any, newer)), type="MODIFIED", memo=memo)
    assert loop.tasks["uid-ready"]["metadata"]["resourceVersion"] == "2"
    managed = {**newer, "metadata": {**newer["metadata"], "managedFields": [{"manager": "x"}]}}
    handlers.track(body=kopf.Body(cast(Any, managed)), type="MODIFIED", memo=memo)
    kept = loop.tasks["uid-ready"]
    assert "managedFields" not in kept["metadata"]  # not kept for every task
    assert kept["metadata"] == newer["metadata"]
    assert kept["spec"] == newer["spec"]
    await _ticks(loop, now, 1000.0, 1005.0)
    assert passes.calls == [("resync", "ready")]
    handlers.track(body=kopf.Body(cast(Any, newer)), type="DELETED", memo=memo)
    other = _task_body("other", nodeName="node-z")
    handlers.track(body=kopf.Body(cast(Any, other)), type=None, memo=memo)
    assert not loop.tasks
    assert await _ticks(loop, now, 1010.0, 1020.0) == [0, 0]  # "ready" was due at 1010
    assert len(loop.schedule) == 0
    handlers.track(body=kopf.Body(cast(Any, ready)), type=None, memo=kopf.Memo())  # no loop


def test_kopfs_line_for_each_watch_event_is_dropped() -> None:
    routine = logconfig.RoutineFilter()
    tick = logging.LogRecord(
        "kopf.objects", logging.INFO, __file__, 1, "Handler 'track' succeeded.", (), None
    )
    other = logging.LogRecord(
        "kopf.objects", logging.INFO, __file__, 1, "Handler 'create' succeeded.", (), None
    )
    assert routine.filter(tick) is False
    assert routine.filter(other) is True


async def test_node_loop_gives_the_memory_back_once_a_burst_is_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The loop asks ``memtrim``'s policy each tick with the change handlers and starts
    begun and in flight (the restart's re-confirmation is a burst without starts), and
    releases memory once, after the burst, not during it."""
    released: list[float] = []

    async def release() -> memtrim.Released:
        released.append(now[0])
        return memtrim.Released(rss_before=2 * memtrim.MIB, rss_after=memtrim.MIB, trimmed=True)

    monkeypatch.setattr(handlers.memtrim, "release", release)
    loop, passes, now = _loop_with([], handled=[])
    starts = memtrim.Activity()
    passes.applier = SimpleNamespace(starts=starts)  # type: ignore[attr-defined]
    changes = loop.agent.changes
    for second in range(20):  # a burst: 10 change handlers (no start), then 10 starts
        now[0] = 1000.0 + second
        with changes.track() if second < 10 else starts.track():
            assert await loop.trim_if_due() is False
    for second in range(20, 40):
        now[0] = 1000.0 + second
        await loop.trim_if_due()
    assert released == [1029.0]  # ten quiet seconds after the last one seen (1019)
    assert (changes.begun, starts.begun, changes.in_flight, starts.in_flight) == (10, 10, 0, 0)
