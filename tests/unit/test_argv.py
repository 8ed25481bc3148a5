"""The pure translation of an RktTask into rkt argument lists, against nomad-rkt-driver.md:
one row per option and rule of sections 1-4, and one per upstream test of sections 5.1-5.2
that concerns arguments or validation (S3-S11, S15-S17), with the exact expected lists.

Not applicable by construction (kept here so the omission is deliberate): E9 (a volume entry
not of the form host:container[:readOnly]) - volumes are structured fields checked by the
schema; E11/E12 (port_map and network ports disagreeing) - each spec.ports entry names its
image port and host port together; the `_` -> `-` volume-name fix (#2358) - volume names
come from the object's UID, which never contains `_`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rkt_operator.errors import SpecError
from rkt_operator.model.spec import RktTaskSpec
from rkt_operator.rkt.argv import ResolvedVar, build_launch_plan, expand_args, kill_timeout
from rkt_operator.rkt.types import LaunchPlan, TaskDirs, TaskIdentity
from rkt_operator.settings import Settings

UID = "0f0e0d0c-0b0a-4000-8000-00000000000a"
IDENT = TaskIdentity(namespace="default", name="etcd", uid=UID, generation=7)
DIRS = TaskDirs.for_task(Path("/var/lib/rkt-operator/tasks"), IDENT)
ROOT = f"/var/lib/rkt-operator/tasks/default/etcd-{UID}"
IMAGE = "example.com/app:1.0"

TASK_MOUNTS = [
    f"--volume={UID}-alloc,kind=host,source={ROOT}/alloc",
    f"--mount=volume={UID}-alloc,target=/alloc",
    f"--volume={UID}-local,kind=host,source={ROOT}/local",
    f"--mount=volume={UID}-local,target=/local",
    f"--volume={UID}-secrets,kind=host,source={ROOT}/secrets",
    f"--mount=volume={UID}-secrets,target=/secrets",
]
STAMP = [
    "--user-annotation=rktoperator.io/namespace=default",
    "--user-annotation=rktoperator.io/name=etcd",
    f"--user-annotation=rktoperator.io/uid={UID}",
    "--user-annotation=rktoperator.io/generation=7",
    # the counts the pod starts with (a first start: none yet)
    "--user-annotation=rktoperator.io/restarts=0",
    "--user-annotation=rktoperator.io/backoff-step=0",
]
RESOURCES = ["--memory=300M", "--cpu=100m"]  # Nomad's defaults: 300 MB, 100 MHz
INSECURE_ALL = ["--insecure-options=all", "--debug=false"]
DEBUG_OFF = ["--debug=false"]


def plan_for(
    spec: dict[str, Any],
    env: list[ResolvedVar] | None = None,
    **settings: Any,
) -> LaunchPlan:
    return build_launch_plan(
        RktTaskSpec.model_validate({"nodeName": "node-a", **spec}),
        settings=Settings(**settings),
        identity=IDENT,
        dirs=DIRS,
        env=env or [],
    )


# -- the argument lists: (id, spec, env, trust, prepare, run-prepared) ------------------------

ETCD = {"trustPrefix": "coreos.com/etcd", "image": "coreos.com/etcd:v2.0.4", "command": "/etcd"}
SECRET_FILE = f"--set-env-file={ROOT}/secret.env"
ROWS: list[tuple[str, dict[str, Any], list[ResolvedVar], Any, list[str], list[str]]] = [
    (
        "minimal: no trust prefix -> --insecure-options=all, --debug always, default limits",
        {"image": IMAGE},
        [],
        None,
        [*INSECURE_ALL, "prepare", *TASK_MOUNTS, IMAGE, *RESOURCES, *STAMP],
        [*INSECURE_ALL, "run-prepared"],
    ),
    (
        "trustPrefix: rkt trust first, no --insecure-options at all",
        {"image": IMAGE, "trustPrefix": "example.com/app"},
        [],
        ("trust", "--skip-fingerprint-review=true", "--prefix=example.com/app", "--debug=false"),
        [*DEBUG_OFF, "prepare", *TASK_MOUNTS, IMAGE, *RESOURCES, *STAMP],
        [*DEBUG_OFF, "run-prepared"],
    ),
    (
        "insecureOptions with trustPrefix: the explicit list still wins",
        {"image": IMAGE, "trustPrefix": "example.com/app", "insecureOptions": ["image"]},
        [],
        ("trust", "--skip-fingerprint-review=true", "--prefix=example.com/app", "--debug=false"),
        [
            "--insecure-options=image",
            *DEBUG_OFF,
            "prepare",
            *TASK_MOUNTS,
            IMAGE,
            *RESOURCES,
            *STAMP,
        ],
        ["--insecure-options=image", *DEBUG_OFF, "run-prepared"],
    ),
    (
        "insecureOptions without trustPrefix: joined with ',' in list order, replaces all",
        {"image": IMAGE, "insecureOptions": ["image", "tls", "ondisk"]},
        [],
        None,
        [
            "--insecure-options=image,tls,ondisk",
            *DEBUG_OFF,
            "prepare",
            *TASK_MOUNTS,
            IMAGE,
            *RESOURCES,
            *STAMP,
        ],
        ["--insecure-options=image,tls,ondisk", *DEBUG_OFF, "run-prepared"],
    ),
    (
        "insecureOptions [none]: enforce every check",
        {"image": IMAGE, "insecureOptions": ["none"]},
        [],
        None,
        ["--insecure-options=none", *DEBUG_OFF, "prepare", *TASK_MOUNTS, IMAGE, *RESOURCES, *STAMP],
        ["--insecure-options=none", *DEBUG_OFF, "run-prepared"],
    ),
    (
        "debug: --debug=true on trust, prepare and run-prepared",
        {"image": IMAGE, "trustPrefix": "example.com/app", "debug": True},
        [],
        ("trust", "--skip-fingerprint-review=true", "--prefix=example.com/app", "--debug=true"),
        ["--debug=true", "prepare", *TASK_MOUNTS, IMAGE, *RESOURCES, *STAMP],
        ["--debug=true", "run-prepared"],
    ),
    (
        "noOverlay: --no-overlay=true right after prepare",
        {"image": IMAGE, "noOverlay": True},
        [],
        None,
        [*INSECURE_ALL, "prepare", "--no-overlay=true", *TASK_MOUNTS, IMAGE, *RESOURCES, *STAMP],
        [*INSECURE_ALL, "run-prepared"],
    ),
    (
        "command: --exec right after the image, not split on spaces",
        {"image": IMAGE, "command": "/usr/bin/my server"},
        [],
        None,
        [
            *INSECURE_ALL,
            "prepare",
            *TASK_MOUNTS,
            IMAGE,
            "--exec=/usr/bin/my server",
            *RESOURCES,
            *STAMP,
        ],
        [*INSECURE_ALL, "run-prepared"],
    ),
    (
        "args: '--' and each argument as its own item, at the very end",
        {"image": IMAGE, "args": ["-c", "echo a b", ""]},
        [],
        None,
        [
            *INSECURE_ALL,
            "prepare",
            *TASK_MOUNTS,
            IMAGE,
            *RESOURCES,
            *STAMP,
            "--",
            "-c",
            "echo a b",
            "",
        ],
        [*INSECURE_ALL, "run-prepared"],
    ),
    (
        "args expanded against the environment ($(VAR), $$, unknown kept)",
        {"image": IMAGE, "args": ["--port=$(PORT)", "$$(PORT)", "$(NOPE)", "$(TOKEN)"]},
        [ResolvedVar("PORT", "2379"), ResolvedVar("TOKEN", "t0k", secret=True)],
        None,
        [
            *INSECURE_ALL,
            "prepare",
            *TASK_MOUNTS,
            "--set-env=PORT=2379",
            SECRET_FILE,
            IMAGE,
            *RESOURCES,
            *STAMP,
            "--",
            "--port=2379",
            "$(PORT)",
            "$(NOPE)",
            "t0k",
        ],
        [*INSECURE_ALL, "run-prepared"],
    ),
    (
        "env: one --set-env per variable sorted by name (Nomad: random map order); values "
        "unquoted; secrets only through --set-env-file; a later duplicate wins",
        {"image": IMAGE},
        [
            ResolvedVar("ZED", "last"),
            ResolvedVar("A_B", "x=y with spaces"),
            ResolvedVar("PASSWORD", "hunter2", secret=True),
            ResolvedVar("MODE", "dev"),
            ResolvedVar("MODE", "prod"),
            ResolvedVar("app.level", ""),
        ],
        None,
        [
            *INSECURE_ALL,
            "prepare",
            *TASK_MOUNTS,
            "--set-env=A_B=x=y with spaces",
            "--set-env=MODE=prod",
            "--set-env=ZED=last",
            "--set-env=app.level=",
            SECRET_FILE,
            IMAGE,
            *RESOURCES,
            *STAMP,
        ],
        [*INSECURE_ALL, "run-prepared"],
    ),
    (
        "volumes: after the task mounts, named <uid>-<index>, readOnly always given",
        {
            "image": IMAGE,
            "volumes": [
                {"name": "data", "hostPath": "/srv/data", "mountPath": "/data"},
                {"name": "conf", "hostPath": "/etc/app", "mountPath": "/conf", "readOnly": True},
            ],
        },
        [],
        None,
        [
            *INSECURE_ALL,
            "prepare",
            *TASK_MOUNTS,
            f"--volume={UID}-0,kind=host,source=/srv/data,readOnly=false",
            f"--mount=volume={UID}-0,target=/data",
            f"--volume={UID}-1,kind=host,source=/etc/app,readOnly=true",
            f"--mount=volume={UID}-1,target=/conf",
            IMAGE,
            *RESOURCES,
            *STAMP,
        ],
        [*INSECURE_ALL, "run-prepared"],
    ),
    (
        "resources: quantities to --memory=<MB>M (10^6, rounded up) and --cpu=<millicores>m",
        {"image": IMAGE, "resources": {"limits": {"memory": "128Mi", "cpu": "1.5"}}},
        [],
        None,
        [*INSECURE_ALL, "prepare", *TASK_MOUNTS, IMAGE, "--memory=135M", "--cpu=1500m", *STAMP],
        [*INSECURE_ALL, "run-prepared"],
    ),
    (
        "ports: --port per host port in list order, IP form, unmapped ports only reported",
        {
            "image": IMAGE,
            "ports": [
                {"name": "http", "hostPort": 8080},
                {"name": "metrics"},
                {"name": "dns", "hostPort": 53, "protocol": "UDP", "hostIP": "127.0.0.1"},
            ],
        },
        [],
        None,
        [
            *INSECURE_ALL,
            "prepare",
            *TASK_MOUNTS,
            IMAGE,
            *RESOURCES,
            "--port=http:8080",
            "--port=dns:127.0.0.1:53",
            *STAMP,
        ],
        [*INSECURE_ALL, "run-prepared"],
    ),
    (
        "user and group: after the ports, before the identity stamp",
        {"image": IMAGE, "ports": [{"name": "http", "hostPort": 80}], "user": "1000"}
        | {"group": "staff"},
        [],
        None,
        [
            *INSECURE_ALL,
            "prepare",
            *TASK_MOUNTS,
            IMAGE,
            *RESOURCES,
            "--port=http:80",
            "--user=1000",
            "--group=staff",
            *STAMP,
        ],
        [*INSECURE_ALL, "run-prepared"],
    ),
    (
        "dnsServers host: the single special value",
        {"image": IMAGE, "dnsServers": ["host"]},
        [],
        None,
        [*INSECURE_ALL, "prepare", *TASK_MOUNTS, IMAGE, *RESOURCES, *STAMP],
        [*INSECURE_ALL, "run-prepared", "--dns=host"],
    ),
    (
        "dnsServers none: the single special value",
        {"image": IMAGE, "dnsServers": ["none"]},
        [],
        None,
        [*INSECURE_ALL, "prepare", *TASK_MOUNTS, IMAGE, *RESOURCES, *STAMP],
        [*INSECURE_ALL, "run-prepared", "--dns=none"],
    ),
    (
        "dnsServers IPs (v4 and v6) in order, then search domains, then --net joined",
        {
            "image": IMAGE,
            "dnsServers": ["10.0.0.2", "2001:4860:4860::8888"],
            "dnsSearchDomains": ["svc.local", "example.org"],
            "net": ["default", "mynet:IP=10.1.0.5"],
        },
        [],
        None,
        [*INSECURE_ALL, "prepare", *TASK_MOUNTS, IMAGE, *RESOURCES, *STAMP],
        [
            *INSECURE_ALL,
            "run-prepared",
            "--dns=10.0.0.2",
            "--dns=2001:4860:4860::8888",
            "--dns-search=svc.local",
            "--dns-search=example.org",
            "--net=default,mynet:IP=10.1.0.5",
        ],
    ),
    (
        "net host: port mappings ignored (#3207)",
        {"image": IMAGE, "net": ["host"], "ports": [{"name": "http", "hostPort": 8080}]},
        [],
        None,
        [*INSECURE_ALL, "prepare", *TASK_MOUNTS, IMAGE, *RESOURCES, *STAMP],
        [*INSECURE_ALL, "run-prepared", "--net=host"],
    ),
    # -- upstream tests (nomad-rkt-driver.md §5) ----------------------------------------------
    (
        "S3 TestRktDriver_Start_DNS",
        {
            **ETCD,
            "dnsServers": ["8.8.8.8", "8.8.4.4"],
            "dnsSearchDomains": ["example.com", "example.org", "example.net"],
        },
        [],
        ("trust", "--skip-fingerprint-review=true", "--prefix=coreos.com/etcd", "--debug=false"),
        [
            *DEBUG_OFF,
            "prepare",
            *TASK_MOUNTS,
            "coreos.com/etcd:v2.0.4",
            "--exec=/etcd",
            *RESOURCES,
            *STAMP,
        ],
        [
            *DEBUG_OFF,
            "run-prepared",
            "--dns=8.8.8.8",
            "--dns=8.8.4.4",
            "--dns-search=example.com",
            "--dns-search=example.org",
            "--dns-search=example.net",
        ],
    ),
    (
        "S4 TestRktDriver_Start_Wait",
        {**ETCD, "args": ["--version"], "net": ["none"]},
        [],
        ("trust", "--skip-fingerprint-review=true", "--prefix=coreos.com/etcd", "--debug=false"),
        [
            *DEBUG_OFF,
            "prepare",
            *TASK_MOUNTS,
            "coreos.com/etcd:v2.0.4",
            "--exec=/etcd",
            *RESOURCES,
            *STAMP,
            "--",
            "--version",
        ],
        [*DEBUG_OFF, "run-prepared", "--net=none"],
    ),
    (
        "S5 TestRktDriver_Start_Wait_Skip_Trust",
        {"image": "coreos.com/etcd:v2.0.4", "command": "/etcd", "args": ["--version"]}
        | {"net": ["none"]},
        [],
        None,
        [
            *INSECURE_ALL,
            "prepare",
            *TASK_MOUNTS,
            "coreos.com/etcd:v2.0.4",
            "--exec=/etcd",
            *RESOURCES,
            *STAMP,
            "--",
            "--version",
        ],
        [*INSECURE_ALL, "run-prepared", "--net=none"],
    ),
    (
        "S6 TestRktDriver_Start_Wait_AllocDir (host volume, read-write)",
        {
            "image": "docker://redis:3.2-alpine",
            "command": "/bin/sh",
            "args": ["-c", "echo -n win > /foo/output.txt"],
            "net": ["none"],
            "volumes": [{"name": "foo", "hostPath": "/tmp/rkttest", "mountPath": "/foo"}],
        },
        [],
        None,
        [
            *INSECURE_ALL,
            "prepare",
            *TASK_MOUNTS,
            f"--volume={UID}-0,kind=host,source=/tmp/rkttest,readOnly=false",
            f"--mount=volume={UID}-0,target=/foo",
            "docker://redis:3.2-alpine",
            "--exec=/bin/sh",
            *RESOURCES,
            *STAMP,
            "--",
            "-c",
            "echo -n win > /foo/output.txt",
        ],
        [*INSECURE_ALL, "run-prepared", "--net=none"],
    ),
    (
        "S7 TestRktDriver_UserGroup",
        {"image": "docker://redis:3.2-alpine", "command": "sleep", "args": ["9000"]}
        | {"user": "nobody", "group": "nogroup"},
        [],
        None,
        [
            *INSECURE_ALL,
            "prepare",
            *TASK_MOUNTS,
            "docker://redis:3.2-alpine",
            "--exec=sleep",
            *RESOURCES,
            "--user=nobody",
            "--group=nogroup",
            *STAMP,
            "--",
            "9000",
        ],
        [*INSECURE_ALL, "run-prepared"],
    ),
    (
        "S8 TestRktTrustPrefix (the trust command for an invalid prefix)",
        {"trustPrefix": "example.com/invalid", "image": "coreos.com/etcd:v2.0.4"}
        | {"command": "/etcd", "args": ["--version"]},
        [],
        (
            "trust",
            "--skip-fingerprint-review=true",
            "--prefix=example.com/invalid",
            "--debug=false",
        ),
        [
            *DEBUG_OFF,
            "prepare",
            *TASK_MOUNTS,
            "coreos.com/etcd:v2.0.4",
            "--exec=/etcd",
            *RESOURCES,
            *STAMP,
            "--",
            "--version",
        ],
        [*DEBUG_OFF, "run-prepared"],
    ),
    (
        "S9 TestRktTaskValidate (250 MHz / 256 MB)",
        {
            **ETCD,
            "args": ["--version"],
            "dnsServers": ["8.8.8.8", "8.8.4.4"],
            "dnsSearchDomains": ["example.com", "example.org", "example.net"],
            "resources": {"limits": {"cpu": "250m", "memory": "256M"}},
        },
        [],
        ("trust", "--skip-fingerprint-review=true", "--prefix=coreos.com/etcd", "--debug=false"),
        [
            *DEBUG_OFF,
            "prepare",
            *TASK_MOUNTS,
            "coreos.com/etcd:v2.0.4",
            "--exec=/etcd",
            "--memory=256M",
            "--cpu=250m",
            *STAMP,
            "--",
            "--version",
        ],
        [
            *DEBUG_OFF,
            "run-prepared",
            "--dns=8.8.8.8",
            "--dns=8.8.4.4",
            "--dns-search=example.com",
            "--dns-search=example.org",
            "--dns-search=example.net",
        ],
    ),
    (
        "S10 TestRktDriver_PortMapping (port_map main=6379-tcp, reserved 8080, debug)",
        {
            "image": "docker://redis:3.2-alpine",
            "ports": [{"name": "6379-tcp", "hostPort": 8080}],
            "debug": True,
            "resources": {"limits": {"memory": "256M", "cpu": "512m"}},
        },
        [],
        None,
        [
            "--insecure-options=all",
            "--debug=true",
            "prepare",
            *TASK_MOUNTS,
            "docker://redis:3.2-alpine",
            "--memory=256M",
            "--cpu=512m",
            "--port=6379-tcp:8080",
            *STAMP,
        ],
        ["--insecure-options=all", "--debug=true", "run-prepared"],
    ),
    (
        "S11 TestRktDriver_PortsMapping_Host (net host, reserved port, no mapping)",
        {
            "image": "docker://redis:3.2-alpine",
            "net": ["host"],
            "ports": [{"name": "6379-tcp", "hostPort": 8080}],
            "resources": {"limits": {"memory": "256M", "cpu": "512m"}},
        },
        [],
        None,
        [
            *INSECURE_ALL,
            "prepare",
            *TASK_MOUNTS,
            "docker://redis:3.2-alpine",
            "--memory=256M",
            "--cpu=512m",
            *STAMP,
        ],
        [*INSECURE_ALL, "run-prepared", "--net=host"],
    ),
    (
        "S15/S16 TestRktDriverUser (user applied as --user, not to the host process)",
        {**ETCD, "user": "alice", "args": ["--version"]},
        [],
        ("trust", "--skip-fingerprint-review=true", "--prefix=coreos.com/etcd", "--debug=false"),
        [
            *DEBUG_OFF,
            "prepare",
            *TASK_MOUNTS,
            "coreos.com/etcd:v2.0.4",
            "--exec=/etcd",
            *RESOURCES,
            "--user=alice",
            *STAMP,
            "--",
            "--version",
        ],
        [*DEBUG_OFF, "run-prepared"],
    ),
    (
        "S17 TestRktDriver_PortsMapping (0.6-0.8.1: docker://redis:latest)",
        {
            "image": "docker://redis:latest",
            "ports": [{"name": "6379-tcp", "hostPort": 8080}],
            "debug": True,
            "resources": {"limits": {"memory": "256M", "cpu": "512m"}},
        },
        [],
        None,
        [
            "--insecure-options=all",
            "--debug=true",
            "prepare",
            *TASK_MOUNTS,
            "docker://redis:latest",
            "--memory=256M",
            "--cpu=512m",
            "--port=6379-tcp:8080",
            *STAMP,
        ],
        ["--insecure-options=all", "--debug=true", "run-prepared"],
    ),
]


@pytest.mark.parametrize(
    ("spec", "env", "trust", "prepare", "run_prepared"),
    [pytest.param(*row[1:], id=row[0]) for row in ROWS],
)
def test_argument_lists(
    spec: dict[str, Any],
    env: list[ResolvedVar],
    trust: tuple[str, ...] | None,
    prepare: list[str],
    run_prepared: list[str],
) -> None:
    plan = plan_for(spec, env)
    assert plan.trust == trust
    assert list(plan.prepare) == prepare
    assert list(plan.run_prepared) == run_prepared


# -- plan flags beside the argument lists ------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "discover", "required", "names"),
    [
        pytest.param({}, True, False, (), id="no ports: discover, not required"),
        pytest.param(
            {"ports": [{"name": "http", "hostPort": 8080}, {"name": "metrics"}]},
            True,
            True,
            ("http", "metrics"),
            id="ports: discovery failure fatal (Nomad E18), all names reported",
        ),
        pytest.param(
            {"net": ["host"], "ports": [{"name": "http", "hostPort": 8080}]},
            False,
            False,
            (),
            id="S11 net host: no discovery, no port map (#3615)",
        ),
        pytest.param(
            {"net": ["none"], "ports": [{"name": "http"}]},
            False,
            False,
            (),
            id="S4 net none: no discovery (0.8.5)",
        ),
        pytest.param(
            {"net": ["default"], "ports": [{"name": "dns", "hostPort": 53, "protocol": "UDP"}]},
            True,
            True,
            ("dns",),
            id="S10 named network: discovery required with ports",
        ),
    ],
)
def test_network_flags(
    spec: dict[str, Any],
    discover: bool,
    required: bool,
    names: tuple[str, ...],
) -> None:
    plan = plan_for({"image": IMAGE, **spec})
    assert plan.discover_network is discover
    assert plan.network_required is required
    assert plan.port_names == names


def test_secret_values_stay_out_of_argv_and_are_redacted() -> None:
    env = [
        ResolvedVar("DB_PASSWORD", "hunter2", secret=True),
        ResolvedVar("API_KEY", "k-123", secret=True),
        ResolvedVar("EMPTY_SECRET", "", secret=True),
        ResolvedVar("MODE", "prod"),
    ]
    plan = plan_for({"image": IMAGE}, env)
    everything = " ".join(plan.prepare + plan.run_prepared)
    assert "hunter2" not in everything
    assert "k-123" not in everything
    assert plan.secret_env == (
        ("API_KEY", "k-123"),
        ("DB_PASSWORD", "hunter2"),
        ("EMPTY_SECRET", ""),
    )
    assert plan.redact == frozenset({"hunter2", "k-123"})
    assert plan.prepare.count(SECRET_FILE) == 1


def test_no_secrets_no_env_file() -> None:
    plan = plan_for({"image": IMAGE}, [ResolvedVar("A", "1")])
    assert not any(item.startswith("--set-env-file") for item in plan.prepare)
    assert plan.secret_env == ()
    assert plan.redact == frozenset()


def test_plan_carries_identity_and_dirs() -> None:
    plan = plan_for({"image": IMAGE, "restartPolicy": "OnFailure"})
    assert plan.identity == IDENT
    assert plan.dirs == DIRS


# -- errors that depend on the node -------------------------------------------------------------

VOLUMES = [
    {"name": "data", "hostPath": "/srv/data", "mountPath": "/data"},
    {"name": "conf", "hostPath": "/etc/app", "mountPath": "/conf", "readOnly": True},
]


def test_volumes_disabled_gives_nomads_message() -> None:
    with pytest.raises(SpecError) as caught:
        plan_for({"image": IMAGE, "volumes": VOLUMES}, volumes_enabled=False)
    assert caught.value.message == (
        'rkt.volumes.enabled is false; cannot use rkt volumes: ["/srv/data:/data" '
        '"/etc/app:/conf:readOnly"]'
    )
    assert caught.value.field == "spec.volumes"
    assert caught.value.retryable is False


def test_volumes_disabled_quotes_like_go() -> None:
    volume = {"name": "v", "hostPath": '/srv/"q"\\é', "mountPath": "/v"}
    with pytest.raises(SpecError) as caught:
        plan_for({"image": IMAGE, "volumes": [volume]}, volumes_enabled=False)
    assert caught.value.message.endswith(r'["/srv/\"q\"\\\u00e9:/v"]')


def test_volumes_disabled_without_volumes_is_fine() -> None:
    assert plan_for({"image": IMAGE}, volumes_enabled=False).prepare[3:9] == tuple(TASK_MOUNTS)


@pytest.mark.parametrize(
    ("allowed", "host_path", "ok"),
    [
        pytest.param(("/srv",), "/srv/data", True, id="under a prefix"),
        pytest.param(("/srv/data",), "/srv/data", True, id="the prefix itself"),
        pytest.param(("/srv/data/",), "/srv/data/x", True, id="prefix with trailing slash"),
        pytest.param(("/srv/data",), "/srv/data2", False, id="sibling sharing the characters"),
        pytest.param(("/tmp", "/srv"), "/srv/x", True, id="second prefix"),
        pytest.param(("/",), "/etc/shadow", True, id="root allows everything"),
        pytest.param((), "/etc/shadow", True, id="empty allowlist allows any path"),
        pytest.param(("/srv",), "/etc/app", False, id="outside"),
    ],
)
def test_host_path_allowlist(allowed: tuple[str, ...], host_path: str, ok: bool) -> None:
    spec = {"image": IMAGE, "volumes": [{"name": "v", "hostPath": host_path, "mountPath": "/v"}]}
    if ok:
        assert (
            f"--mount=volume={UID}-0,target=/v"
            in plan_for(spec, volumes_allowed_host_paths=allowed).prepare
        )
    else:
        with pytest.raises(SpecError) as caught:
            plan_for(spec, volumes_allowed_host_paths=allowed)
        assert caught.value.field == "spec.volumes[0].hostPath"
        assert host_path in caught.value.message
        assert "not under a path this node allows" in caught.value.message


@pytest.mark.parametrize(
    ("var", "text"),
    [
        pytest.param(ResolvedVar("LOG-LEVEL", "x"), "Nomad issue #2358", id="name with dash"),
        pytest.param(ResolvedVar("A=B", "x"), "invalid environment variable name", id="name ="),
        pytest.param(ResolvedVar("", "x"), "invalid environment variable name", id="empty name"),
        pytest.param(ResolvedVar("K", "a\nb", secret=True), "line break", id="secret newline"),
        pytest.param(ResolvedVar("K", "a\x00b"), "NUL", id="NUL in a value"),
        pytest.param(ResolvedVar("K", "a\x00b", secret=True), "NUL", id="NUL in a secret"),
    ],
)
def test_resolved_environment_rkt_cannot_take(var: ResolvedVar, text: str) -> None:
    with pytest.raises(SpecError) as caught:
        plan_for({"image": IMAGE}, [var])
    assert text in caught.value.message


def test_plain_value_with_newline_is_fine_in_argv() -> None:
    plan = plan_for({"image": IMAGE}, [ResolvedVar("MOTD", "line1\nline2")])
    assert "--set-env=MOTD=line1\nline2" in plan.prepare


# -- resources, kill timeout, $(VAR) expansion ---------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "memory", "cpu"),
    [
        pytest.param({"memory": "300M"}, "--memory=300M", "--cpu=100m", id="300M exact"),
        pytest.param({"memory": "128Mi"}, "--memory=135M", "--cpu=100m", id="128Mi rounded up"),
        pytest.param({"memory": "1G"}, "--memory=1000M", "--cpu=100m", id="1G"),
        pytest.param({"memory": "1Gi"}, "--memory=1074M", "--cpu=100m", id="1Gi"),
        pytest.param({"memory": 1}, "--memory=1M", "--cpu=100m", id="1 byte -> 1M"),
        pytest.param({"memory": "1.5e9"}, "--memory=1500M", "--cpu=100m", id="exponent"),
        pytest.param({"cpu": "500m"}, "--memory=300M", "--cpu=500m", id="500m"),
        pytest.param({"cpu": "0.5"}, "--memory=300M", "--cpu=500m", id="0.5 cores"),
        pytest.param({"cpu": 2}, "--memory=300M", "--cpu=2000m", id="2 cores (integer)"),
        pytest.param({"cpu": "100u"}, "--memory=300M", "--cpu=1m", id="below 1m rounds up"),
        pytest.param({}, "--memory=300M", "--cpu=100m", id="limits present but empty"),
    ],
)
def test_resources(limits: dict[str, Any], memory: str, cpu: str) -> None:
    plan = plan_for({"image": IMAGE, "resources": {"limits": limits}})
    at = plan.prepare.index(IMAGE) + 1
    assert plan.prepare[at : at + 2] == (memory, cpu)


@pytest.mark.parametrize(
    ("desired", "maximum", "expected"),
    [
        pytest.param(5, 30, 5.0, id="default under the agent default"),
        pytest.param(60, 30, 30.0, id="capped by the node"),
        pytest.param(0, 30, 1.0, id="zero means 1 s"),
        pytest.param(-3, 30, 1.0, id="negative means 1 s"),
        pytest.param(5, 0, 5.0, id="unset maximum: 10 s cap, under it"),
        pytest.param(20, 0, 10.0, id="unset maximum: 10 s cap"),
        pytest.param(0, 0.5, 0.5, id="1 s floor, then the cap"),
    ],
)
def test_kill_timeout(desired: float, maximum: float, expected: float) -> None:
    assert kill_timeout(desired, maximum) == expected


def test_plan_carries_the_desired_kill_timeout() -> None:
    # The node's cap is applied once, by Executor.stop (tests/executor: capped by the node).
    spec = {"image": IMAGE, "killTimeoutSeconds": 45}
    assert plan_for(spec, max_kill_timeout_seconds=20).kill_timeout_seconds == 45.0
    assert plan_for({"image": IMAGE}).kill_timeout_seconds == 5.0


ENV = {"A": "alpha", "B": "beta", "REF": "$(A)", "EMPTY": ""}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("$(A)", "alpha", id="known"),
        pytest.param("x$(A)y$(B)z", "xalphaybetaz", id="several"),
        pytest.param("$(MISSING)", "$(MISSING)", id="unknown kept"),
        pytest.param("$$(A)", "$(A)", id="escaped"),
        pytest.param("$$$(A)", "$alpha", id="escape then reference"),
        pytest.param("$$", "$", id="double dollar"),
        pytest.param("$$$", "$$", id="triple dollar"),
        pytest.param("$", "$", id="lone dollar"),
        pytest.param("a$b", "a$b", id="dollar without parenthesis"),
        pytest.param("$(A", "$(A", id="unterminated"),
        pytest.param("$()", "$()", id="empty name"),
        pytest.param("$(A$(B))", "$(A$(B))", id="nested is not a name"),
        pytest.param("$(REF)", "$(A)", id="values not expanded again"),
        pytest.param("$(EMPTY)!", "!", id="empty value"),
        pytest.param("${A}", "${A}", id="shell syntax untouched"),
    ],
)
def test_expand_args(text: str, expected: str) -> None:
    assert expand_args([text], ENV) == (expected,)


def test_expand_args_keeps_items_apart() -> None:
    assert expand_args(["$(A) $(B)", "", "$(B)"], ENV) == ("alpha beta", "", "beta")
