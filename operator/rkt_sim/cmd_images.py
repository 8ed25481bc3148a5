"""Image and key commands: ``trust``, ``fetch``, ``image list``, ``image rm``, and the
simulator-only ``sim-import-remote`` that stands in for the network.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from rkt_sim import fetching, gofmt, keys, tables
from rkt_sim.context import Context
from rkt_sim.errors import FlagError, SimError
from rkt_sim.flags import (
    GLOBAL_FLAGS,
    FlagEvent,
    FlagSet,
    Parsed,
    bool_flag,
    str_flag,
)
from rkt_sim.store import ImageStore, StoreError

TRUST_USAGE = (
    "Usage:\n  rkt trust [--prefix=PREFIX] [--insecure-allow-http] [--skip-fingerprint-review] "
    "[--root] [PUBKEY ...]\n"
)
FETCH_USAGE = "Usage:\n  rkt fetch IMAGE_URL...\n"
IMAGE_LIST_USAGE = "Usage:\n  rkt image list [--full] [--no-legend] [--format=json|json-pretty]\n"
IMAGE_RM_USAGE = "Usage:\n  rkt image rm IMAGEID...\n"
REMOTE_USAGE = (
    "Usage:\n  rkt-sim sim-import-remote URL FILE\n\n"
    "Simulator only: import the ACI FILE and record it as the image of the remote URL\n"
    "(docker://..., https://....aci), since the simulator has no network.\n"
)

TRUST_FLAGS = FlagSet(
    (
        *GLOBAL_FLAGS,
        str_flag("prefix", "prefix to limit trust to"),
        bool_flag("root", "add root key from filesystem without a prefix"),
        bool_flag("skip-fingerprint-review", "accept key without fingerprint confirmation"),
        bool_flag("insecure-allow-http", "allow HTTP use for key discovery and/or retrieval"),
    )
)
FETCH_FLAGS = FlagSet(
    (
        *GLOBAL_FLAGS,
        bool_flag("full", "print the full image hash after fetching"),
        str_flag("pull-policy", "when to pull an image: never, new or update"),
        bool_flag("store-only", "deprecated, use --pull-policy=never", hidden=True),
        bool_flag("no-store", "deprecated, use --pull-policy=update", hidden=True),
        str_flag("signature", "local signature file to use in validating the preceding image"),
    )
)
IMAGE_LIST_FLAGS = FlagSet(
    (
        *GLOBAL_FLAGS,
        str_flag(
            "format", "choose the output format, allowed format includes 'json', 'json-pretty'"
        ),
        bool_flag("full", "use long output format"),
        bool_flag("no-legend", "suppress a legend with the list"),
        str_flag("fields", "comma-separated list of fields to display"),
        str_flag(
            "sort", "sort the output according to the provided comma-separated list of fields"
        ),
        str_flag("order", "choose the sorting order if at least one sort field is provided"),
    )
)
IMAGE_RM_FLAGS = FlagSet(GLOBAL_FLAGS)
REMOTE_FLAGS = FlagSet(GLOBAL_FLAGS)


# -- trust ---------------------------------------------------------------------------------------

_IMPLICIT_ROOT = """aborting due to implicit unbounded trust (root domain)
Please provide a specific domain prefix to trust:
    rkt trust --prefix "example.com/foo" [PUBKEY]
    rkt trust --prefix "example.com/foo/*" [PUBKEY]
