"""Pure renderings and validations: Go JSON/time/duration, quantities, tables, appc rules,
OpenPGP key parsing, and the status objects built from a pod directory."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from rkt_sim import appc, gofmt, keys, quantity, tables
from rkt_sim.pods import Pod
from rkt_sim.status import ConversionError, pod_json, status_text


def test_go_json_escapes_html_characters() -> None:
    assert (
        gofmt.dumps({"a": "<b>&</b>", "é": 1})
        == '{"a":"\\u003cb\\u003e\\u0026\\u003c/b\\u003e","é":1}'
    )


def test_go_json_indent_uses_tabs() -> None:
    assert gofmt.dumps_indent({"a": [1], "b": None}) == '{\n\t"a": [\n\t\t1\n\t],\n\t"b": null\n}'


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("5s", 5 * 10**9),
        ("1h30m", 5400 * 10**9),
        ("1.5s", 1_500_000_000),
        ("-1s", -(10**9)),
        ("300ms", 3 * 10**8),
    ],
)
def test_parse_duration(text: str, ns: int) -> None:
    assert gofmt.parse_duration(text) == ns


@pytest.mark.parametrize("text", ["", "5", "s", "5x", "1.s.s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="time: "):
        gofmt.parse_duration(text)


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (30 * 60 * 10**9, "30m0s"),
        (24 * 3600 * 10**9, "24h0m0s"),
        (1_500_000_000, "1.5s"),
        (10**8, "100ms"),
    ],
)
def test_format_duration(ns: int, text: str) -> None:
    assert gofmt.format_duration(ns) == text


def test_format_time_trims_the_fraction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        assert gofmt.format_time(1_523_449_419_512_000_000) == "2018-04-11 12:23:39.512 +0000 UTC"
        assert gofmt.format_time(1_523_449_419_500_000_000) == "2018-04-11 12:23:39.5 +0000 UTC"
        assert gofmt.format_time(1_523_449_419_000_000_000) == "2018-04-11 12:23:39 +0000 UTC"
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("256M", "256M"),
        ("1000M", "1G"),
        ("0.5", "500m"),
        ("2.5", "2500m"),
        ("1024Mi", "1Gi"),
        ("1536Mi", "1536Mi"),
        ("128974848", "128974848"),
    ],
)
def test_quantity_canonical(text: str, canonical: str) -> None:
    assert quantity.canonical(text) == canonical


def test_quantity_rejects_garbage() -> None:
    with pytest.raises(quantity.QuantityError):
        quantity.canonical("lots")


def test_tabwriter_pads_columns_with_tabs() -> None:
    lines = tables.tabwrite([["UUID", "APP", "STATE"], ["4b7a6ff1", "web-server-long", "running"]])
    assert lines == ["UUID\t\tAPP\t\tSTATE", "4b7a6ff1\tweb-server-long\trunning"]


@pytest.mark.parametrize(
    ("age_s", "text"),
    [
        (0.2, "now"),
        (1.5, "1 second ago"),
        (42, "42 seconds ago"),
        (90, "1 minute ago"),
        (600, "10 minutes ago"),
        (3 * 86400, "3 days ago"),
    ],
)
def test_humanize_ago(age_s: float, text: str) -> None:
    now = 2_000_000_000 * 10**9
    assert tables.humanize_ago(now - int(age_s * 1e9), now) == text


def test_humanize_iec() -> None:
    assert tables.humanize_iec(999) == "999 B"
    assert tables.humanize_iec(1536) == "1.5 KiB"
    assert tables.humanize_iec(12 * 1024 * 1024) == "12 MiB"


@pytest.mark.parametrize("name", ["example.com/app", "a", "a-b.c~d/e_f".replace("_", "-")])
def test_ac_identifier_accepts(name: str) -> None:
    assert appc.check_identifier(name) == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "cannot be empty"),
        ("Example.com", "must contain only lower case"),
        ("-app", "must start and end"),
    ],
)
def test_ac_identifier_rejects(name: str, message: str) -> None:
    with pytest.raises(appc.AppcError, match=message):
        appc.check_identifier(name)


@pytest.mark.parametrize("name", ["app.name", "app/x", "app-", "APP"])
def test_ac_name_rejects(name: str) -> None:
    with pytest.raises(appc.AppcError):
        appc.check_name(name)


def test_default_app_name_is_sanitized() -> None:
    assert appc.default_app_name("registry-1.docker.io/library/Nginx_Server") == "nginx-server"


def manifest(**app: object) -> dict[str, object]:
    return {
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": "example.com/x",
        "app": {"exec": ["/bin/x"], "user": "0", "group": "0", **app},
    }


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"acKind": "PodManifest", "acVersion": "0.8.11", "name": "x"}, "ACKind"),
        ({"acKind": "ImageManifest", "acVersion": "", "name": "x"}, "acVersion"),
        ({"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "X"}, "ACIdentifier"),
        (manifest(user=""), "user is required"),
        (manifest(exec=["relative"]), "absolute"),
        (
            manifest(environment=[{"name": "1X", "value": ""}]),
            'does not have valid identifier "1X"',
        ),
        (manifest(ports=[{"name": "http", "protocol": "tcp", "port": 0}]), "out of range"),
        (manifest(mountPoints=[{"name": "Bad", "path": "/x"}]), "ACName"),
        ({**manifest(), "labels": [{"name": "os", "value": "plan9"}]}, 'bad os "plan9"'),
        (
            {
                **manifest(),
                "labels": [{"name": "os", "value": "linux"}, {"name": "arch", "value": "z80"}],
            },
            "bad arch",
        ),
    ],
)
def test_image_manifest_validation(doc: dict[str, object], message: str) -> None:
    with pytest.raises(appc.AppcError, match=message):
        appc.check_image_manifest(doc)


def test_image_manifest_port_defaults() -> None:
    doc = appc.check_image_manifest(
        manifest(ports=[{"name": "http", "protocol": "tcp", "port": 80}])
    )
    assert doc["app"]["ports"] == [
        {"name": "http", "protocol": "tcp", "port": 80, "count": 1, "socketActivated": False}
    ]


def _packet(tag: int, body: bytes) -> bytes:
    return bytes([0xC0 | tag, len(body)]) + body


def test_armored_key_fingerprint_and_identity() -> None:
    key_body = bytes([4]) + (1_600_000_000).to_bytes(4, "big") + bytes([1]) + b"\x01" * 40
    uid = b"Builder <b@example.com>"
    armored = (
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\nComment: test\n\n"
        + base64.b64encode(_packet(6, key_body) + _packet(13, uid)).decode()
        + "\n=AAAA\n-----END PGP PUBLIC KEY BLOCK-----\n"
    )
    (key,) = keys.read_armored_keyring(armored)
    expected = hashlib.sha1(
        b"\x99" + len(key_body).to_bytes(2, "big") + key_body, usedforsecurity=False
    ).digest()
    assert key.fingerprint == expected
    assert key.identities == ["Builder <b@example.com>"]
    text = keys.format_fingerprint(expected)
    assert len(text.split(" ")) == 11  # ten groups and the double space
    assert text.upper() == text


def test_not_armored_is_refused() -> None:
    with pytest.raises(keys.TrustError, match="no armored data found"):
        keys.read_armored_keyring("hello")


def _pod(tmp_path: Path, kind: str, *, manifest_doc: Mapping[str, Any] | None = None) -> Pod:
    path = tmp_path / "pods" / kind / "4b7a6ff1-3c0e-4a4f-9a43-2d1f2bd5e0c9"
    path.mkdir(parents=True)
    if manifest_doc is not None:
        (path / "pod").write_text(json.dumps(manifest_doc))
        (path / "pod-created").touch()
        os.utime(path / "pod-created", ns=(1_523_449_419_512_000_000, 1_523_449_419_512_000_000))
    return Pod(path.name, kind, path)


POD_MANIFEST = {
    "acVersion": "1.30.0",
    "acKind": "PodManifest",
    "apps": [
        {
            "name": "web",
            "image": {"name": "example.com/web", "id": "sha512-" + "0" * 64},
            "mounts": [{"volume": "data", "path": "/d"}],
        }
    ],
    "volumes": [{"name": "data", "kind": "host", "source": "/srv", "readOnly": False}],
}


def test_exited_pod_json_mixes_seconds_and_nanoseconds(tmp_path: Path) -> None:
    pod = _pod(tmp_path, "run", manifest_doc=POD_MANIFEST)
    (pod.path / "ppid").write_text("4242\n")
    os.utime(pod.path / "ppid", ns=(1_523_449_421_070_000_000, 1_523_449_421_070_000_000))
    (pod.path / "stage1/rootfs/rkt/status").mkdir(parents=True)
    (pod.path / "stage1/rootfs/rkt/status/web").write_text("0")
    (pod.path / "net-info.json").write_text(
        json.dumps(
            [
                {
                    "netName": "default",
                    "netConf": "net/99-default.conf",
                    "pluginPath": "p",
                    "ifName": "eth0",
                    "ip": "172.16.28.5",
                    "args": "",
                    "mask": "255.255.255.0",
                }
            ]
        )
    )
    value = pod_json(pod, "exited")
    assert list(value) == [
        "name",
        "state",
        "networks",
        "app_names",
        "apps",
        "created_at",
        "started_at",
    ]
    assert value["created_at"] == 1_523_449_419
    assert value["started_at"] == 1_523_449_421
    assert value["apps"] == [
        {
            "name": "web",
            "state": "exited",
            "created_at": 1_523_449_419_512_000_000,
            "started_at": 1_523_449_421_070_000_000,
            "exit_code": 0,
            "image_id": "sha512-" + "0" * 64,
            "mounts": [
                {"name": "data", "container_path": "/d", "host_path": "/srv", "read_only": False}
            ],
        }
    ]
    lines = status_text(pod, "exited")
    assert lines[0] == "state=exited"
    assert lines[3:] == ["networks=default:ip4=172.16.28.5", "pid=4242", "exited=true", "app-web=0"]


def test_aborted_prepare_cannot_be_converted(tmp_path: Path) -> None:
    pod = _pod(tmp_path, "prepare")
    with pytest.raises(ConversionError, match="invalid creation time"):
        pod_json(pod, "aborted prepare")
    assert status_text(pod, "aborted prepare") == [
        "state=aborted prepare",
        "created=0001-01-01 00:00:00 +0000 UTC",
    ]
