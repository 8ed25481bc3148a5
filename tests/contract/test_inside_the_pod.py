"""What the app sees: volumes at their targets, its environment, its user and group, and
``enter`` running commands beside it."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from contractlib import WAIT_SECONDS, Images, Rkt


def run_to_end(rkt: Rkt, uuid: str) -> int:
    done = subprocess.run(
        rkt.argv("run-prepared", uuid), capture_output=True, timeout=WAIT_SECONDS, check=False
    )
    return done.returncode


def test_app_writes_into_a_host_volume(rkt: Rkt, images: Images, tmp_path: Path) -> None:
    """Nomad's S6: a host directory mounted into the app is written from inside."""
    host = tmp_path / "host-volume"
    host.mkdir()
    uuid = rkt.prepare(
        f"--volume=out,kind=host,source={host}",
        str(images.shell),
        "--mount=volume=out,target=/out",
        "--exec=/bin/sh",
        "--",
        "-c",
        "echo written-inside > /out/result; ls / > /out/root-listing",
    )
    assert run_to_end(rkt, uuid) == 0
    assert (host / "result").read_text() == "written-inside\n"
    assert "out" in (host / "root-listing").read_text().split()


def test_read_only_volume_refuses_writes(rkt: Rkt, images: Images, tmp_path: Path) -> None:
    host = tmp_path / "ro"
    host.mkdir()
    uuid = rkt.prepare(
        f"--volume=ro,kind=host,source={host},readOnly=true",
        str(images.shell),
        "--mount=volume=ro,target=/ro",
        "--exec=/bin/sh",
        "--",
        "-c",
        "echo x > /ro/f",
    )
    assert run_to_end(rkt, uuid) != 0
    assert not (host / "f").exists()


def test_image_mount_point_gets_the_volume_of_the_same_name(
    rkt: Rkt, images: Images, tmp_path: Path
) -> None:
    host = tmp_path / "data"
    host.mkdir()
    (host / "seed").write_text("from-host\n")
    uuid = rkt.prepare(
        f"--volume=data,kind=host,source={host}",
        str(images.sleeper),
        "--exec=/bin/sh",
        "--",
        "-c",
        "cat /data/seed > /data/copy",
    )
    assert run_to_end(rkt, uuid) == 0
    assert (host / "copy").read_text() == "from-host\n"


def test_app_environment_has_set_env_and_env_file(rkt: Rkt, images: Images, tmp_path: Path) -> None:
    host = tmp_path / "env-out"
    host.mkdir()
    env_file = tmp_path / "env"
    env_file.write_text("FROM_FILE=file-value\n")
    uuid = rkt.prepare(
        f"--volume=out,kind=host,source={host}",
        "--set-env=FROM_FLAG=flag value",
        f"--set-env-file={env_file}",
        str(images.sleeper),
        "--mount=volume=out,target=/out",
        "--exec=/bin/sh",
        "--",
        "-c",
        "env > /out/env",
    )
    assert run_to_end(rkt, uuid) == 0
    env = dict(
        line.split("=", 1) for line in (host / "env").read_text().splitlines() if "=" in line
    )
    assert env["FROM_FLAG"] == "flag value"
    assert env["FROM_FILE"] == "file-value"
    assert env["FOO"] == "from-image"


def test_app_runs_as_the_requested_user_and_group(rkt: Rkt, images: Images, tmp_path: Path) -> None:
    host = tmp_path / "id-out"
    host.mkdir()
    host.chmod(0o777)
    uuid = rkt.prepare(
        f"--volume=out,kind=host,source={host}",
        str(images.shell),
        "--user=nobody",
        "--group=nogroup",
        "--mount=volume=out,target=/out",
        "--exec=/bin/sh",
        "--",
        "-c",
        "id -u > /out/uid; id -g > /out/gid",
    )
    assert run_to_end(rkt, uuid) == 0
    assert (host / "uid").read_text().strip() == "65534"
    assert (host / "gid").read_text().strip() == "65534"


def test_enter_sees_the_app_as_nobody(rkt: Rkt, images: Images) -> None:
    """Nomad's S7: ``ps`` inside the pod shows the app running as nobody/nogroup."""
    uuid = rkt.prepare(str(images.sleeper), "--user=nobody", "--group=nogroup")
    rkt.start(uuid)
    rkt.wait_enterable(uuid)
    # Real rkt's stage1 forks the app's unit process first (ps shows "(sleep)" as root) and
    # execs the app as nobody a moment later: poll.
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        done = rkt.run("enter", uuid, "/bin/ps", "-o", "user,group,args")
        assert done.returncode == 0, done.stderr
        rows = [line.split(None, 2) for line in done.stdout.splitlines()[1:]]
        if ["nobody", "nogroup", "/bin/sleep 3600"] in rows or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert ["nobody", "nogroup", "/bin/sleep 3600"] in rows


