"""A defect of rkt's ``host`` stage1 that the agent works around before each launch.

rkt 1.30.0's host flavor copies the host's systemd units into the pod when it runs it
(``installAssets`` in ``stage1/init/init.go``): with systemd 233 or later it installs the
host's ``systemd-journald.service`` a second time, under the name
``systemd-journal-flush.service``, and wants that unit from ``default.target``. Every pod
then boots two journald daemons at once on the same sockets and runtime journal. Most of
the time both come up (the second finds the first one's journal file "corrupted or
uncleanly shut down" and replaces it); sometimes ``systemd-journald.service`` exits with
status 1. The app's ``prepare-app@`` unit requires journald, so the app's start job fails
with result ``dependency``, the app unit's ``OnFailure=halt.target`` halts the pod, and
the reaper records the exit status of an app that never ran: 0. The pod ends a few seconds
after it started, ``rkt status`` says ``app-<name>=0``, and nothing outside the pod stopped
it (measured: about 1 pod in 50 with 10 pods started together on a 2-core host).

The unit never flushes anything (it runs journald, not ``journalctl --flush``), so masking
it loses nothing: the agent writes ``/etc/systemd/system/systemd-journal-flush.service ->
/dev/null`` into the stage1 root of a prepared pod of the host flavor, where the pod's
systemd looks first. With overlay (the default) that is the overlay's upper directory
(``pods/prepared/<uuid>/overlay/<stage1TreeStoreID>/upper``: ``run-prepared`` creates it
with ``MkdirAll`` if missing, and mounts it over the stage1 image; the directories made here
take the modes rkt would give them, or the image's, since an upper directory's attributes
are what the pod sees); with ``--no-overlay`` it is the pod's own copy
(``pods/prepared/<uuid>/stage1/rootfs``). Other flavors (fly has no systemd; coreos and kvm
ship their own units) are left alone, as is a pod whose stage1 root already has something
at that path. Filesystem only: no process is started.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DUPLICATE_UNIT = "systemd-journal-flush.service"
_UNIT_DIR = Path("etc", "systemd", "system")
_TREE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")


_RKT_DIR_MODE = 0o750  # rkt's DefaultRegularDirPerm, for the overlay's own directories


@dataclass(frozen=True)
class Stage1Roots:
    """Where a prepared pod's stage1 root comes from and where to write into it."""

    image: Path  # the stage1 root as rkt's image holds it (read only)
    writable: Path  # the directory whose files the pod's stage1 root shows
    made_by_run: tuple[Path, ...]  # directories run-prepared makes (overlay only), outermost first


def stage1_roots(rkt_dir: Path, uuid: str) -> Stage1Roots | None:
    """The stage1 roots of a prepared pod; None when the pod directory does not look like
    rkt's (an unexpected tree store ID is not followed)."""
    pod = rkt_dir / "pods" / "prepared" / uuid
    if not (pod / "overlay-prepared").exists():
        root = pod / "stage1" / "rootfs"
        return Stage1Roots(root, root, ()) if root.is_dir() else None
    try:
        tree = (pod / "stage1TreeStoreID").read_text(errors="replace").strip()
    except OSError:
        return None
    if not _TREE_ID.fullmatch(tree) or ".." in tree:
        return None
    image = rkt_dir / "cas" / "tree" / tree / "rootfs"
    if not image.is_dir():
        return None
    overlay = pod / "overlay"
    return Stage1Roots(image, overlay / tree / "upper", (overlay, overlay / tree))


def flavor(stage1_root: Path) -> str | None:
    """The stage1 flavor an image names in its ``/flavor`` (a symlink to it, or a file)."""
    marker = stage1_root / "flavor"
    try:
        return os.readlink(marker)
    except OSError:
        pass
    try:
        return marker.read_text(errors="replace").strip()[:32] or None
    except OSError:
        return None


def _mkdir(path: Path, like: Path | None, mode: int = 0o755) -> None:
    """Make ``path`` (if missing) with the mode and owner of ``like`` when that exists,
    else ``mode`` and root; set explicitly, so nothing is inherited (rkt's pod directories
    may carry the set-group-ID bit)."""
    try:
        path.mkdir()
    except FileExistsError:
        return
    uid = gid = 0
    if like is not None:
        try:
            info = os.stat(like)
        except OSError:
            pass
        else:
            mode, uid, gid = info.st_mode & 0o7777, info.st_uid, info.st_gid
    os.chown(path, uid, gid)
    os.chmod(path, mode)


def mask_duplicate_journald(rkt_dir: Path, uuid: str) -> Path | None:
    """Mask the second journald unit of a prepared host-flavor pod (see the module's
    docstring). Returns the mask written, or None (not a host-flavor pod, already masked
    or something already there, or it could not be written: logged, the launch goes on)."""
    roots = stage1_roots(rkt_dir, uuid)
    if roots is None or flavor(roots.image) != "host":
        return None
    mask = roots.writable / _UNIT_DIR / DUPLICATE_UNIT
    try:
        for made in roots.made_by_run:
            _mkdir(made, None, _RKT_DIR_MODE)
        _mkdir(roots.writable, roots.image)
        for depth in range(1, len(_UNIT_DIR.parts) + 1):
            part = Path(*_UNIT_DIR.parts[:depth])
            _mkdir(roots.writable / part, roots.image / part)
        os.symlink("/dev/null", mask)
    except FileExistsError:
        return None
    except OSError as exc:
        log.warning(
            "cannot mask the duplicate journald unit of pod uuid=%s: %s (the pod may halt "
            "itself at boot; see executor.stage1quirks)",
            uuid,
            exc.strerror or exc,
        )
        return None
    log.debug("masked the duplicate journald unit uuid=%s path=%s", uuid, mask)
    return mask
