"""``rkt run-prepared``: take the prepared pod, lock it, move it to ``run`` and run it.

Checks that rkt makes before moving the pod (exactly one UUID, state ``prepared``, DNS flag
combinations, ``--interactive`` with one app, ``--mds-register``) fail with 254 and leave
the pod prepared. Failures after the move (networks, app setup) are stage1's: ``stage1: ``
prefix, exit 254, and the pod ends ``exited``.
"""

from __future__ import annotations

import os
from pathlib import Path

from rkt_sim import appenv, network, pods, runner
from rkt_sim.context import Context
from rkt_sim.errors import SimError
from rkt_sim.flags import GLOBAL_FLAGS, FlagSet, Parsed, bool_flag, str_flag

DEFAULT_LOCAL_CONFIG = Path("/etc/rkt")
USAGE = "Usage:\n  rkt run-prepared UUID [flags]\n"
FLAGSET = FlagSet(
    (
        *GLOBAL_FLAGS,
        str_flag("net", "configure the pod's networking", no_opt="default"),
        str_flag("dns", "name servers to write in /etc/resolv.conf"),
        str_flag("dns-search", "DNS search domains to write in /etc/resolv.conf"),
        str_flag("dns-opt", "DNS options to write in /etc/resolv.conf"),
        str_flag("dns-domain", "DNS domain to write in /etc/resolv.conf"),
        str_flag("hosts-entry", "entries to add to the pod-wide /etc/hosts"),
        str_flag("hostname", "pod's hostname"),
        bool_flag("interactive", "run pod interactively"),
        bool_flag("mds-register", "register pod with metadata service"),
        str_flag("ipc", "IPC namespace mode: auto, private or parent"),
    )
)
INTERSPERSED = True


def _split(values: list[str]) -> list[str]:
    return [item for value in values for item in value.split(",") if item]


def _pod_files(parsed: Parsed, hostname: str) -> dict[str, str]:
    files = {"etc/hostname": hostname + "\n"}
    dns = _split(parsed.all("dns"))
    extra = [f for f in ("dns-search", "dns-opt", "dns-domain") if parsed.all(f)]
    if any(d in ("host", "none") for d in dns):
        if len(dns) > 1:
            raise SimError("--dns=host and --dns=none must be the only --dns value")
        if extra:
            raise SimError(f"--{extra[0]} cannot be combined with --dns={dns[0]}")
        if dns[0] == "host":
            files["etc/resolv.conf"] = (
                Path("/etc/resolv.conf").read_text() if Path("/etc/resolv.conf").exists() else ""
            )
    elif dns or extra:
        lines = [f"nameserver {d}" for d in dns]
        if parsed.all("dns-search"):
            lines.append("search " + " ".join(_split(parsed.all("dns-search"))))
        if parsed.all("dns-opt"):
            lines.append("options " + " ".join(_split(parsed.all("dns-opt"))))
        if parsed.all("dns-domain"):
            lines.append(f"domain {parsed.all('dns-domain')[-1]}")
        files["etc/resolv.conf"] = "\n".join(lines) + "\n"
    entries = _split(parsed.all("hosts-entry"))
    if "host" in entries:
        if len(entries) > 1:
            raise SimError("--hosts-entry=host must be the only --hosts-entry value")
        files["etc/hosts"] = Path("/etc/hosts").read_text() if Path("/etc/hosts").exists() else ""
    elif entries:
        lines = ["127.0.0.1 localhost localhost.localdomain", "::1 localhost localhost.localdomain"]
        for entry in entries:
            ip, eq, host = entry.partition("=")
            if not eq or not host:
                raise SimError(f'invalid --hosts-entry "{entry}": must be IP=HOSTNAME')
            lines.append(f"{ip} {host}")
        files["etc/hosts"] = "\n".join(lines) + "\n"
    return files


def run(ctx: Context, parsed: Parsed) -> int:
    ctx.require_root()
    if len(parsed.positionals) != 1:
        raise SimError(usage=True)
    runner.block_signals()
    pod = pods.resolve(ctx.data_dir, parsed.positionals[0])
    if pod.kind != "prepared":
        raise SimError(f'pod "{pod.uuid}" is not prepared')
    manifest = pod.manifest() or {}
    hostname = parsed.last("hostname") or f"rkt-{pod.uuid}"
    files = _pod_files(parsed, hostname)
    try:
        nets = network.parse_net_flag(parsed.all("net"))
    except network.NetworkError as exc:
        raise SimError(str(exc)) from None
    interactive = parsed.boolean("interactive")
    if interactive and len(manifest.get("apps") or []) != 1:
        raise SimError("interactive option only supports pods with one app")
    if parsed.boolean("mds-register"):
        if nets == "none":
            raise SimError("--mds-register cannot be used with --net=none")
        raise SimError("failed to register the pod with the metadata service: rkt-sim has none")
    ipc = parsed.last("ipc") or "auto"
    if ipc not in ("auto", "private", "parent"):
        raise SimError(f'unknown value for --ipc: "{ipc}"')
    try:
        fd = pods.open_dir(pod.path)
    except OSError:  # another run-prepared moved it meanwhile
        raise SimError(f'pod "{pod.uuid}" is not prepared') from None
    if not pods.try_lock(fd):
        raise SimError(f'pod "{pod.uuid}" is not prepared')
    before = pod.path
    try:
        pod.move("run")
    except OSError:
        raise SimError(
            f"cannot transition to run: rename {before} {pod.path.parent.parent / 'run' / pod.uuid}"
            ": no such file or directory"
        ) from None
    # From here on this is stage1's work: the lock stays held until this process ends.
    if isinstance(nets, list):
        try:
            # rkt's run-prepared does not hand --local-config to stage1 (only run does), so
            # stage1 looks for user networks in the default /etc/rkt/net.d.
            network.setup(ctx.data_dir, DEFAULT_LOCAL_CONFIG, pod.path, pod.uuid, nets)
        except network.NetworkError as exc:
            runner.stage1_error(f"failed to setup network: {exc}")
            return 254
        if ctx.debug:
            for net in pod.net_info() or []:
                runner.stage1_error(f"network {net['netName']}: {net['ifName']} {net['ip']}")
    (pod.path / "ppid").write_text(f"{os.getpid()}\n")
    options = runner.RunOptions(hostname, files, interactive, ctx.sim.stop_grace_seconds, ctx.debug)
    pod_runner = runner.PodRunner(ctx.data_dir, pod.path, manifest, options)
    try:
        code = pod_runner.run()
    except appenv.AppSetupError as exc:
        runner.stage1_error(str(exc))
        pod_runner.stop_all()
        return 254
    return code
