"""prepare's argument grammar and the pflag rules, as pure functions."""

from __future__ import annotations

import pytest

from rkt_sim.errors import FlagError, SimError
from rkt_sim.flags import GLOBAL_FLAGS, FlagSet, bool_flag, str_flag
from rkt_sim.grammar import parse_prepare


def test_flags_before_the_first_image_and_per_app_flags_after_it() -> None:
    parsed = parse_prepare(
        [
            "--volume=data,kind=host,source=/srv",
            "--mount=volume=data,target=/global",
            "--set-env=A=1",
            "img1",
            "--name=one",
            "--mount=volume=data,target=/own",
            "--",
            "x",
            "--y",
            "---",
            "img2",
            "--exec=/bin/e",
            "--user-annotation=k=v",
        ]
    )
    assert [a.image for a in parsed.apps] == ["img1", "img2"]
    one, two = parsed.apps
    assert (one.name, one.args, one.mounts) == (
        "one",
        ["x", "--y"],
        [{"volume": "data", "path": "/own"}],
    )
    assert (two.exec, two.user_annotations) == ("/bin/e", {"k": "v"})
    assert parsed.mounts == [{"volume": "data", "path": "/global"}]
    assert parsed.set_env == [("A", "1")]
    assert parsed.volumes == [{"name": "data", "kind": "host", "source": "/srv"}]


def test_args_run_to_the_end_without_a_triple_dash() -> None:
    parsed = parse_prepare(["img", "--", "--name=not-a-flag", "img2"])
    assert len(parsed.apps) == 1
    assert parsed.apps[0].args == ["--name=not-a-flag", "img2"]


def test_triple_dash_between_images_is_ignored() -> None:
    assert [a.image for a in parse_prepare(["img", "---", "img2"]).apps] == ["img", "img2"]


def test_triple_dash_before_any_image_is_bad_flag_syntax() -> None:
    with pytest.raises(FlagError, match="bad flag syntax: ---"):
        parse_prepare(["---", "img"])


def test_per_app_flag_before_an_image_is_a_cobra_error() -> None:
    with pytest.raises(FlagError) as caught:
        parse_prepare(["--exec=/bin/x", "img"])
    assert (
        caught.value.message
        == 'invalid argument "/bin/x" for "--exec" flag: --exec must follow an image'
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--", "--", "img"], "an image is required before any app arguments"),
        (["img", "--", "a", "---", "--", "b"], "only one set of app arguments allowed per image"),
        (["img", "--exec=/a", "--exec=/b"], "--exec specified multiple times for the same image"),
        (
            ["img", "--mount=volume=nope,target=/x"],
            'dangling mount point "/x": volume "nope" not found',
        ),
        (["img", "--bogus"], "unknown flag: --bogus"),
        (["img", "--name=Bad_Name"], 'invalid app name "Bad_Name"'),
    ],
)
def test_grammar_errors(argv: list[str], message: str) -> None:
    with pytest.raises(SimError) as caught:
        parse_prepare(argv)
    assert caught.value.message.startswith("error parsing app image arguments: ")
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--volume=data,kind=host", "source for host volume cannot be empty"),
        ("--volume=data,kind=host,source=/a,mode=0700", "mode for host volume cannot be set"),
        ("--volume=data,kind=empty,source=/a", "source for empty volume must be empty"),
        ("--volume=data,kind=nfs", 'unrecognized volume kind: should be one of "empty", "host"'),
        ("--volume=Data,kind=empty", "ACName must contain only lower case alphanumeric characters"),
        ("--volume=data,kind=host,source=/a,readOnly=maybe", 'strconv.ParseBool: parsing "maybe"'),
        ("--port=http", '"http" is not in name:[ip:]port format'),
        ("--port=http:99999", '"99999" is not a valid port number'),
        ("--port=http:nope:80", '"nope" is not a valid IP address'),
        ("--set-env=NOVALUE", "environment variable must be specified as name=value"),
        ("--mount=volume=data,target=/x,extra=1", 'unknown mount parameter "extra"'),
    ],
)
def test_value_errors_are_flag_errors(flag: str, message: str) -> None:
    with pytest.raises(FlagError) as caught:
        parse_prepare([flag, "img"])
    assert caught.value.message.startswith(f'invalid argument "{flag.split("=", 1)[1]}" for ')
    assert message in caught.value.message


def test_empty_volume_defaults() -> None:
    parsed = parse_prepare(["--volume=scratch,kind=empty", "img"])
    assert parsed.volumes == [
        {"name": "scratch", "kind": "empty", "mode": "0755", "uid": 0, "gid": 0}
    ]


def test_port_with_host_ip() -> None:
    parsed = parse_prepare(["--port=http:127.0.0.1:8080", "img"])
    assert parsed.ports == [{"name": "http", "hostPort": 8080, "hostIP": "127.0.0.1"}]


def test_duplicate_set_env_is_refused() -> None:
    with pytest.raises(FlagError, match='environment variable "A" already set'):
        parse_prepare(["--set-env=A=1", "--set-env=A=2", "img"])


def test_memory_and_cpu_become_canonical_isolators() -> None:
    app = parse_prepare(["img", "--memory=1024Mi", "--cpu=0.5"]).apps[0]
    assert app.isolators == [
        {"name": "resource/memory", "value": {"default": False, "request": "1Gi", "limit": "1Gi"}},
        {"name": "resource/cpu", "value": {"default": False, "request": "500m", "limit": "500m"}},
    ]


class TestFlagSet:
    flags = FlagSet(
        (*GLOBAL_FLAGS, bool_flag("full"), str_flag("format"), str_flag("wait", no_opt="true"))
    )

    def test_value_forms(self) -> None:
        parsed = self.flags.parse(
            ["--format", "json", "--wait", "uuid", "--full=false", "--dir=/d"]
        )
        assert parsed.last("format") == "json"
        assert parsed.last("wait") == "true"  # an optional value needs "="
        assert parsed.positionals == ["uuid"]
        assert parsed.boolean("full") is False
        assert parsed.last("dir") == "/d"

    def test_interspersed_and_not(self) -> None:
        assert self.flags.parse(["a", "--full", "b"]).positionals == ["a", "b"]
        assert self.flags.parse(["a", "--full", "b"], interspersed=False).positionals == [
            "a",
            "--full",
            "b",
        ]

    def test_double_dash_ends_flags(self) -> None:
        parsed = self.flags.parse(["--full", "--", "--format=x"])
        assert parsed.rest == ["--format=x"]
        assert parsed.last("format") is None

    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            (["--nope"], "unknown flag: --nope"),
            (["-x"], "unknown shorthand flag: 'x' in -x"),
            (["--format"], "flag needs an argument: --format"),
            (["--full=yes"], 'invalid argument "yes" for "--full" flag: strconv.ParseBool'),
        ],
    )
    def test_errors(self, argv: list[str], message: str) -> None:
        with pytest.raises(FlagError) as caught:
            self.flags.parse(argv)
        assert caught.value.message.startswith(message)
