"""Masking the second journald unit of rkt's host stage1 in a prepared pod, on pod
directories laid out like rkt 1.30's (the effect on a real pod: tests/executor/
test_executor_real_rkt.py::test_a_host_stage1_pod_boots_one_journald_and_runs_its_app)."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from rkt_operator.executor import stage1quirks

UUID = "0306ffce-d383-4768-882c-bad79f033cf1"
TREE = "deps-sha512-59f56ac9962b3c2a5bfa9b1fb083f1cb1bcaa3535dd94b09714fce73dcaae0f1"
UNIT = Path("etc/systemd/system/systemd-journal-flush.service")


def _image(rkt_dir: Path, flavor: str | None) -> Path:
    root = rkt_dir / "cas" / "tree" / TREE / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc").chmod(0o751)
    if flavor is not None:
        (root / "flavor").symlink_to(flavor)
    return root


def _prepared(rkt_dir: Path, *, overlay: bool, flavor: str | None = "host") -> Path:
    pod = rkt_dir / "pods" / "prepared" / UUID
    pod.mkdir(parents=True)
    (pod / "stage1TreeStoreID").write_text(TREE)
    if overlay:
        (pod / "overlay-prepared").touch()
        _image(rkt_dir, flavor)
        return pod / "overlay" / TREE / "upper"
    root = pod / "stage1" / "rootfs"
    (root / "etc").mkdir(parents=True)
    if flavor is not None:
        (root / "flavor").symlink_to(flavor)
    return root


def test_an_overlay_pod_gets_the_mask_in_its_upper_directory(tmp_path: Path) -> None:
    upper = _prepared(tmp_path, overlay=True)
    mask = stage1quirks.mask_duplicate_journald(tmp_path, UUID)
    assert mask == upper / UNIT
    assert os.readlink(mask) == "/dev/null"
    # The directories run-prepared would make get rkt's mode; those the pod sees, the image's.
    pod = tmp_path / "pods" / "prepared" / UUID
    assert stat.S_IMODE((pod / "overlay").stat().st_mode) == 0o750
    assert stat.S_IMODE((upper / "etc").stat().st_mode) == 0o751
    assert stat.S_IMODE((upper / "etc" / "systemd").stat().st_mode) == 0o755
    # Once only: a second launch of the same pod finds it there.
    assert stage1quirks.mask_duplicate_journald(tmp_path, UUID) is None
    assert os.readlink(mask) == "/dev/null"


def test_a_pod_without_overlay_gets_the_mask_in_its_own_copy(tmp_path: Path) -> None:
    root = _prepared(tmp_path, overlay=False)
    assert stage1quirks.mask_duplicate_journald(tmp_path, UUID) == root / UNIT
    assert os.readlink(root / UNIT) == "/dev/null"


@pytest.mark.parametrize("flavor", ["fly", "coreos", "kvm", None])
def test_other_flavors_are_left_alone(tmp_path: Path, flavor: str | None) -> None:
    _prepared(tmp_path, overlay=True, flavor=flavor)
    assert stage1quirks.mask_duplicate_journald(tmp_path, UUID) is None
    assert not (tmp_path / "pods" / "prepared" / UUID / "overlay").exists()


def test_something_already_at_the_path_is_kept(tmp_path: Path) -> None:
    root = _prepared(tmp_path, overlay=False)
    (root / UNIT).parent.mkdir(parents=True)
    (root / UNIT).write_text("[Unit]\n")
    assert stage1quirks.mask_duplicate_journald(tmp_path, UUID) is None
    assert (root / UNIT).read_text() == "[Unit]\n"


def test_no_prepared_pod_or_an_odd_tree_id_is_not_followed(tmp_path: Path) -> None:
    assert stage1quirks.mask_duplicate_journald(tmp_path, UUID) is None  # no such pod
    _prepared(tmp_path, overlay=True)
    pod = tmp_path / "pods" / "prepared" / UUID
    (pod / "stage1TreeStoreID").write_text("../../../../etc")
    assert stage1quirks.mask_duplicate_journald(tmp_path, UUID) is None
    assert not (pod / "overlay").exists()


def test_a_mask_that_cannot_be_written_is_logged_and_the_launch_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = _prepared(tmp_path, overlay=False)
    (root / "etc" / "systemd").write_text("not a directory")
    with caplog.at_level(logging.WARNING, logger="rkt_operator.executor.stage1quirks"):
        assert stage1quirks.mask_duplicate_journald(tmp_path, UUID) is None
    assert "cannot mask the duplicate journald unit" in caplog.text