Otherwise, trust at the root domain (not recommended) must be explicitly requested:
    rkt trust --root PUBKEY"""


def _read_key(location: str, allow_http: bool) -> str:
    scheme = urlsplit(location).scheme
    if scheme == "http" and not allow_http:
        raise SimError("error adding keys: --insecure-allow-http required for http URLs")
    if scheme in ("http", "https"):
        raise SimError(f"error adding keys: rkt-sim is offline: cannot download {location}")
    if scheme:
        raise SimError("error adding keys: only local files and http or https URLs supported")
    try:
        return Path(location).read_bytes().decode("utf-8", "replace")
    except FileNotFoundError:
        raise SimError(f"error adding keys: open {location}: no such file or directory") from None
    except OSError as exc:
        raise SimError(f"error adding keys: read {location}: {exc.strerror or exc}") from None


def _review(ctx: Context) -> bool:
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise SimError(
            "error adding keys: unable to ask user to review fingerprint due to lack of tty"
        )
    while True:
        sys.stdout.write("Are you sure you want to trust this key (yes/no)?\n")
        sys.stdout.flush()
        answer = sys.stdin.readline()
        if answer == "yes\n":
            return True
        if answer == "no\n" or not answer:
            return False
        ctx.out("Please enter 'yes' or 'no'")


def run_trust(ctx: Context, parsed: Parsed) -> int:
    prefix = parsed.last("prefix") or ""
    root = parsed.boolean("root")
    if not prefix and not root:
        if parsed.positionals:
            raise SimError(_IMPLICIT_ROOT)
        raise SimError(usage=True)
    if prefix and root:
        raise SimError("--root and --prefix usage mutually exclusive")
    scheme = urlsplit(prefix).scheme if "://" in prefix else ""
    if scheme:
        raise SimError(f"--prefix must not contain a URL scheme, omit {scheme}://")
    if not parsed.positionals:
        raise SimError(
            f"error determining key location: prefix meta discovery error: "
            f'rkt-sim is offline: cannot discover keys for "{prefix}"'
        )
    for location in parsed.positionals:
        armored = _read_key(location, parsed.boolean("insecure-allow-http"))
        try:
            ring = keys.read_armored_keyring(armored)
        except keys.TrustError as exc:
            raise SimError(f"error adding keys: {exc}") from None
        sys.stderr.write(f'pubkey: prefix: "{prefix}"\nkey: "{location}"\n')
        for key in ring:
            ctx.out(f"gpg key fingerprint is: {keys.format_fingerprint(key.fingerprint)}")
            for sub in key.subkeys:
                ctx.out(f"    Subkey fingerprint: {keys.format_fingerprint(sub)}")
            for identity in key.identities:
                ctx.out(f"\t{identity}")
        trusting = f"Trusting {gofmt.quote(location)} for prefix {gofmt.quote(prefix)}"
        if parsed.boolean("skip-fingerprint-review"):
            ctx.out(f"{trusting} without fingerprint review.")
        elif _review(ctx):
            ctx.out(f"{trusting} after fingerprint review.")
        else:
            ctx.out(f"Not trusting {gofmt.quote(location)}")
            continue
        try:
            path = keys.store_key(ctx.local_config, prefix, armored, ring[0].hex)
        except OSError as exc:
            raise SimError(f"error adding keys: {exc}") from None
        if prefix:
            ctx.out(f"Added key for prefix {gofmt.quote(prefix)} at {gofmt.quote(str(path))}")
        else:
            ctx.out(f"Added root key at {gofmt.quote(str(path))}")
    return 0


# -- fetch ---------------------------------------------------------------------------------------


@dataclass
class FetchArgs:
    """Images in order, each with the ``--signature`` that followed it (as rkt parses it)."""

    images: list[tuple[str, str | None]] = field(default_factory=list)
    events: list[FlagEvent] = field(default_factory=list)


def parse_fetch(argv: Sequence[str]) -> FetchArgs:
    args = FetchArgs()
    index = 0
    while index < len(argv):
        if argv[index] == "--":
            raise SimError("unable to parse arguments: app arguments unsupported")
        event, nxt = FETCH_FLAGS.take_one(argv, index)
        if event is None:
            args.images.append((argv[index], None))
            index += 1
            continue
        if event.flag.name == "signature":
            if not args.images:
                raise FlagError(
                    f'invalid argument "{event.value}" for "--signature" flag: '
                    "--signature must follow an image"
                )
            args.images[-1] = (args.images[-1][0], event.value)
        args.events.append(event)
        index = nxt
    return args


def _last(events: list[FlagEvent], name: str) -> str | None:
    value = None
    for event in events:
        if event.flag.name == name:
            value = event.value
    return value


def run_fetch(ctx: Context, args: FetchArgs) -> int:
    if not args.images:
        raise SimError("must provide at least one image")
    policy = _last(args.events, "pull-policy") or "update"
    if _last(args.events, "store-only") in ("true", "1", "t", "T", "TRUE", "True"):
        policy = "never"
    if policy not in ("never", "new", "update"):
        raise SimError(f'unknown pull policy "{policy}": must be one of never, new or update')
    full = _last(args.events, "full") in ("true", "1", "t", "T", "TRUE", "True")
    store = ImageStore(ctx.data_dir)
    for ref, signature in args.images:
        try:
            key = fetching.resolve(ctx, store, ref, signature=signature, pull_policy=policy)
        except fetching.FetchError as exc:
            raise SimError(str(exc)) from None
        ctx.out(key if full else key[: len("sha512-") + 32])
    return 0


# -- image list / rm -----------------------------------------------------------------------------

_FIELDS = {
    "id": "ID",
    "name": "NAME",
    "size": "SIZE",
    "importtime": "IMPORT TIME",
    "lastused": "LAST USED",
}


def run_image_list(ctx: Context, parsed: Parsed) -> int:
    fmt = parsed.last("format", "") or ""
    if fmt not in ("", "json", "json-pretty"):
        raise SimError(f"Invalid format option: {fmt}", cobra=True)
    store = ImageStore(ctx.data_dir)
    images = sorted(store.images(), key=lambda i: (i.import_time, i.key))
    if (parsed.last("order") or "asc") == "desc":
        images.reverse()
    if fmt:
        value = [
            {
                "id": i.key,
                "name": f"{i.name}:{i.label('version')}" if i.label("version") else i.name,
                "import_time": i.import_time,
                "last_used_time": i.last_used,
                "size": i.size,
            }
            for i in images
        ] or None
        ctx.out(gofmt.dumps(value) if fmt == "json" else gofmt.dumps_indent(value))
        return 0
    full = parsed.boolean("full")
    fields = (parsed.last("fields") or "id,name,size,importtime,lastused").split(",")
    unknown = [f for f in fields if f not in _FIELDS]
    if unknown:
        raise SimError(f'unknown field "{unknown[0]}"')
    rows: list[list[str]] = [] if parsed.boolean("no-legend") else [[_FIELDS[f] for f in fields]]
    for image in images:
        cells = {
            "id": image.key if full else image.key[:19],
            "name": f"{image.name}:{image.label('version')}"
            if image.label("version")
            else image.name,
            "size": str(image.size) if full else tables.humanize_iec(image.size),
            "importtime": gofmt.format_time(image.import_time)
            if full
            else tables.humanize_ago(image.import_time),
            "lastused": gofmt.format_time(image.last_used)
            if full
            else tables.humanize_ago(image.last_used),
        }
        rows.append([cells[f] for f in fields])
    for line in tables.tabwrite(rows):
        ctx.out(line)
    return 0


def run_image_rm(ctx: Context, parsed: Parsed) -> int:
    if not parsed.positionals:
        raise SimError("at least one image ID must be specified")
    store = ImageStore(ctx.data_dir)
    removed = failed = 0
    for ref in parsed.positionals:
        try:
            if ref.startswith("sha512-"):
                key = store.by_id_prefix(ref)
            else:
                name, labels = fetching.parse_name(ref)
                found = store.by_name(name, labels)
                if found is None:
                    raise StoreError(f'no image found for "{ref}"')
                key = found
        except (StoreError, fetching.FetchError) as exc:
            ctx.err(f'error getting image ID for "{ref}": {exc}')
            failed += 1
            continue
        store.remove(key)
        ctx.out(f"successfully removed aci for image: {gofmt.quote(key)}")
        removed += 1
    if removed:
        ctx.err(f"{removed} image(s) successfully removed")
    if failed:
        ctx.err(f"{failed} image(s) cannot be removed")
        return 254
    return 0


def run_import_remote(ctx: Context, parsed: Parsed) -> int:
    if len(parsed.positionals) != 2:
        raise SimError(usage=True)
    url, path = parsed.positionals
    if fetching.classify(url) == "docker":
        url = fetching.docker_url(url)
    elif fetching.classify(url) != "http":
        raise SimError(
            f'"{url}" is not a remote image reference (docker://... or http(s)://....aci)'
        )
    try:
        data = Path(path).read_bytes()
        key = ImageStore(ctx.data_dir).import_bytes(data, remote=url)
    except (OSError, StoreError) as exc:
        raise SimError(str(exc)) from None
    ctx.out(key)
    return 0
