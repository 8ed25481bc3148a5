"""``rkt prepare``'s position-dependent argument grammar (rkt's ``parseApps``).

Cobra parses flags up to the first image. From there on, flags are parsed with the same flag
set; a per-app flag applies to the nearest preceding image, any other non-flag argument
starts a new app, ``--`` opens that app's argument list (one per image) which runs until a
lone ``---`` or the end. ``--mount`` before any image applies to every app.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rkt_sim import podspec
from rkt_sim.appc import AppcError, check_identifier, check_name
from rkt_sim.errors import FlagError, SimError
from rkt_sim.flags import GLOBAL_FLAGS, Flag, FlagEvent, FlagSet, bool_flag, str_flag

POD_FLAGS = (
    str_flag("volume", "volumes to make available in the pod"),
    str_flag("port", "ports to expose on the host (requires contained network)"),
    str_flag("set-env", "environment variable to set for all the apps in the form key=value"),
    str_flag("set-env-file", "path to an environment variables file"),
    bool_flag("inherit-env", "inherit all environment variables not set by apps"),
    bool_flag("no-overlay", "disable overlay filesystem"),
    bool_flag("private-users", "run within user namespaces"),
    bool_flag("quiet", "suppress superfluous output on stdout, print only the UUID on success"),
    str_flag("pull-policy", "when to pull an image: never, new or update"),
    bool_flag("store-only", "deprecated, use --pull-policy=never", hidden=True),
    bool_flag("no-store", "deprecated, use --pull-policy=update", hidden=True),
    str_flag("pod-manifest", "the path to the pod manifest"),
    str_flag("stage1-url", "URL to an image to use as stage1"),
    str_flag("stage1-path", "absolute or relative path to an image to use as stage1"),
    str_flag("stage1-name", "name of an image to use as stage1"),
    str_flag("stage1-hash", "hash of an image to use as stage1"),
    str_flag("stage1-from-dir", "filename of an image in stage1 images directory"),
)
APP_FLAGS = (
    str_flag("name", "set the name of the app"),
    str_flag("exec", "override the exec command for the preceding image"),
    str_flag("user", "user override for the preceding image"),
    str_flag("group", "group override for the preceding image"),
    str_flag("supplementary-gids", "supplementary group IDs override for the preceding image"),
    str_flag("working-dir", "override the working directory of the preceding image"),
    bool_flag("readonly-rootfs", "mount rootfs read-only"),
    str_flag("environment", "set the app's environment variables"),
    str_flag("mount", "mount point binding a volume to a path within an app"),
    str_flag("memory", "memory limit for the preceding image"),
    str_flag("cpu", "cpu limit for the preceding image"),
    str_flag("cpu-shares", "CPU shares for the preceding image"),
    str_flag("oom-score-adj", "oom-score-adj isolator override"),
    str_flag("caps-retain", "capability to retain"),
    str_flag("caps-remove", "capability to remove"),
    str_flag("cap-retain", "deprecated, use --caps-retain"),
    str_flag("cap-remove", "deprecated, use --caps-remove"),
    str_flag("seccomp", "seccomp filter override"),
    str_flag("annotation", "set the app's annotations"),
    str_flag("user-annotation", "set the app's user annotations"),
    str_flag("user-label", "set the app's user labels"),
    str_flag("signature", "local signature file to use in validating the preceding image"),
)
APP_FLAG_NAMES = frozenset(f.name for f in APP_FLAGS) - {"mount"}
PREPARE_FLAGSET = FlagSet((*GLOBAL_FLAGS, *POD_FLAGS, *APP_FLAGS))


@dataclass
class AppArgs:
    """One image of the command line and the per-app settings that follow it."""

    image: str
    name: str | None = None
    exec: str | None = None
    user: str | None = None
    group: str | None = None
    supplementary_gids: list[int] | None = None
    working_dir: str | None = None
    readonly_rootfs: bool | None = None
    environment: list[tuple[str, str]] = field(default_factory=list)
    mounts: list[dict[str, str]] = field(default_factory=list)
    isolators: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, str]] = field(default_factory=list)
    user_annotations: dict[str, str] = field(default_factory=dict)
    user_labels: dict[str, str] = field(default_factory=dict)
    signature: str | None = None
    args: list[str] = field(default_factory=list)
    seccomp: str | None = None


@dataclass
class PrepareArgs:
    apps: list[AppArgs] = field(default_factory=list)
    mounts: list[dict[str, str]] = field(default_factory=list)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    ports: list[dict[str, Any]] = field(default_factory=list)
    set_env: list[tuple[str, str]] = field(default_factory=list)
    set_env_file_pairs: list[tuple[str, str]] = field(default_factory=list)
    events: list[FlagEvent] = field(default_factory=list)

    def flag(self, name: str) -> str | None:
        value = None
        for event in self.events:
            if event.flag.name == name:
                value = event.value
        return value

    def given(self, name: str) -> bool:
        return any(e.flag.name == name for e in self.events)

    def boolean(self, name: str) -> bool:
        return self.flag(name) in ("1", "t", "T", "TRUE", "true", "True")


def _set_once(app: AppArgs, attr: str, flag: str, value: Any) -> None:
    if getattr(app, attr) is not None:
        raise podspec.SpecError(f"--{flag} specified multiple times for the same image")
    setattr(app, attr, value)


def _apply_app_flag(app: AppArgs, name: str, value: str) -> None:
    if name == "name":
        app.name = value
    elif name == "exec":
        _set_once(app, "exec", "exec", value)
    elif name == "signature":
        _set_once(app, "signature", "signature", value)
    elif name in ("user", "group"):
        setattr(app, name, value)
    elif name == "supplementary-gids":
        try:
            app.supplementary_gids = [int(v) for v in value.split(",") if v]
        except ValueError:
            raise podspec.SpecError(f'invalid supplementary group "{value}"') from None
    elif name == "working-dir":
        if not value.startswith("/"):
            raise podspec.SpecError("working directory must be an absolute path")
        app.working_dir = value
    elif name == "readonly-rootfs":
        app.readonly_rootfs = value in ("1", "t", "T", "TRUE", "true", "True")
    elif name == "environment":
        app.environment.append(podspec.parse_env_pair(value))
    elif name == "memory":
        app.isolators = [i for i in app.isolators if i["name"] != "resource/memory"]
        app.isolators.append(podspec.memory_isolator(value))
    elif name == "cpu":
        app.isolators = [i for i in app.isolators if i["name"] != "resource/cpu"]
        app.isolators.append(podspec.cpu_isolator(value))
    elif name in ("cpu-shares", "oom-score-adj"):
        iso_name = f"os/linux/{name}"
        app.isolators = [i for i in app.isolators if i["name"] != iso_name]
        app.isolators.append(podspec.int_isolator(iso_name, value))
    elif name in ("caps-retain", "cap-retain", "caps-remove", "cap-remove"):
        kind = "retain" if "retain" in name else "remove"
        other = "remove" if kind == "retain" else "retain"
        if any(i["name"] == f"os/linux/capabilities-{other}-set" for i in app.isolators):
            raise podspec.SpecError("--caps-retain and --caps-remove cannot be used together")
        app.isolators.append(podspec.caps_isolator(f"os/linux/capabilities-{kind}-set", value))
    elif name == "seccomp":
        app.seccomp = value
    elif name == "annotation":
        key, val = podspec.parse_key_value("--annotation", value)
        try:
            check_identifier(key)
        except AppcError as exc:
            raise podspec.SpecError(str(exc)) from None
        app.annotations.append({"name": key, "value": val})
    elif name == "user-annotation":
        key, val = podspec.parse_key_value("--user-annotation", value)
        app.user_annotations[key] = val
    elif name == "user-label":
        key, val = podspec.parse_key_value("--user-label", value)
        app.user_labels[key] = val


def _apply(parsed: PrepareArgs, event: FlagEvent) -> None:
    """Flag ``Set``: store the value, raising rkt's message for a bad one."""
    name, value = event.flag.name, event.value
    last = parsed.apps[-1] if parsed.apps else None
    try:
        if name == "mount":
            (last.mounts if last else parsed.mounts).append(podspec.parse_mount(value))
        elif name in APP_FLAG_NAMES:
            if last is None:
                raise podspec.SpecError(f"--{name} must follow an image")
            _apply_app_flag(last, name, value)
        elif name == "volume":
            parsed.volumes.append(podspec.parse_volume(value))
        elif name == "port":
            parsed.ports.append(podspec.parse_port(value))
        elif name == "set-env":
            key, val = podspec.parse_env_pair(value)
            if any(k == key for k, _ in parsed.set_env):
                raise podspec.SpecError(f'environment variable "{key}" already set')
            parsed.set_env.append((key, val))
        elif name == "set-env-file":
            for key, val in podspec.read_env_file(value):
                if any(k == key for k, _ in parsed.set_env_file_pairs):
                    raise podspec.SpecError(f'environment variable "{key}" already set')
                parsed.set_env_file_pairs.append((key, val))
    except podspec.SpecError as exc:
        raise FlagError(f'invalid argument "{value}" for "--{name}" flag: {exc}') from None
    parsed.events.append(event)


