"""The launch decision as a value: which launcher, whether the supervisor leaves the agent's
container, and the argv that says so; plus the settings it is made from and the cgroup
hierarchies it acts on (parsed from mountinfo text)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rkt_operator import settings
from rkt_operator.executor import hostns, launcher, launchplan
from rkt_operator.settings import Settings

UUID = "5d3c2b1a-9e8f-4a7b-8c6d-0e1f2a3b4c5d"
RKT = ["/usr/bin/rkt", "--dir=/var/lib/rkt", "run-prepared", UUID]


def plan(**overrides: object) -> launchplan.Launch:
    values: dict[str, object] = {
        "root": Path("/tasks/t"),
        "kind": "detached",
        "host_launch": "auto",
        "in_container": True,
        "host_pid": 1,
        "cgroup_parent": "rkt-operator",
        "python": "/opt/venv/bin/python",
        "path_env": "/usr/bin",
    }
    values.update(overrides)
    return launchplan.plan_launch(RKT, UUID, **values)  # type: ignore[arg-type]


def test_detached_in_a_container_leaves_it() -> None:
    launch = plan()
    assert launch.escape == launchplan.HostEscape(
        pid=1, namespaces=("mnt", "uts", "ipc", "net", "cgroup"), cgroup=f"rkt-operator/{UUID}"
    )
    argv = list(launch.argv)
    assert argv[:3] == ["/opt/venv/bin/python", "-m", "rkt_operator.executor.shim"]
    escape_flags = [
        "--enter-namespaces-of=1",
        "--namespaces=mnt,uts,ipc,net,cgroup",
        f"--cgroup=rkt-operator/{UUID}",
    ]
    assert argv[argv.index("--") - 3 : argv.index("--")] == escape_flags
    assert argv[argv.index("--") + 1 :] == RKT


@pytest.mark.parametrize(
    ("setting", "in_container", "escapes"),
    [
        ("auto", True, True),
        ("auto", False, False),
        ("always", False, True),
        ("never", True, False),
    ],
)
def test_host_launch_setting(setting: str, in_container: bool, escapes: bool) -> None:
    launch = plan(host_launch=setting, in_container=in_container)
    assert (launch.escape is not None) == escapes
    assert any(a.startswith("--enter-namespaces-of=") for a in launch.argv) == escapes


def test_the_host_pid_and_cgroup_parent_are_taken_from_the_settings() -> None:
    launch = plan(host_pid=2, cgroup_parent="ops/rkt")
    assert launch.escape is not None
    assert launch.escape.pid == 2
    assert f"--cgroup=ops/rkt/{UUID}" in launch.argv
    assert "--enter-namespaces-of=2" in launch.argv


def test_a_systemd_unit_never_escapes_it_is_the_hosts_already() -> None:
    launch = plan(kind="systemd", host_launch="always")
    assert launch.escape is None
    assert launch.argv[0] == "systemd-run"
    assert "--setenv=PATH=/usr/bin" in launch.argv


def test_extra_path_goes_first_on_the_rkt_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    agent = Settings(extra_path=("/opt/nspawn", "/opt/more"))
    assert agent.host_environment["PATH"] == "/opt/nspawn:/opt/more:/usr/bin:/bin"
    assert Settings().host_environment["PATH"] == "/usr/bin:/bin"


@pytest.mark.parametrize("bad", ["relative/dir", "/a:/b"])
def test_extra_path_must_be_absolute_directories(bad: str) -> None:
    with pytest.raises(ValueError, match="extra_path"):
        settings.load(environ={"RKT_OPERATOR_EXTRA_PATH": bad})


@pytest.mark.parametrize("bad", ["/rkt-operator", "a/../b", "", "a//b", "."])
def test_host_cgroup_must_be_a_plain_relative_path(bad: str) -> None:
    with pytest.raises(ValueError, match="host_cgroup"):
        settings.load(environ={"RKT_OPERATOR_HOST_CGROUP": bad})


def test_host_settings_from_the_environment() -> None:
    loaded = settings.load(
        environ={
            "RKT_OPERATOR_HOST_LAUNCH": "always",
            "RKT_OPERATOR_HOST_NAMESPACES_PID": "2",
            "RKT_OPERATOR_HOST_CGROUP": "ops/rkt",
            "RKT_OPERATOR_EXTRA_PATH": "/opt/nspawn,/opt/more",
        }
    )
    assert loaded.host_launch == "always"
    assert loaded.host_namespaces_pid == 2
    assert loaded.host_cgroup == "ops/rkt"
    assert loaded.extra_path == ("/opt/nspawn", "/opt/more")


def test_in_container_compares_mount_namespaces(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    for pid, target in (("self", "a"), ("1", "a"), ("2", "b")):
        (proc / pid / "ns").mkdir(parents=True)
        (proc / pid / "ns" / "mnt").write_text(target)  # distinct files: distinct inodes
    assert launcher.in_container(1, proc) is True  # different files, like different namespaces
    (proc / "1" / "ns" / "mnt").unlink()
    (proc / "1" / "ns" / "mnt").hardlink_to(proc / "self" / "ns" / "mnt")
    assert launcher.in_container(1, proc) is False
    assert launcher.in_container(7, proc) is False  # unreadable: no escape assumed


MOUNTINFO_V1_HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
90 70 0:32 /kubepods/x /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
91 70 0:32 / /mnt/memory\\040again rw,relatime - cgroup cgroup rw,memory
"""


def test_hierarchies_are_the_root_mounts_one_each(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(MOUNTINFO_V1_HYBRID)
    found = {str(h.root): (h.unified, sorted(h.options)) for h in hostns.hierarchies(mountinfo)}
    assert found == {
        "/sys/fs/cgroup/cpu,cpuacct": (False, ["cpu", "cpuacct"]),
        "/sys/fs/cgroup/cpuset": (False, ["cpuset"]),
        "/sys/fs/cgroup/memory": (False, ["memory"]),
        "/sys/fs/cgroup/systemd": (False, ["name=systemd", "xattr"]),
        "/sys/fs/cgroup/unified": (True, ["cgroup2"]),
    }


def test_hierarchies_of_a_pure_cgroup_v2_host(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n")
    (only,) = hostns.hierarchies(mountinfo)
    assert only.root == Path("/sys/fs/cgroup")
    assert only.unified


def test_no_import_after_the_mount_namespace_changed() -> None:
    code = (
        "import json\n"
        "from rkt_operator.executor import hostns\n"
        "hostns.forbid_imports()\n"
        "import json  # loaded already: fine\n"
        "try:\n"
        "    import tomllib\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "tomllib imported after leaving the agent's container"
