"""Fault injection through ``<dir>/.sim-faults.json``: explicit, consumed, never by default."""

from __future__ import annotations

import concurrent.futures
import json

from simlib import Sim


def test_no_fault_file_means_normal_behaviour(sim: Sim) -> None:
    assert sim.ok("list", "--format=json").strip() == "null"
    assert not (sim.data_dir / ".sim-faults.json").exists()


def test_fail_is_consumed_once(sim: Sim) -> None:
    sim.faults({"list": [{"action": "fail", "stderr": "list: injected", "code": 17}]})
    failed = sim.run("list", "--format=json")
    assert failed.returncode == 17
    assert failed.stderr == "list: injected\n"
    assert failed.stdout == ""
    assert sim.ok("list", "--format=json").strip() == "null"
    assert sim.remaining_faults() == {"list": []}


def test_fail_defaults_to_rkt_generic_failure(sim: Sim) -> None:
    sim.faults({"version": [{"action": "fail"}]})
    failed = sim.run("version")
    assert failed.returncode == 254
    assert failed.stderr == "version: simulated failure\n"


def test_garbage_prints_invalid_json_and_succeeds(sim: Sim) -> None:
    sim.faults({"list": [{"action": "garbage"}]})
    done = sim.run("list", "--format=json")
    assert done.returncode == 0
    try:
        json.loads(done.stdout)
    except ValueError:
        pass
    else:
        raise AssertionError(f"expected garbage, got {done.stdout!r}")


def test_hang_blocks_then_fails(sim: Sim) -> None:
    sim.faults({"status": [{"action": "hang", "seconds": 0.2}]})
    done = sim.run("status", "whatever")
    assert done.returncode == 254
    assert done.stdout == ""


def test_slow_still_runs_the_command(sim: Sim) -> None:
    sim.faults({"*": [{"action": "slow", "seconds": 0.1, "times": 2}]})
    assert sim.ok("list", "--format=json").strip() == "null"
    assert sim.remaining_faults() == {"*": [{"action": "slow", "seconds": 0.1, "times": 1}]}
    assert sim.ok("version").startswith("rkt Version: ")
    assert sim.remaining_faults() == {"*": []}


def test_times_and_if_arg(sim: Sim) -> None:
    sim.faults({"status": [{"action": "fail", "times": 2, "if_arg": "target"}]})
    assert sim.run("status", "other").stderr.startswith("status: problem retrieving pod")
    assert sim.run("status", "target").stderr == "status: simulated failure\n"
    assert sim.run("status", "target").stderr == "status: simulated failure\n"
    assert sim.run("status", "target").stderr.startswith("status: problem retrieving pod")


def test_unlimited_entry(sim: Sim) -> None:
    sim.faults({"version": [{"action": "fail", "times": -1}]})
    for _ in range(3):
        assert sim.run("version").returncode == 254


def test_subcommand_paths_are_the_keys(sim: Sim) -> None:
    sim.faults({"image list": [{"action": "fail"}]})
    assert sim.run("list", "--format=json").returncode == 0
    assert sim.run("image", "list").returncode == 254


def test_concurrent_invocations_consume_each_entry_once(sim: Sim) -> None:
    sim.faults({"version": [{"action": "fail", "times": 3}]})
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        codes = list(pool.map(lambda _: sim.run("version").returncode, range(8)))
    assert sorted(codes) == [0] * 5 + [254] * 3


def test_crash_kills_the_simulator(sim: Sim) -> None:
    sim.faults({"list": [{"action": "crash"}]})
    assert sim.run("list").returncode == -9