def _parse_flags_at(
    flagset: FlagSet, args: Sequence[str], index: int
) -> tuple[list[FlagEvent], int]:
    """pflag ``Parse`` on ``args[index:]`` without interspersing: the leading flags only."""
    events: list[FlagEvent] = []
    while index < len(args):
        if args[index] == "--":
            break
        event, nxt = flagset.take_one(args, index)
        if event is None:
            break
        events.append(event)
        index = nxt
    return events, index


def parse_prepare(args: Sequence[str], flagset: FlagSet = PREPARE_FLAGSET) -> PrepareArgs:
    """Parse prepare's (or run's) argv after the subcommand name."""
    parsed = PrepareArgs()
    # Phase 1: cobra, up to the first non-flag; errors here are cobra's.
    events, index = _parse_flags_at(flagset, args, 0)
    for event in events:
        _apply(parsed, event)
    if index < len(args) and args[index] == "--":
        index += 1  # pflag consumes the first "--" that ends the leading flags
    # Phase 2: rkt's own loop over images, inter-app flags and argument groups.
    try:
        _parse_apps(parsed, flagset, args, index)
        _validate_mounts(parsed)
    except (FlagError, podspec.SpecError) as exc:
        message = exc.message if isinstance(exc, FlagError) else str(exc)
        raise SimError(f"error parsing app image arguments: {message}") from None
    return parsed


