"""The binder's liveness endpoint: 200 while the main loop ticks, 503 once it has stalled,
404 elsewhere; served on a real loopback socket."""

from __future__ import annotations

import urllib.error
import urllib.request

from rkt_operator.binder.health import HealthServer, alive


def test_alive_until_stale() -> None:
    assert alive(100.0, 100.0, 60.0)
    assert alive(100.0, 159.9, 60.0)
    assert not alive(100.0, 160.0, 60.0)


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_endpoint_reports_the_loop_heartbeat() -> None:
    now = [1000.0]
    tick = [1000.0]
    server = HealthServer(
        "127.0.0.1", 0, "/healthz", last_tick=lambda: tick[0], stale_after=60.0,
        clock=lambda: now[0],
    ).start()  # fmt: skip
    try:
        assert _get(server.port, "/healthz") == (200, "ok\n")
        now[0] = 1061.0  # the loop has not ticked for 61 s
        assert _get(server.port, "/healthz") == (503, "binder loop stalled\n")
        tick[0] = 1060.5  # it ticks again
        assert _get(server.port, "/healthz")[0] == 200
        assert _get(server.port, "/metrics")[0] == 404
    finally:
        server.stop()
