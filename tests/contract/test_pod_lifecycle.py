"""Running pods: run-prepared, status (text/JSON, waits), list, stop, rm, gc, UUID prefixes."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from contractlib import WAIT_SECONDS, Images, Rkt


def test_run_prepared_blocks_and_exits_with_the_app_code(rkt: Rkt, images: Images) -> None:
    uuid = rkt.prepare(str(images.shell), "--exec=/bin/sh", "--", "-c", "sleep 1; exit 3")
    done = subprocess.run(
        rkt.argv("run-prepared", uuid), capture_output=True, timeout=WAIT_SECONDS, check=False
    )
    assert done.returncode == 3
    status = rkt.status_json(uuid)
    assert status["state"] == "exited"
    app = status["apps"][0]  # type: ignore[index]
    assert app["state"] == "exited"
    assert app["exit_code"] == 3
    text = rkt.ok("status", uuid).splitlines()
    assert text[0] == "state=exited"
    assert "exited=true" in text
    assert "app-shell=3" in text


def test_run_prepared_needs_a_prepared_pod(rkt: Rkt, images: Images) -> None:
    uuid = rkt.prepare(str(images.shell))
    assert rkt.run("run-prepared", uuid).returncode == 0
    again = rkt.run("run-prepared", uuid)
    assert again.returncode == 254
    assert again.stderr.strip() == f'run-prepared: pod "{uuid}" is not prepared'


def test_status_of_a_running_pod(rkt: Rkt, images: Images) -> None:
    uuid = rkt.prepare(str(images.sleeper))
    status = rkt.start(uuid)
    net: Any = status["networks"]
    assert len(net) == 1
    assert net[0]["netName"] == "default"
    assert net[0]["ifName"] == "eth0"
    assert net[0]["mask"] == "255.255.255.0"
    assert ipaddress.ip_address(net[0]["ip"]) in ipaddress.ip_network("172.16.28.0/24")
    assert set(net[0]) == {"netName", "netConf", "pluginPath", "ifName", "ip", "args", "mask"}
    assert status["app_names"] == ["sleeper"]
    app: Any = status["apps"]
    assert app[0]["state"] == "running"
    assert "exit_code" not in app[0]
    # pod times are seconds, app times nanoseconds
    assert isinstance(status["created_at"], int)
    assert isinstance(status["started_at"], int)
    assert status["created_at"] < 10**11
    assert status["started_at"] >= status["created_at"]
    assert app[0]["created_at"] > 10**17
    assert app[0]["created_at"] // 10**9 == status["created_at"]
    text = rkt.ok("status", uuid).splitlines()
    assert text[0] == "state=running"
    assert re.fullmatch(
        r"created=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,3})? [+-]\d{4} \S+", text[1]
    )
    assert f"networks=default:ip4={net[0]['ip']}" in text
    assert any(re.fullmatch(r"pid=\d+", line) for line in text)
    assert "exited=false" in text
    pretty = rkt.ok("status", "--format=json-pretty", uuid)
    assert pretty.startswith('{\n\t"name": ')
    assert json.loads(pretty)["name"] == uuid


def test_two_pods_get_different_addresses(rkt: Rkt, images: Images) -> None:
    first, second = rkt.prepare(str(images.sleeper)), rkt.prepare(str(images.sleeper))
    ips = {rkt.start(uuid)["networks"][0]["ip"] for uuid in (first, second)}  # type: ignore[index]
    assert len(ips) == 2


def test_host_and_none_networking_report_no_networks(rkt: Rkt, images: Images) -> None:
    for net in ("host", "none"):
        uuid = rkt.prepare(str(images.sleeper))
        status = rkt.start(uuid, f"--net={net}")
        assert "networks" not in status
        assert "networks=" in rkt.ok("status", uuid).splitlines()


def test_status_wait_returns_when_the_pod_exits(rkt: Rkt, images: Images) -> None:
    uuid = rkt.prepare(str(images.shell), "--exec=/bin/sleep", "--", "1")
    rkt.spawn(uuid)
    done = rkt.run("status", "--wait=30s", "--format=json", uuid)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["state"] == "exited"


def test_status_wait_times_out(rkt: Rkt, images: Images) -> None:
    uuid = rkt.prepare(str(images.sleeper))
    rkt.start(uuid)
    done = rkt.run("status", "--wait=1s", uuid)
    assert done.returncode == 254
    assert (
        done.stderr.strip() == "status: error waiting for pod to finish: context deadline exceeded"
    )


def test_wait_ready_times_out_for_a_prepared_pod(rkt: Rkt, images: Images) -> None:
    uuid = rkt.prepare(str(images.sleeper))
    done = rkt.run("status", "--wait-ready=1s", uuid)
    assert done.returncode == 254
    assert "error waiting for pod readiness: context deadline exceeded" in done.stderr


def test_list_json(rkt: Rkt, images: Images) -> None:
    assert rkt.ok("list", "--format=json").strip() == "null"
    prepared = rkt.prepare(str(images.shell))
    running = rkt.prepare(str(images.sleeper), "--user-annotation=rktoperator.io/task=ns/name")
    rkt.start(running)
    listed = json.loads(rkt.ok("list", "--format=json"))
    assert [p["name"] for p in listed] == sorted([prepared, running])
    by_name = {p["name"]: p for p in listed}
    assert by_name[prepared]["state"] == "prepared"
    assert by_name[running]["state"] == "running"
    assert by_name[running]["apps"][0]["user_annotations"] == {"rktoperator.io/task": "ns/name"}
    text = rkt.ok("list").splitlines()
    assert re.split(r"\t+", text[0]) == [
        "UUID",
        "APP",
        "IMAGE NAME",
        "STATE",
        "CREATED",
        "STARTED",
        "NETWORKS",
    ]
    assert any(line.startswith(running[:8] + "\t") and "\trunning\t" in line for line in text)


def test_stop_signals_and_returns(rkt: Rkt, images: Images) -> None:
    uuid = rkt.prepare(str(images.sleeper))
    process = rkt.spawn(uuid)
    rkt.wait_started(uuid)
    rkt.wait_enterable(uuid)
    done = rkt.run("stop", uuid)
    assert done.returncode == 0
    assert done.stdout == f'"{uuid}"\n'
    process.wait(timeout=WAIT_SECONDS)
    assert rkt.wait_state(uuid, "exited")["state"] == "exited"
    again = rkt.run("stop", uuid)
    assert again.returncode == 0
    assert again.stdout.strip() == f'pod "{uuid}" is already stopped'


def test_stop_of_a_pod_that_is_not_running(rkt: Rkt, images: Images) -> None:
    uuid = rkt.prepare(str(images.sleeper))
    done = rkt.run("stop", uuid)
    assert done.returncode == 254
    assert done.stderr.splitlines() == [
        f'stop: pod "{uuid}" is not running',
        "stop: failed to stop 1 pod(s)",
    ]


def test_stop_force_kills_a_pod_that_ignores_sigterm(rkt: Rkt, images: Images) -> None:
    """A plain stop does not end an app that ignores SIGTERM within seconds (rkt's stage1
    waits for systemd's stop timeout, 90 s): an agent must escalate to --force itself."""
    script = "trap '' TERM; echo trapped > /tmp/ready; while true; do sleep 1; done"
    uuid = rkt.prepare(str(images.shell), "--exec=/bin/sh", "--", "-c", script)
    process = rkt.spawn(uuid)
    rkt.wait_started(uuid)
    rkt.wait_enterable(uuid)
    deadline = time.monotonic() + WAIT_SECONDS
    while rkt.run("enter", uuid, "/bin/cat", "/tmp/ready").stdout.strip() != "trapped":
        assert time.monotonic() < deadline, "the app never set its trap"
        time.sleep(0.2)
    rkt.ok("stop", uuid)
    time.sleep(8)
    assert rkt.status_json(uuid)["state"] == "running"
    rkt.ok("stop", "--force", uuid)
    process.wait(timeout=WAIT_SECONDS)
    assert process.returncode != 0
    assert rkt.wait_state(uuid, "exited")["state"] == "exited"


def test_rm_by_state(rkt: Rkt, images: Images) -> None:
    prepared = rkt.prepare(str(images.shell))
    done = rkt.run("rm", prepared)
    assert done.returncode == 0
    assert done.stdout == f'"{prepared}"\n'
    assert f'rm: moving expired prepared pod "{prepared}" to garbage' in done.stderr

    running = rkt.prepare(str(images.sleeper))
    rkt.start(running)
    busy = rkt.run("rm", running)
    assert busy.returncode == 254
    assert busy.stderr.splitlines() == [
        f'rm: pod "{running}" is currently running',
        "rm: failed to remove one or more pods",
    ]

    exited = rkt.prepare(str(images.shell))
    rkt.ok("run-prepared", exited)
    assert rkt.ok("rm", exited) == f'"{exited}"\n'
    gone = rkt.run("status", exited)
    assert gone.returncode == 254
    assert gone.stderr.strip() == f'status: problem retrieving pod: no matches found for "{exited}"'


def test_gc_collects_exited_pods(rkt: Rkt, images: Images) -> None:
    uuid = rkt.prepare(str(images.shell))
    rkt.ok("run-prepared", uuid)
    marked = rkt.run("gc", "--mark-only")
    assert marked.returncode == 0
    assert f'gc: moving pod "{uuid}" to garbage' in marked.stderr
    status = rkt.status_json(uuid)
    assert status["state"] == "exited garbage"
    assert status["apps"][0]["finished_at"] > 10**17  # type: ignore[index]
    done = rkt.run("gc", "--grace-period=0s")
    assert done.returncode == 0
    assert f'Garbage collecting pod "{uuid}"' in done.stdout
    assert rkt.ok("list", "--format=json").strip() == "null"


def test_gc_keeps_pods_within_the_grace_period(rkt: Rkt, images: Images) -> None:
    uuid = rkt.prepare(str(images.shell))
    rkt.ok("run-prepared", uuid)
    done = rkt.run("gc")
    assert f'gc: pod "{uuid}" not removed: still within grace period (30m0s)' in done.stderr
    assert rkt.status_json(uuid)["state"] == "exited garbage"


def test_uuid_prefixes(rkt: Rkt, images: Images) -> None:
    uuids: list[str] = []
    while len({u[0] for u in uuids}) == len(uuids):  # until two share a first digit
        uuids.append(rkt.prepare(str(images.shell)))
    shared = next(u[0] for u in uuids if sum(v[0] == u[0] for v in uuids) > 1)
    matches = sum(v[0] == shared for v in uuids)
    ambiguous = rkt.run("status", shared)
    assert ambiguous.returncode == 254
    assert (
        ambiguous.stderr.strip()
        == f"status: problem retrieving pod: ambiguous uuid, {matches} matches"
    )
    unique = uuids[-1]
    assert rkt.status_json(unique[:13].upper())["name"] == unique
    missing = rkt.run("status", "zz")
    assert missing.returncode == 254
    assert missing.stderr.strip() == 'status: problem retrieving pod: no matches found for "zz"'


def test_status_uuid_file(rkt: Rkt, images: Images) -> None:
    uuid = rkt.prepare(str(images.shell))
    uuid_file = rkt.logs / "uuid"
    uuid_file.write_text(f"  {uuid}\n")
    assert rkt.ok("status", f"--uuid-file={uuid_file}").splitlines()[0] == "state=prepared"
    unreadable = rkt.run("status", f"--uuid-file={rkt.logs / 'missing'}")
    assert unreadable.returncode == 1


def test_app_output_reaches_run_prepared_output(rkt: Rkt, images: Images) -> None:
    uuid = rkt.prepare(
        str(images.shell), "--exec=/bin/sh", "--", "-c", "echo to-out; echo to-err >&2"
    )
    done = subprocess.run(
        rkt.argv("run-prepared", uuid),
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
        check=False,
    )
    assert done.returncode == 0
    assert "to-out" in done.stdout + done.stderr
    assert "to-err" in done.stdout + done.stderr


def test_pod_survives_the_death_of_its_launcher(rkt: Rkt, images: Images) -> None:
    """The launching process may go away: run-prepared, detached, keeps the pod running."""
    uuid = rkt.prepare(str(images.sleeper))
    launch = (
        "import subprocess, sys; "
        "subprocess.Popen(sys.argv[1:], start_new_session=True, stdin=subprocess.DEVNULL, "
        "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)"
    )
    launcher = subprocess.Popen([sys.executable, "-c", launch, *rkt.argv("run-prepared", uuid)])
    try:
        assert launcher.wait(timeout=WAIT_SECONDS) == 0
        rkt.wait_started(uuid)
        time.sleep(0.5)
        assert rkt.status_json(uuid)["state"] == "running"
    finally:
        rkt.run("stop", "--force", uuid)
    assert rkt.wait_state(uuid, "exited")["state"] == "exited"


def test_unknown_network_fails_the_pod(rkt: Rkt, images: Images) -> None:
    uuid = rkt.prepare(str(images.shell))
    done = rkt.run("run-prepared", "--net=no-such-net", uuid)
    assert done.returncode == 254
    assert "networks not found: no-such-net" in done.stderr
    assert rkt.status_json(uuid)["state"] == "exited"


def test_run_prepared_reads_networks_from_the_default_config_only(
    rkt: Rkt, images: Images, host_net_conf: Callable[[str, dict[str, Any]], None]
) -> None:
    """``run-prepared`` does not pass --local-config to stage1 (only ``run`` does): user
    networks come from /etc/rkt/net.d, whatever --local-config says."""
    name = f"rktop{os.getpid() % 10000}"
    conf = {
        "name": name,
        "type": "bridge",
        "bridge": f"{name}br",
        "ipMasq": True,
        "ipam": {"type": "host-local", "subnet": "10.222.0.0/24"},
    }
    only_local = rkt.local_config / "net.d"
    only_local.mkdir(parents=True)
    (only_local / f"10-{name}.conf").write_text(json.dumps(conf))
    missed = rkt.prepare(str(images.shell))
    done = rkt.run("run-prepared", f"--net={name}", missed)
    assert done.returncode == 254
    assert f"networks not found: {name}" in done.stderr

    host_net_conf(name, conf)
    uuid = rkt.prepare(str(images.sleeper))
    status = rkt.start(uuid, f"--net={name}:IP=10.222.0.77")
    net: Any = status["networks"]
    assert [(n["netName"], n["ip"], n["mask"], n["args"]) for n in net] == [
        (name, "10.222.0.77", "255.255.255.0", "IP=10.222.0.77")
    ]


def test_only_one_run_prepared_wins(rkt: Rkt, images: Images) -> None:
    uuid = rkt.prepare(str(images.shell), "--exec=/bin/sleep", "--", "2")
    racers = [
        subprocess.Popen(
            rkt.argv("run-prepared", uuid), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        for _ in range(3)
    ]
    results = []
    for racer in racers:
        _, err = racer.communicate(timeout=WAIT_SECONDS)
        results.append((racer.returncode, err.decode()))
    assert sorted(code for code, _ in results) == [0, 254, 254]
    losers = [err for code, err in results if code == 254]
    # A loser either sees the pod no longer prepared, or loses the rename race itself.
    for err in losers:
        line = err.strip().splitlines()[-1]
        assert line == f'run-prepared: pod "{uuid}" is not prepared' or (
            line.startswith("run-prepared: cannot transition to run: rename ")
            and line.endswith(f"/pods/run/{uuid}: no such file or directory")
        ), err