def _parse_apps(parsed: PrepareArgs, flagset: FlagSet, args: Sequence[str], index: int) -> None:
    in_args = False
    apps_at_last_args = 0
    while index < len(args):
        arg = args[index]
        if in_args:
            if arg == "---":
                in_args = False
            else:
                parsed.apps[-1].args.append(arg)
            index += 1
            continue
        if arg == "--":
            if apps_at_last_args == len(parsed.apps):
                if not parsed.apps:
                    raise podspec.SpecError("an image is required before any app arguments")
                raise podspec.SpecError("only one set of app arguments allowed per image")
            apps_at_last_args = len(parsed.apps)
            in_args = True
            index += 1
            continue
        if arg == "---":
            index += 1
            continue
        events, nxt = _parse_flags_at(flagset, args, index)
        if events:
            for event in events:
                _apply(parsed, event)
            index = nxt
        else:
            parsed.apps.append(AppArgs(image=arg))
            index += 1


def _validate_mounts(parsed: PrepareArgs) -> None:
    names = {v["name"] for v in parsed.volumes}
    for mount in [*parsed.mounts, *(m for app in parsed.apps for m in app.mounts)]:
        if mount["volume"] not in names:
            raise podspec.SpecError(
                f'dangling mount point "{mount["path"]}": volume "{mount["volume"]}" not found'
            )
    for app in parsed.apps:
        if app.name is not None:
            try:
                check_name(app.name)
            except AppcError as exc:
                raise podspec.SpecError(f'invalid app name "{app.name}": {exc}') from None


def pod_flag_names() -> frozenset[str]:
    return frozenset(f.name for f in POD_FLAGS)


def all_flags() -> tuple[Flag, ...]:
    return (*POD_FLAGS, *APP_FLAGS)
