"""rkt_operator.rkt.parse on captured rkt output (tests/fixtures/rkt, formats per rkt-cli.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from packaging.version import Version

from rkt_operator import errors
from rkt_operator.rkt import parse, pods

FIXTURES = Path(__file__).parent.parent / "fixtures" / "rkt"
U1 = "5d3c2b1a-9e8f-4a7b-8c6d-0e1f2a3b4c5d"
U2 = "a0b1c2d3-e4f5-4617-8899-aabbccddeeff"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


# ----------------------------------------------------------------------------- version


@pytest.mark.parametrize(
    ("name", "rkt", "appc"),
    [
        pytest.param("version.txt", "1.30.0", "0.8.11", id="release"),
        pytest.param("version-dev.txt", "1.30.0", "0.8.11", id="dev-build-suffix-cut"),
        pytest.param("version-old.txt", "1.25.0", "0.8.10", id="old"),
        pytest.param("version-legacy.txt", "0.8.1", "1.2.0", id="legacy-0.x"),
    ],
)
def test_parse_version_fixtures(name: str, rkt: str, appc: str) -> None:
    version = parse.parse_version(fixture(name))
    assert version.rkt == Version(rkt)
    assert version.appc == Version(appc)


@pytest.mark.parametrize(
    ("text", "rkt", "appc"),
    [
        # Nomad S1 (TestRktVersionRegex): the lowercase 0.x form.
        pytest.param("rkt version 0.8.1\nappc version 1.2.0\n", "0.8.1", "1.2.0", id="S1"),
        pytest.param(
            "rkt Version: 1.29.0\nappc Version: 0.8.11\n", "1.29.0", "0.8.11", id="S1-real"
        ),
        pytest.param("rkt Version 1.27.0\nappc version: 0.8.9\n", "1.27.0", "0.8.9", id="mixed"),
        pytest.param(
            "  rkt Version: 1.28.1  \r\nappc Version: 0.8.11\r\n", "1.28.1", "0.8.11", id="crlf"
        ),
    ],
)
def test_parse_version_forms(text: str, rkt: str, appc: str) -> None:
    version = parse.parse_version(text)
    assert (str(version.rkt), str(version.appc)) == (rkt, appc)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("rkt Version: 1.30.0\n", id="no-appc"),
        pytest.param("appc Version: 0.8.11\n", id="no-rkt"),
        pytest.param("rkt Version: banana\nappc Version: 0.8.11\n", id="not-a-version"),
        pytest.param("Usage:\n  rkt [command]\n", id="usage-text"),
    ],
)
def test_parse_version_rejects(text: str) -> None:
    with pytest.raises(errors.RktOutputError, match="Unable to parse Rkt version string"):
        parse.parse_version(text)


# ----------------------------------------------------------------------------- uuid


def test_parse_uuid_plain_and_after_trust_lines() -> None:
    assert parse.parse_uuid(fixture("prepare.txt")) == U1
    assert parse.parse_uuid(fixture("prepare-trust-keys.txt")) == U1


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("5d3c2b1a\n", id="short-prefix"),
        pytest.param(U1.upper() + "\n", id="uppercase"),
        pytest.param(U1 + "\nsomething else\n", id="uuid-not-last"),
        pytest.param(U1 + "x\n", id="trailing-garbage"),
        pytest.param("5d3c2b1a9e8f4a7b8c6d0e1f2a3b4c5d\n", id="no-dashes"),
    ],
)
def test_parse_uuid_rejects(text: str) -> None:
    with pytest.raises(errors.RktOutputError):
        parse.parse_uuid(text)


# ----------------------------------------------------------------------------- status json


def test_status_running_compact() -> None:
    status = parse.parse_status_json(fixture("status-running.json"))
    assert status.uuid == U1
    assert status.state == "running"
    assert not status.finished
    # Pod times are seconds, app times nanoseconds: both land on the same instant.
    assert status.created_at == datetime(2018, 4, 11, 12, 23, 39, tzinfo=UTC)
    assert status.started_at == datetime(2018, 4, 11, 12, 23, 41, tzinfo=UTC)
    (app,) = status.apps
    assert app.created_at == datetime(2018, 4, 11, 12, 23, 39, 512000, tzinfo=UTC)
    assert app.started_at == datetime(2018, 4, 11, 12, 23, 41, 70000, tzinfo=UTC)
    assert app.finished_at is None
    assert app.exit_code is None
    assert app.image_id.startswith("sha512-")
    assert status.networks[0] == pods.NetworkInfo(
        name="default", if_name="eth0", ip="172.16.28.5", mask="255.255.255.0", args=""
    )
    assert status.annotations()["rktoperator.io/uid"] == "0f6c2a5e-1b3d-4e7f-9a8b-7c6d5e4f3a21"
    assert pods.pod_ip(status) == "172.16.28.5"


def test_status_exited_pretty_tab_indented() -> None:
    status = parse.parse_status_json(fixture("status-exited-pretty.json"))
    assert status.state == "exited"
    assert status.finished
    assert status.apps[0].exit_code == 0


def test_status_exited_garbage_space_state_and_finished_at() -> None:
    status = parse.parse_status_json(fixture("status-exited-garbage.json"))
    assert status.state == "exited garbage"
    assert status.finished
    assert status.networks == ()
    app = status.apps[0]
    assert app.exit_code == 3
    assert app.finished_at == datetime(2018, 4, 11, 12, 25, 0, 250000, tzinfo=UTC)


def test_status_prepared_pod_level_annotations_and_labels() -> None:
    status = parse.parse_status_json(fixture("status-prepared.json"))
    assert status.state == "prepared"
    assert status.started_at is None
    assert status.apps[0].state == "created"
    assert status.user_annotations == {"team": "storage"}
    assert status.user_labels == {"tier": "db"}
    assert status.annotations() == {"team": "storage"}


def test_status_host_network_has_no_ip() -> None:
    status = parse.parse_status_json(fixture("status-host-net.json"))
    assert status.networks == ()
    assert pods.pod_ip(status) is None


def test_pod_ip_takes_the_selected_network_not_the_first() -> None:
    # Nomad returned networks[0].ip even when that entry was skipped as link-local.
    status = parse.parse_status_json(fixture("status-link-local-first.json"))
    assert status.networks[0].ip == "169.254.7.9"
    assert pods.pod_ip(status) == "172.16.28.7"


@pytest.mark.parametrize(
    ("ip", "good"),
    [
        ("172.16.28.5", True),
        ("10.0.0.1", True),
        ("8.8.8.8", True),
        ("fd00::1", True),
        ("127.0.0.1", False),
        ("169.254.1.1", False),
        ("fe80::1", False),
        ("224.0.0.1", False),
        ("0.0.0.0", False),  # noqa: S104 - an address under test, not a bind
        ("255.255.255.255", False),
        ("", False),
        ("not-an-ip", False),
    ],
)
def test_is_global_unicast(ip: str, good: bool) -> None:
    assert pods.is_global_unicast(ip) is good


def _mutated(**changes: object) -> str:
    data = json.loads(fixture("status-running.json"))
    data.update(changes)
    return json.dumps(data)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param('{"name": "x"', id="truncated"),
        pytest.param("[]", id="array-not-object"),
        pytest.param(_mutated(name="not-a-uuid"), id="bad-uuid"),
        pytest.param(_mutated(state="exited-garbage"), id="dir-name-not-state"),
        pytest.param(_mutated(state="sleeping"), id="unknown-state"),
        pytest.param(_mutated(created_at="1523449419"), id="time-as-string"),
        pytest.param(_mutated(created_at=True), id="time-as-bool"),
        pytest.param(_mutated(created_at=10**30), id="time-out-of-range"),
        pytest.param(_mutated(networks={"ip": "1.2.3.4"}), id="networks-not-list"),
        pytest.param(_mutated(apps=[{"name": "web"}]), id="app-without-state"),
        pytest.param(_mutated(user_annotations={"a": 1}), id="annotation-not-string"),
        pytest.param("[" * 100000 + "]" * 100000, id="deeply-nested"),
    ],
)
def test_status_json_rejects_garbage(text: str) -> None:
    with pytest.raises(errors.RktOutputError):
        parse.parse_status_json(text)


def test_output_size_is_limited() -> None:
    huge = " " * (parse.MAX_OUTPUT_CHARS + 1) + "null"
    with pytest.raises(errors.RktOutputError, match="too large"):
        parse.parse_list_json(huge)


# ----------------------------------------------------------------------------- list json


def test_list_null_is_empty() -> None:
    assert parse.parse_list_json(fixture("list-null.json")) == []


def test_list_two_pods() -> None:
    listed = parse.parse_list_json(fixture("list.json"))
    assert [(p.uuid, p.state) for p in listed] == [(U1, "running"), (U2, "prepared")]


@pytest.mark.parametrize("text", ['{"name": "x"}', '"null"', "42", "[1]"])
def test_list_rejects_non_arrays(text: str) -> None:
    with pytest.raises(errors.RktOutputError):
        parse.parse_list_json(text)


# ----------------------------------------------------------------------------- status text


def test_status_text_running() -> None:
    status = parse.parse_status_text(fixture("status-running.txt"))
    assert status.state == "running"
    assert status.pid == 31337
    assert status.exited is False
    assert status.networks == (("default", "172.16.28.5"),)
    assert status.created_at == datetime(2018, 4, 11, 12, 23, 39, 512000, tzinfo=UTC)
    assert status.started_at == datetime(2018, 4, 11, 12, 23, 41, 70000, tzinfo=UTC)
    assert status.app_exit_codes == {}


def test_status_text_exited_apps_any_order() -> None:
    status = parse.parse_status_text(fixture("status-exited.txt"))
    assert status.exited is True
    assert status.app_exit_codes == {"web": 137, "sidecar": 0}
    assert status.networks == (("default", "172.16.28.5"), ("lan", "10.1.0.5"))
    assert status.started_at == datetime(2018, 4, 11, 12, 23, 41, tzinfo=UTC)


def test_status_text_prepared_and_aborted() -> None:
    prepared = parse.parse_status_text(fixture("status-prepared.txt"))
    assert (prepared.state, prepared.pid, prepared.exited) == ("prepared", None, None)
    aborted = parse.parse_status_text(fixture("status-aborted.txt"))
    assert aborted.state == "aborted prepare"
    assert aborted.created_at is None  # Go's zero time


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param(fixture("status-usage-stdout.txt"), id="usage-text"),
        pytest.param("state=running\npid=12ab\n", id="bad-pid"),
        pytest.param("state=running\ncreated=yesterday\n", id="bad-time"),
        pytest.param("state=exited\napp-web=zero\n", id="bad-exit-code"),
    ],
)
def test_status_text_rejects(text: str) -> None:
    with pytest.raises(errors.RktOutputError):
        parse.parse_status_text(text)


# ----------------------------------------------------------------------------- manifest


def test_manifest_port_map() -> None:
    manifest = parse.parse_manifest(fixture("manifest.json"))
    assert manifest["acVersion"] == "1.30.0"
    ports = parse.port_map_from_manifest(manifest, ["http", "metrics", "absent"])
    assert ports == {"http": 80, "metrics": 9113}
    assert parse.port_map_from_manifest(manifest, []) == {}


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("manifest-no-apps.json", "manifest has no apps"),
        ("manifest-multi-app.json", "manifest has multiple apps!"),
        ("manifest-no-app-object.json", "specified app has no App object"),
    ],
)
def test_manifest_port_map_nomad_errors(name: str, message: str) -> None:
    manifest = parse.parse_manifest(fixture(name))
    with pytest.raises(errors.RktOutputError) as info:
        parse.port_map_from_manifest(manifest, ["http"])
    assert str(info.value) == message


@pytest.mark.parametrize("text", ["null", "{}", '{"acKind": "ImageManifest"}', "[]", "{"])
def test_manifest_rejects(text: str) -> None:
    with pytest.raises(errors.RktOutputError):
        parse.parse_manifest(text)


# ----------------------------------------------------------------------------- classify

RKT = ["/usr/bin/rkt", "--dir=/var/lib/rkt", "--local-config=/etc/rkt"]


@pytest.mark.parametrize(
    ("args", "stderr_fixture", "expected", "retryable"),
    [
        (["status", "deadbeef"], "stderr-status-not-found.txt", errors.PodNotFound, False),
        (["status", "5d"], "stderr-status-ambiguous.txt", errors.AmbiguousUUID, False),
        (["run-prepared", U1], "stderr-run-prepared-not-prepared.txt", errors.PodWrongState, True),
        (["stop", U2], "stderr-stop-not-running.txt", errors.PodWrongState, True),
        (["stop", U2], "stderr-stop-before-pid.txt", errors.PodStarting, True),
        (["rm", U1], "stderr-rm-running.txt", errors.PodWrongState, True),
        (["rm", U2], "stderr-rm-preparing.txt", errors.PodWrongState, True),
        (["enter", U2, "/bin/true"], "stderr-enter-not-running.txt", errors.PodWrongState, True),
        (["prepare", "x.aci"], "stderr-prepare-unprivileged.txt", errors.RktUnavailable, True),
        # retried like a kubelet's failed container creation (the node's store may change)
        (["prepare", "x.aci"], "stderr-prepare-port-name.txt", errors.PrepareError, True),
        (["prepare"], "stderr-prepare-no-image.txt", errors.PrepareError, True),
        (["trust", "--prefix=example.com/invalid"], "stderr-trust.txt", errors.TrustError, True),
        (["status", "--format=json", U2], "stderr-status-json-aborted.txt", errors.RktError, True),
        (["gc"], "stderr-gc-walk.txt", errors.RktError, True),
    ],
)
def test_classify(
    args: list[str],
    stderr_fixture: str,
    expected: type[errors.RktError],
    retryable: bool,
) -> None:
    argv = [*RKT, "--insecure-options=image", *args]
    stderr = fixture(stderr_fixture)
    error = parse.classify(argv, 254, "", stderr)
    assert type(error) is expected
    assert error.retryable is retryable
    assert error.argv == tuple(argv)
    assert error.returncode == 254
    assert error.stderr == stderr
    assert args[0] in str(error)


def test_trust_failure_message_carries_command_output_and_error() -> None:
    argv = [*RKT, "trust", "--skip-fingerprint-review=true", "--prefix=example.com/invalid",
            "--debug=false"]  # fmt: skip
    error = parse.classify(argv, 254, "", fixture("stderr-trust.txt"))
    assert type(error) is errors.TrustError
    assert error.message == (
        "Error running rkt trust: exit status 254; command: rkt trust "
        "--skip-fingerprint-review=true --prefix=example.com/invalid --debug=false; "
        'output: (none); error: pubkey: prefix: "example.com/invalid" key: '
        '"https://example.com/invalid/pubkeys.gpg" trust: error adding keys: error fetching '
        "key: bad HTTP status code: 404"
    )


def test_trust_failure_message_keeps_the_end_of_long_output() -> None:
    error = parse.classify([*RKT, "trust", "--prefix=p"], 1, "o" * 5000, "e" * 5000 + " last")
    assert error.message.endswith(" last")
    assert len(error.message) < 1024  # fits a condition message


def test_classify_message_skips_summary_trailer() -> None:
    error = parse.classify([*RKT, "stop", U2], 254, "", fixture("stderr-stop-not-running.txt"))
    assert "is not running" in str(error)


def test_classify_not_found_only_for_uuid_commands() -> None:
    # An image lookup during prepare that says "no matches found" is not a missing pod.
    stderr = 'prepare: error finding images: no matches found for "example.com/x"\n'
    assert type(parse.classify([*RKT, "prepare", "example.com/x"], 254, "", stderr)) is (
        errors.PrepareError
    )


def test_classify_without_stderr_and_truncates_outputs() -> None:
    error = parse.classify([*RKT, "cat-manifest", U1], 254, "x" * 10000, "")
    assert type(error) is errors.RktError
    assert "exit status 254" in str(error)
    assert len(error.stdout) == 4096


@pytest.mark.parametrize(
    ("argv", "sub"),
    [
        (["rkt", "--dir=/x", "--insecure-options=image", "prepare", "a.aci"], "prepare"),
        (["rkt", "status", "--format=json", "u"], "status"),
        (["rkt", "--debug"], ""),
        ([], ""),
    ],
)
def test_subcommand(argv: list[str], sub: str) -> None:
    assert parse.subcommand(argv) == sub


def test_aborted_prepares_from_the_text_listing() -> None:
    listing = (
        "fae119a7-f454-4022-ba82-cc9a20eb4ff3\t-\t-\t-\taborted prepare\t"
        "0001-01-01 00:00:00 +0000 UTC\t\t\n"
        "4fe979cf-a1b5-4877-ad21-8986192a7218\tsleeper\texample.com/sleeper:1.0.0\t"
        "sha512-e3ec49ec5242\tprepared\t2026-12-02 18:55:57.263 +0000 UTC\t\t\n"
        "not-a-uuid\t-\t-\t-\taborted prepare\n"
        "0f6c2a5e-1b3d-4e7f-9a8b-7c6d5e4f3a21\taborted prepare-ish\t-\n"
    )
    assert parse.parse_aborted_prepares(listing) == ["fae119a7-f454-4022-ba82-cc9a20eb4ff3"]
    assert parse.parse_aborted_prepares("") == []
