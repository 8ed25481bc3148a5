"""``kubectl rkt``'s runner (``plugin.main``) with a stand-in for kubectl: what it gives
kubectl as input for ``exec -i`` (frames, then the end-of-input frame, the pipe held open)."""

from __future__ import annotations

import subprocess
import sys

# The plugin's attach, run on this input, in front of a "kubectl" that decodes its input as the
# node command does (--stdin-frames), says what came and whether its input was still open
# after the end-of-input frame, and exits 3.
PLUGIN = """
import sys
from rkt_operator.plugin import main
sys.exit(main.attach([sys.executable, "-c", sys.argv[1]], frame_input=True))
"""
KUBECTL = """
import os, select, sys
from rkt_operator.rkt import attached
frames, got = attached.Frames(), []
while not got or got[-1] != b"":
    data = os.read(0, 65536)
    assert data, "input ended before its end-of-input frame"
    got += frames.feed(data)
ready, _, _ = select.select([0], [], [], 0.5)
still_open = not ready or os.read(0, 1) != b""
sys.stdout.write(repr((b"".join(got), still_open)))
sys.exit(3)
"""


def test_exec_i_sends_the_input_in_frames_and_holds_kubectls_input_open() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PLUGIN, KUBECTL], input=b"typed\x00bytes\n" * 5000,
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr.decode()
    assert done.stdout.decode() == repr((b"typed\x00bytes\n" * 5000, True))
