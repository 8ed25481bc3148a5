"""The node harness's reading of /proc/self/mountinfo (pure functions, sample texts)."""

from __future__ import annotations

from pathlib import Path

from rkt_devkit.hoststate import mounts_under, root_propagation

PRIVATE = """\
22 1 254:0 / / rw,relatime - ext4 /dev/vda rw
23 22 0:5 / /dev rw,nosuid shared:2 - devtmpfs udev rw
"""
SHARED = """\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
"""
SLAVE = """\
22 1 254:0 / / rw,relatime master:7 - ext4 /dev/vda rw
"""
NESTED = """\
22 1 254:0 / / rw - ext4 /dev/vda rw
40 22 0:50 / /var/tmp/node-x/containerd/state/sandboxes/a/shm rw - tmpfs shm rw
41 22 0:51 / /var/tmp/node-x/kubelet/pods/p/volumes/kube-api-access rw - tmpfs tmpfs rw
42 41 0:52 / /var/tmp/node-x/kubelet/pods/p/volumes/kube-api-access/sub rw - tmpfs tmpfs rw
43 22 0:53 / /var/tmp/node-xy rw - tmpfs tmpfs rw
44 22 0:54 / /var/tmp/node-x rw - tmpfs tmpfs rw
45 22 0:55 / /var/tmp/with\\040space rw - tmpfs tmpfs rw
"""


def test_root_propagation_reads_the_optional_fields_of_the_root_mount() -> None:
    assert root_propagation(PRIVATE) == "private"
    assert root_propagation(SHARED) == "shared"
    assert root_propagation(SLAVE) == "slave"


def test_mounts_under_are_deepest_first_and_exclude_siblings_with_a_common_prefix() -> None:
    found = mounts_under([Path("/var/tmp/node-x")], NESTED)
    assert found[0] == Path("/var/tmp/node-x/kubelet/pods/p/volumes/kube-api-access/sub")
    assert found[-1] == Path("/var/tmp/node-x")
    assert Path("/var/tmp/node-xy") not in found
    assert len(found) == 4
    assert mounts_under([Path("/var/tmp/with space")], NESTED) == [Path("/var/tmp/with space")]
