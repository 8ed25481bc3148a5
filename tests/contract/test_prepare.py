"""``prepare``: argument grammar, validation messages, and the PodManifest it writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from contractlib import UUID_RE, Images, Rkt


def manifest(rkt: Rkt, uuid: str) -> dict[str, Any]:
    value = json.loads(rkt.ok("cat-manifest", uuid))
    assert isinstance(value, dict)
    return value


def test_prepare_prints_only_the_uuid(rkt: Rkt, images: Images) -> None:
    done = rkt.run("prepare", "--quiet", str(images.sleeper), insecure="image")
    assert done.returncode == 0, done.stderr
    assert UUID_RE.match(done.stdout.strip())
    assert done.stdout.count("\n") == 1
    status = rkt.status_json(done.stdout.strip())
    assert status["state"] == "prepared"
    assert status["apps"] == [
        {
            "name": "sleeper",
            "state": "created",
            "created_at": status["apps"][0]["created_at"],  # type: ignore[index]
            "image_id": status["apps"][0]["image_id"],  # type: ignore[index]
        }
    ]


def test_per_app_flags_follow_their_image_and_args_follow_dashdash(
    rkt: Rkt, images: Images
) -> None:
    uuid = rkt.prepare(
        str(images.sleeper),
        "--name=first",
        "--",
        "10",
        "---",
        str(images.shell),
        "--name=second",
        "--exec=/bin/echo",
        "--",
        "a b",
        "--not-a-flag",
    )
    apps = manifest(rkt, uuid)["apps"]
    assert [a["name"] for a in apps] == ["first", "second"]
    assert apps[0]["app"]["exec"] == ["/bin/sleep", "3600", "10"]  # appended to the image's
    assert apps[1]["app"]["exec"] == ["/bin/echo", "a b", "--not-a-flag"]  # --exec replaces


def test_default_app_name_is_the_last_path_component(rkt: Rkt, images: Images) -> None:
    uuid = rkt.prepare(str(images.shell))
    assert manifest(rkt, uuid)["apps"][0]["name"] == "shell"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port=nope:80", "{sleeper}"], 'port name "nope" could not be found in any apps'),
        (
            ["--mount=volume=data,target=/data", "{sleeper}"],
            'dangling mount point "/data": volume "data" not found',
        ),
        (
            ["--volume=data,kind=host,source=relative", "{sleeper}"],
            "source for host volume must be absolute path",
        ),
        (
            ["--volume=data,kind=host,source=/tmp,colour=red", "{sleeper}"],
            'unknown volume parameter "colour"',
        ),
        (["--set-env=1BAD=x", "{sleeper}"], "1BAD"),
        (["--exec=/bin/true", "{sleeper}"], "--exec must follow an image"),
        (["--", "--", "{sleeper}"], "an image is required before any app arguments"),
        ([], "must provide at least one image or specify the pod manifest"),
        (["{bare}"], "has no app section and --exec argument is not provided"),
        (["{sleeper}", "--memory=16m"], "too low"),
    ],
)
def test_prepare_validation_messages(
    rkt: Rkt, images: Images, args: list[str], message: str
) -> None:
    argv = [a.format(sleeper=images.sleeper, bare=images.bare) for a in args]
    done = rkt.run("prepare", "--quiet", *argv, insecure="image")
    assert done.returncode == 254
    assert message in done.stderr
    assert not UUID_RE.match(done.stdout.strip())
    assert rkt.ok("list", "--format=json").strip() == "null"


def test_prepare_error_lines_carry_the_subcommand_prefix(rkt: Rkt, images: Images) -> None:
    done = rkt.run("prepare", "--quiet", "--port=nope:80", str(images.sleeper), insecure="image")
    assert done.stderr.splitlines()[-1].startswith("prepare: ")


def test_bare_image_runs_with_exec(rkt: Rkt, images: Images) -> None:
    uuid = rkt.prepare(str(images.bare), "--exec=/bin/true")
    app = manifest(rkt, uuid)["apps"][0]["app"]
    assert app["exec"] == ["/bin/true"]
    assert app["user"] == "0"
    assert app["group"] == "0"


def test_cat_manifest_pretty_and_compact(rkt: Rkt, images: Images) -> None:
    uuid = rkt.prepare(str(images.shell))
    pretty = rkt.ok("cat-manifest", uuid)
    assert pretty.startswith('{\n\t"acVersion": ')
    assert '\n\t\t{\n\t\t\t"name": "shell",' in pretty
    compact = rkt.ok("cat-manifest", "--pretty-print=false", uuid)
    assert compact.count("\n") == 1
    assert json.loads(compact) == json.loads(pretty)
    assert list(json.loads(compact)) == [
        "acVersion",
        "acKind",
        "apps",
        "volumes",
        "isolators",
        "annotations",
        "ports",
    ]


def test_manifest_records_the_pod_settings(rkt: Rkt, images: Images, tmp_path: Path) -> None:
    version = rkt.ok("version").splitlines()[0].split(": ", 1)[1]
    uuid = rkt.prepare(
        f"--volume=data,kind=host,source={tmp_path},readOnly=true",
        "--port=http:18080",
        "--set-env=MODE=prod",
        str(images.sleeper),
        "--memory=256M",
        "--cpu=500m",
        "--user=nobody",
        "--group=nogroup",
        "--user-annotation=owner=team-a",
        "--user-label=tier=web",
        "--mount=volume=data,target=/srv",
    )
    pod = manifest(rkt, uuid)
    assert pod["acVersion"] == version
    assert pod["acKind"] == "PodManifest"
    assert {"name": "coreos.com/rkt/stage1/mutable", "value": "false"} in pod["annotations"]
    assert pod["volumes"] == [
        {"name": "data", "kind": "host", "source": str(tmp_path), "readOnly": True}
    ]
    assert pod["ports"] == [{"name": "http", "hostPort": 18080}]
    assert pod["isolators"] is None
    runtime = pod["apps"][0]
    assert runtime["image"]["name"] == "example.com/sleeper"
    assert runtime["image"]["id"].startswith("sha512-")
    assert len(runtime["image"]["id"]) == len("sha512-") + 64
    assert runtime["mounts"] == [{"volume": "data", "path": "/srv"}]
    app = runtime["app"]
    assert (app["user"], app["group"]) == ("nobody", "nogroup")
    assert {"name": "MODE", "value": "prod"} in app["environment"]
    assert {"name": "FOO", "value": "from-image"} in app["environment"]
    assert app["isolators"] == [
        {
            "name": "resource/memory",
            "value": {"default": False, "request": "256M", "limit": "256M"},
        },
        {"name": "resource/cpu", "value": {"default": False, "request": "500m", "limit": "500m"}},
    ]
    assert app["userAnnotations"] == {"owner": "team-a"}
    assert app["userLabels"] == {"tier": "web"}
    assert app["ports"] == [
        {"name": "http", "protocol": "tcp", "port": 8080, "count": 1, "socketActivated": False}
    ]
    status = rkt.status_json(uuid)
    assert status["apps"][0]["user_annotations"] == {"owner": "team-a"}  # type: ignore[index]
    assert status["apps"][0]["mounts"] == [  # type: ignore[index]
        {"name": "data", "container_path": "/srv", "host_path": str(tmp_path), "read_only": True}
    ]


def test_environment_precedence(rkt: Rkt, images: Images, tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("# comment\n\nFOO=from-file\nFILE_ONLY=1\n")
    uuid = rkt.prepare(
        f"--set-env-file={env_file}",
        "--set-env=FOO=from-set-env",
        str(images.sleeper),
        "--environment=PER_APP=yes",
    )
    env = {e["name"]: e["value"] for e in manifest(rkt, uuid)["apps"][0]["app"]["environment"]}
    assert env["FOO"] == "from-set-env"
    assert env["FILE_ONLY"] == "1"
    assert env["PER_APP"] == "yes"


def test_cat_manifest_of_an_unknown_pod_fails(rkt: Rkt) -> None:
    done = rkt.run("cat-manifest", "0f0f0f0f")
    assert done.returncode == 254


def test_a_leading_double_dash_is_eaten_by_the_flag_parser(rkt: Rkt, images: Images) -> None:
    """``prepare --quiet -- IMAGE``: pflag consumes the first ``--``, so the image is read."""
    uuid = rkt.prepare("--", str(images.sleeper))
    assert rkt.status_json(uuid)["state"] == "prepared"


def test_a_prepare_failing_in_stage0_leaves_an_aborted_pod(rkt: Rkt, images: Images) -> None:
    """rkt creates the pod before stage0 checks the ports: the failure leaves an ``aborted
    prepare`` pod that only ``rm`` or ``gc`` remove, and that the JSON listing leaves out."""
    done = rkt.run("prepare", "--quiet", "--port=nope:80", str(images.sleeper), insecure="image")
    assert done.returncode == 254
    assert done.stderr == (
        'prepare: error setting up stage0: port name "nope" could not be found in any apps\n'
    )
    (line,) = rkt.ok("list", "--full", "--no-legend").splitlines()
    fields = [f for f in line.split("\t") if f]
    uuid = fields[0]
    assert UUID_RE.match(uuid)
    assert fields[1:] == ["-", "-", "-", "aborted prepare", "0001-01-01 00:00:00 +0000 UTC"]
    (short,) = rkt.ok("list", "--no-legend").splitlines()
    assert [f for f in short.split("\t") if f] == [
        uuid[:8], "-", "-", "aborted prepare", "a long while ago"
    ]  # fmt: skip
    listed = rkt.run("list", "--format=json")
    assert listed.returncode == 0
    assert listed.stdout.strip() == "null"
    assert "list: invalid creation time" in listed.stderr.splitlines()
    assert rkt.ok("status", uuid).splitlines() == [
        "state=aborted prepare",
        "created=0001-01-01 00:00:00 +0000 UTC",
    ]
    removed = rkt.run("rm", uuid)
    assert removed.returncode == 0
    assert removed.stdout == f'"{uuid}"\n'
    assert f'rm: moving failed prepare "{uuid}" to garbage' in removed.stderr
    assert rkt.ok("list", "--no-legend").strip() == ""


def test_gc_removes_aborted_prepares(rkt: Rkt, images: Images) -> None:
    done = rkt.run("prepare", "--quiet", "--port=nope:80", str(images.sleeper), insecure="image")
    assert done.returncode == 254
    kept = rkt.prepare(str(images.sleeper))
    assert len(rkt.ok("list", "--no-legend").splitlines()) == 2
    rkt.ok("gc")
    (line,) = rkt.ok("list", "--no-legend", "--full").splitlines()
    assert line.startswith(kept + "\t")
