"""rkt-sim: a stand-alone, faithful simulator of the rkt v1.30.0 command line.

It implements ``version``, ``trust``, ``fetch``, ``image list``/``rm``, ``prepare``,
``run-prepared``, ``status``, ``cat-manifest``, ``list``, ``stop``, ``rm``, ``gc`` and
``enter`` with rkt's flags and grammar, stdout/stderr formats (``<subcommand>: `` prefix on
stderr, cobra's ``Error: ...`` for flag errors), exit codes (254, 2, 1, the app's code for
``run-prepared``) and on-disk state (``/work/shared/reference/rkt-cli.md`` is the contract).
It imports nothing else from rkt_operator. Run it as ``rkt-sim`` or
``python -m rkt_sim.main``.

What is real
    Images are real ACI archives (tar, optionally gzip/bzip2/xz) validated like appc
    (layout, ImageManifest schema, AC Identifier / AC Name rules), imported into
    ``<dir>/cas`` and resolved by hash, file, or name from there. ``prepare`` writes a real
    PodManifest and pod directory under ``<dir>/pods`` and prints the UUID. Pod states
    follow rkt's directories and ``flock`` semantics (``running`` = ``run/<uuid>`` locked).
    ``run-prepared`` holds that lock for its whole life, writes ``ppid``, runs every app as
    a real process and exits with the first failing app's code; app output goes both to
    ``<pod>/app.log`` and to run-prepared's own stdout/stderr. ``stop`` sends SIGTERM to the
    ppid and returns (``--force``: SIGKILL to the apps' process groups and the ppid); the
    pod shuts down its apps with SIGTERM, then SIGKILL after a grace period. The default
    network leases an address in 172.16.28.0/24 from a host-local store under
    ``<dir>/networks`` (released by ``rm``/``gc``). Unsigned images are refused unless
    ``--insecure-options=image`` (or ``all``) is given; signed ones are verified with the
    host's ``gpg`` against the keys ``trust`` stored for a prefix of the image name.

Isolation (as root)
    Each app gets private mount, UTS and PID namespaces: the rootfs is an overlay of the
    image tree (``--no-overlay``: a copy made by ``prepare``), ``/dev`` is bind-mounted, a
    fresh ``/proc`` shows only the pod, volumes are bind-mounted at their targets (read-only
    when asked), the hostname is ``rkt-<uuid>`` (or ``--hostname``), then chroot and the
    app's user/group resolved from the image's ``/etc/passwd``/``/etc/group``. No network
    namespace is created: the leased address is bookkeeping that ``status`` reports.

The unprivileged approximation
    rkt refuses ``prepare``/``run-prepared``/``enter``/``rm``/``gc`` without root
    (``<cmd>: cannot run as unprivileged user``), and so does the simulator unless
    ``allow_unprivileged`` is set in the simulator config. Then prepare always copies the
    image tree, apps run on the host (no namespaces, no chroot, the caller's user) with the
    app's rootfs as working directory and the image's binary as executable, and volumes are
    symlinks at their targets inside that rootfs; absolute paths in the app still see the
    host. ``enter`` runs the command the same way.

Simulator-only settings: ``<dir>/.sim-config.json`` (all optional)
    ``{"allow_unprivileged": false, "stop_grace_seconds": 90, "rkt_version": "1.30.0",
    "appc_version": "0.8.11"}``: the versions change what ``version`` prints and the
    PodManifest ``acVersion`` (to test version checks); ``stop_grace_seconds`` is the time
    between SIGTERM and SIGKILL when a pod shuts down.

Fault injection: ``<dir>/.sim-faults.json`` (off unless the file exists)
    ``{"prepare": [{"action": "fail", "stderr": "prepare: boom", "code": 254}],
    "status": [{"action": "hang", "seconds": 30}], "list": [{"action": "garbage"}],
    "*": [{"action": "slow", "seconds": 0.5, "times": 3}]}``. Keys are command paths
    (``image list``) or ``*``; each invocation consumes the first applicable entry of its
    command and of ``*`` under a lock. See :mod:`rkt_sim.faults` for the
    actions (``fail``, ``hang``, ``garbage``, ``slow``, ``crash``) and options
    (``times``, ``if_arg``, ``stdout``, ``stderr``, ``code``, ``seconds``).

No network
    ``docker://`` and ``http(s)://`` images, and names missing from the store, fail with an
    offline error unless registered with the simulator-only command
    ``rkt-sim sim-import-remote URL FILE`` (imports the ACI FILE as the image of URL; a
    remote https image still needs ``--insecure-options=image``, docker images always do,
    as in rkt).

Pod directory additions (simulator layout)
    ``app.log`` (all apps' output), ``appsinfo/<app>/pid`` (the app's process-group
    leader as the supervisor started it), ``appsinfo/<app>/init-pid`` (PID 1 of the pod's
    PID namespace), ``volumes/<name>`` (``empty`` volumes).
"""