def test_enter_returns_the_command_status_and_sees_the_pod(
    rkt: Rkt, images: Images, tmp_path: Path
) -> None:
    host = tmp_path / "shared"
    host.mkdir()
    uuid = rkt.prepare(f"--volume=data,kind=host,source={host}", str(images.sleeper))
    rkt.start(uuid)
    rkt.wait_enterable(uuid)
    done = rkt.run(
        "enter", uuid, "/bin/sh", "-c", "cat /etc/hostname; echo hi > /data/from-enter; exit 4"
    )
    assert done.returncode == 4
    assert done.stdout.strip() == f"rkt-{uuid}"
    assert (host / "from-enter").read_text() == "hi\n"


def test_enter_needs_a_running_pod(rkt: Rkt, images: Images) -> None:
    uuid = rkt.prepare(str(images.sleeper))
    done = rkt.run("enter", uuid, "/bin/true")
    assert done.returncode == 254
    assert done.stderr.strip() == f'enter: pod "{uuid}" isn\'t currently running'


def test_enter_asks_which_app_of_a_multi_app_pod(rkt: Rkt, images: Images) -> None:
    uuid = rkt.prepare(str(images.sleeper), "--name=one", str(images.sleeper), "--name=two")
    rkt.start(uuid)
    rkt.wait_enterable(uuid, app="two")
    done = rkt.run("enter", uuid, "/bin/true")
    assert done.returncode == 254
    assert done.stderr.splitlines() == [
        "enter: pod contains multiple apps:",
        "enter: \tone",
        "enter: \ttwo",
        'enter: unable to determine app name: specify app using "rkt enter --app= ..."',
    ]
    assert rkt.run("enter", "--app=two", uuid, "/bin/true").returncode == 0


def test_first_failing_app_ends_a_multi_app_pod(rkt: Rkt, images: Images) -> None:
    uuid = rkt.prepare(
        str(images.sleeper),
        "--name=long",
        str(images.shell),
        "--name=failing",
        "--exec=/bin/sh",
        "--",
        "-c",
        "exit 5",
    )
    assert run_to_end(rkt, uuid) == 5
    apps = {a["name"]: a for a in rkt.status_json(uuid)["apps"]}  # type: ignore[attr-defined]
    assert apps["failing"]["exit_code"] == 5
    assert apps["long"]["state"] == "exited"


READER = (
    "while [ ! -s /scratch/note ]; do sleep 0.1; done; "
    "cp /scratch/note /out/; cat /etc/motd > /out/motd 2>&1; true"
)


def test_no_overlay_copy_and_empty_volume_shared_by_apps(
    rkt: Rkt, images: Images, tmp_path: Path
) -> None:
    host = tmp_path / "result"
    host.mkdir()
    uuid = rkt.prepare(
        "--no-overlay",
        "--volume=scratch,kind=empty,mode=0777",
        f"--volume=out,kind=host,source={host}",
        str(images.shell),
        "--name=writer",
        "--mount=volume=scratch,target=/scratch",
        "--exec=/bin/sh",
        "--",
        "-c",
        "echo shared > /scratch/note; echo changed > /etc/motd",
        "---",
        str(images.sleeper),
        "--name=reader",
        "--mount=volume=scratch,target=/scratch",
        "--mount=volume=out,target=/out",
        "--exec=/bin/sh",
        "--",
        "-c",
        READER,
    )
    assert run_to_end(rkt, uuid) == 0
    assert (host / "note").read_text() == "shared\n"
    assert "changed" not in (host / "motd").read_text()  # each app has its own root


def test_read_only_rootfs(rkt: Rkt, images: Images, tmp_path: Path) -> None:
    host = tmp_path / "rw"
    host.mkdir()
    uuid = rkt.prepare(
        f"--volume=rw,kind=host,source={host}",
        str(images.shell),
        "--readonly-rootfs=true",
        "--mount=volume=rw,target=/rw",
        "--exec=/bin/sh",
        "--",
        "-c",
        "if touch /root-file; then echo writable > /rw/r; else echo read-only > /rw/r; fi",
    )
    assert run_to_end(rkt, uuid) == 0
    assert (host / "r").read_text() == "read-only\n"
