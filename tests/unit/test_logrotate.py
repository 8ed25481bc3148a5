"""Log rotation by copy-then-truncate (``executor.logrotate``) and reading rotated streams
(``executor.logread``), on real files in a temporary directory."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from rkt_operator.executor import files, launcher, logread, logrotate
from rkt_operator.executor.logrotate import LogLimits

UUID = "5d3c2b1a-9e8f-4a7b-8c6d-0e1f2a3b4c5d"
OTHER = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


def current(tmp_path: Path, stream: str = "stdout", uuid: str = UUID) -> Path:
    return logrotate.current_file(tmp_path, uuid, stream)


def stream_names(tmp_path: Path, uuid: str = UUID, stream: str = "stdout") -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(f"{uuid}.{stream}."))


def read_all(tmp_path: Path, stream: str = "stdout") -> bytes:
    pieces = logread.Follower(tmp_path, UUID, stream).snapshot()
    return b"".join(logread.chunks(pieces))


def test_names() -> None:
    assert logrotate.parse_name(f"{UUID}.stdout.0") == (UUID, "stdout", 0)
    assert logrotate.parse_name(f"{UUID}.stderr.12") == (UUID, "stderr", 12)
    for name in (f"{UUID}.stdout.01", f"{UUID}.stdout", f"{UUID}.other.1", f".{UUID}.stdout.1"):
        assert logrotate.parse_name(name) is None
    assert files.log_files(Path("/t"), UUID) == (
        Path(f"/t/alloc/logs/{UUID}.stdout.0"),
        Path(f"/t/alloc/logs/{UUID}.stderr.0"),
    )


def test_limits_round_trip_and_refuse_nonsense(tmp_path: Path) -> None:
    path = files.log_limits_file(tmp_path, UUID)
    assert files.read_log_limits(path) is None
    files.write_log_limits(path, LogLimits(3, 4096))
    assert files.read_log_limits(path) == LogLimits(3, 4096)
    for bad in ({"max_files": 0, "max_file_bytes": 1}, {"max_files": True, "max_file_bytes": 1},
                {"max_files": 2, "max_file_bytes": "1"}, {"max_files": 2}):  # fmt: skip
        assert LogLimits.from_mapping(bad) is None
    path.write_text("not json")
    assert files.read_log_limits(path) is None
    assert path in files.pod_files(tmp_path, UUID)  # removed with the pod


def test_not_due_below_the_size(tmp_path: Path) -> None:
    path = current(tmp_path)
    assert not logrotate.rotate(path, LogLimits(3, 10))  # no file yet
    path.write_bytes(b"123456789")
    assert not logrotate.due(path, LogLimits(3, 10))
    assert not logrotate.rotate(path, LogLimits(3, 10))
    assert stream_names(tmp_path) == [f"{UUID}.stdout.0"]
    path.write_bytes(b"1234567890")
    assert logrotate.due(path, LogLimits(3, 10))


def test_rotations_shift_up_and_keep_at_most_max_files(tmp_path: Path) -> None:
    path = current(tmp_path)
    limits = LogLimits(max_files=3, max_file_bytes=4)
    for n in range(1, 6):
        path.write_bytes(f"gen{n}\n".encode())
        assert logrotate.rotate(path, limits)
        assert path.read_bytes() == b""
    path.write_bytes(b"now\n")
    assert stream_names(tmp_path) == [f"{UUID}.stdout.0", f"{UUID}.stdout.1", f"{UUID}.stdout.2"]
    assert (tmp_path / f"{UUID}.stdout.1").read_bytes() == b"gen5\n"  # newest rotated
    assert (tmp_path / f"{UUID}.stdout.2").read_bytes() == b"gen4\n"
    assert read_all(tmp_path) == b"gen4\ngen5\nnow\n"
    # The other stream and other pods are left alone.
    assert not current(tmp_path, "stderr").exists()


def test_one_file_means_truncate_only(tmp_path: Path) -> None:
    path = current(tmp_path)
    (tmp_path / f"{UUID}.stdout.1").write_bytes(b"left over from a larger limit\n")
    path.write_bytes(b"x" * 100)
    assert logrotate.rotate(path, LogLimits(1, 50))
    assert stream_names(tmp_path) == [f"{UUID}.stdout.0"]
    assert path.read_bytes() == b""


def test_open_append_writer_keeps_writing_into_the_truncated_file(tmp_path: Path) -> None:
    path = current(tmp_path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, b"a" * 5000 + b"\n")
        assert logrotate.rotate(path, LogLimits(2, 4096))
        os.write(fd, b"after\n")
    finally:
        os.close(fd)
    # No hole of the old size: the append landed at offset 0 of the truncated file.
    assert path.read_bytes() == b"after\n"
    assert (tmp_path / f"{UUID}.stdout.1").read_bytes() == b"a" * 5000 + b"\n"
    assert (tmp_path / f"{UUID}.stdout.1").stat().st_mode & 0o777 == path.stat().st_mode & 0o777


def test_prune_after_the_limit_was_lowered(tmp_path: Path) -> None:
    path = current(tmp_path)
    for index in range(1, 6):
        (tmp_path / f"{UUID}.stdout.{index}").write_bytes(b"old\n")
    path.write_bytes(b"now\n")
    assert logrotate.prune(path, 2) == 4
    assert stream_names(tmp_path) == [f"{UUID}.stdout.0", f"{UUID}.stdout.1"]


def test_a_rotation_in_progress_elsewhere_is_not_joined(tmp_path: Path) -> None:
    path = current(tmp_path)
    path.write_bytes(b"x" * 100)
    holder = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        assert not logrotate.rotate(path, LogLimits(3, 10))
        assert logrotate.prune(path, 1) == 0
    finally:
        os.close(holder)
    assert logrotate.rotate(path, LogLimits(3, 10))


def test_symbolic_links_planted_by_the_app_are_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"host file\n" * 100)
    logs = tmp_path / "logs"
    logs.mkdir()
    # The current file replaced by a link: never due, never truncated through the link.
    current(logs).symlink_to(secret)
    assert not logrotate.due(current(logs), LogLimits(2, 1))
    assert not logrotate.rotate(current(logs), LogLimits(2, 1))
    # A link where the temporary copy goes: replaced, not written through.
    err = current(logs, "stderr")
    err.write_bytes(b"e" * 10)
    (logs / f".{UUID}.stderr.rotating").symlink_to(secret)
    assert logrotate.rotate(err, LogLimits(2, 5))
    assert secret.read_bytes() == b"host file\n" * 100
    assert (logs / f"{UUID}.stderr.1").read_bytes() == b"e" * 10
    # The logs directory itself replaced by a link.
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    current(moved).write_bytes(b"z" * 10)
    linked = tmp_path / "linked"
    linked.symlink_to(moved)
    with pytest.raises(OSError):
        logrotate.rotate(current(linked), LogLimits(2, 5))
    assert current(moved).read_bytes() == b"z" * 10


def test_forget_pods_keeps_the_previous_pod(tmp_path: Path) -> None:
    third = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"
    for age, uuid in enumerate((third, OTHER)):  # OTHER written last: the previous pod
        for name in (f"{uuid}.stdout.0", f"{uuid}.stderr.0", f"{uuid}.stdout.1"):
            (tmp_path / name).write_bytes(b"x")
            os.utime(tmp_path / name, (1000 + age, 1000 + age))
    (tmp_path / f".{third}.stdout.rotating").write_bytes(b"x")
    (tmp_path / "unrelated.txt").write_bytes(b"x")
    assert logrotate.forget_pods(tmp_path, UUID) == [third]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(
        [f"{OTHER}.stdout.0", f"{OTHER}.stderr.0", f"{OTHER}.stdout.1", "unrelated.txt"]
    )
    assert logrotate.forget_pods(tmp_path, UUID, previous=0) == [OTHER]
    assert logrotate.forget_pods(tmp_path / "missing", UUID) == []


def test_tail_reads_lines_across_files(tmp_path: Path) -> None:
    (tmp_path / f"{UUID}.stdout.2").write_bytes(b"one\ntwo\n")
    (tmp_path / f"{UUID}.stdout.1").write_bytes(b"three\nfour\n")
    current(tmp_path).write_bytes(b"five\nsix")  # no final newline yet

    def tail(lines: int) -> bytes:
        return logread.tail(logread.Follower(tmp_path, UUID, "stdout").snapshot(), lines)

    assert tail(1) == b"six"
    assert tail(3) == b"four\nfive\nsix"
    assert tail(100) == b"one\ntwo\nthree\nfour\nfive\nsix"
    assert tail(0) == b""
    current(tmp_path).write_bytes(b"")
    assert tail(2) == b"three\nfour\n"


def test_follower_continues_across_rotations(tmp_path: Path) -> None:
    path = current(tmp_path)
    limits = LogLimits(max_files=4, max_file_bytes=1)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, b"first\n")
        follower = logread.Follower(tmp_path, UUID, "stdout")
        assert b"".join(logread.chunks(follower.snapshot())) == b"first\n"
        os.write(fd, b"second\n")
        assert b"".join(logread.chunks(follower.poll())) == b"second\n"
        assert b"".join(logread.chunks(follower.poll())) == b""
        # One rotation: the rest of the rotated copy, then the new current file.
        os.write(fd, b"third\n")
        assert logrotate.rotate(path, limits)
        os.write(fd, b"fourth\n")
        assert b"".join(logread.chunks(follower.poll())) == b"third\nfourth\n"
        # Two rotations between two looks.
        os.write(fd, b"fifth\n")
        assert logrotate.rotate(path, limits)
        os.write(fd, b"sixth\n")
        assert logrotate.rotate(path, limits)
        os.write(fd, b"seventh\n")
        assert b"".join(logread.chunks(follower.poll())) == b"fifth\nsixth\nseventh\n"
    finally:
        os.close(fd)


def test_follower_with_a_single_file_restarts_at_the_truncation(tmp_path: Path) -> None:
    path = current(tmp_path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, b"a long first line\n")
        follower = logread.Follower(tmp_path, UUID, "stdout")
        assert b"".join(logread.chunks(follower.snapshot())) == b"a long first line\n"
        assert logrotate.rotate(path, LogLimits(1, 1))
        os.write(fd, b"new\n")
        assert b"".join(logread.chunks(follower.poll())) == b"new\n"
    finally:
        os.close(fd)


def test_launch_argv_carries_the_log_files(tmp_path: Path) -> None:
    shim = launcher.shim_argv(["rkt", "run-prepared", UUID], tmp_path, UUID)
    assert f"--stdout={tmp_path}/alloc/logs/{UUID}.stdout.0" in shim
    assert f"--log-limits={tmp_path}/{UUID}.logs.json" in shim
    unit = launcher.systemd_run_argv(
        ["rkt"], UUID, workdir=tmp_path, path_env=None, logs=files.log_files(tmp_path, UUID)
    )
    stdout, stderr = files.log_files(tmp_path, UUID)
    assert unit[unit.index(f"StandardOutput=append:{stdout}") - 1] == "-p"
    assert unit[unit.index(f"StandardError=append:{stderr}") - 1] == "-p"
    assert unit[-2:] == ["--", "rkt"]


def test_since_keeps_the_files_written_after_the_cutoff(tmp_path: Path) -> None:
    (tmp_path / f"{UUID}.stdout.1").write_bytes(b"old\n")
    os.utime(tmp_path / f"{UUID}.stdout.1", (1000, 1000))
    current(tmp_path).write_bytes(b"new\n")
    pieces = logread.Follower(tmp_path, UUID, "stdout").snapshot()
    assert b"".join(logread.chunks(logread.since(pieces, 2000))) == b"new\n"
    pieces = logread.Follower(tmp_path, UUID, "stdout").snapshot()
    assert b"".join(logread.chunks(logread.since(pieces, 0))) == b"old\nnew\n"


def test_pods_by_recency_newest_first(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for directory, uuid, when in ((first, OTHER, 1000), (second, UUID, 3000), (first, UUID, 2000)):
        directory.mkdir(exist_ok=True)
        path = directory / f"{uuid}.stdout.0"
        path.write_bytes(b"x")
        os.utime(path, (when, when))
    assert logread.pods_by_recency([first, second, tmp_path / "missing"]) == [
        (second, UUID),
        (first, UUID),
        (first, OTHER),
    ]
    assert logread.newest_pod([first]) == (first, UUID)
    assert logread.newest_pod([]) is None


def test_since_lines_cuts_at_real_rkts_console_stamps(tmp_path: Path) -> None:
    """Real rkt's host stage1 stamps each console line with CLOCK_MONOTONIC seconds: the cut
    falls after the last line stamped before the cutoff, across files, and lines without a
    stamp go with their stamped neighbours."""
    now, uptime = 50_000.0, 1_000.0  # booted at wall time 49 000
    old = f"{UUID}.stdout.1"
    (tmp_path / old).write_bytes(
        b"[  100.000000] app[7]: one\n[  200.500000] app[7]: two\n-- unstamped --\n"
    )
    current(tmp_path).write_bytes(
        b"[  300.000000] app[7]: three\nstage1 says hello\n[  950.250000] app[7]: four\n"
        b"[  999.000000] app[7]: five\n"
    )
    for path in (tmp_path / old, current(tmp_path)):
        os.utime(path, (now - 1, now - 1))

    def cut(seconds: float) -> bytes:
        pieces = logread.Follower(tmp_path, UUID, "stdout").snapshot()
        kept = logread.since_lines(pieces, now - seconds, now=now, uptime=uptime)
        return b"".join(logread.chunks(kept))

    assert cut(30) == b"[  999.000000] app[7]: five\n"  # after 970 on the monotonic clock
    # stage1's unstamped line is after 300 and before 950.25: nothing places it before the
    # cutoff (940), so it is kept.
    assert (
        cut(60) == b"stage1 says hello\n[  950.250000] app[7]: four\n[  999.000000] app[7]: five\n"
    )
    # Cut within the rotated file: the unstamped line after "two" comes with what follows.
    assert cut(790).startswith(b"-- unstamped --\n[  300.000000] app[7]: three\nstage1 says")
    assert cut(2000).startswith(b"[  100.000000] app[7]: one\n")  # nothing placed before it
    assert cut(0.5) == b""  # the newest line is older than that
    # Unstamped lines (rkt-sim's) only: a file is in or out whole, as `since` decides.
    current(tmp_path).write_bytes(b"plain\nlines\n")
    os.utime(current(tmp_path), (now - 1, now - 1))
    assert cut(30).endswith(b"plain\nlines\n")
    # A file from before this boot: its stamps count from another start, so it is not cut.
    os.utime(current(tmp_path), (now - 2000, now - 2000))
    os.utime(tmp_path / old, (now - 1, now - 1))
    pieces = logread.Follower(tmp_path, UUID, "stdout").snapshot()
    kept = logread.since_lines(pieces, now - 5000, now=now, uptime=uptime)
    assert b"".join(logread.chunks(kept)).startswith(b"[  100.000000] app[7]: one\n")
