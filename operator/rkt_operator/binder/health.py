"""The binder's liveness endpoint: ``GET <path>`` answers 200 while the main loop is alive
(it ticks at least every resync period, and once per task within a cycle), 503 once it has
not ticked for ``stale_after`` seconds, so the kubelet restarts a binder whose loop hangs.
Leadership is not part of it: a healthy standby is alive too."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)


def alive(last_tick: float, now: float, stale_after: float) -> bool:
    """Whether a loop that last ticked at ``last_tick`` counts as alive at ``now``."""
    return now - last_tick < stale_after


class HealthServer:
    """A small HTTP server on its own thread."""

    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        *,
        last_tick: Callable[[], float],
        stale_after: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != path:
                    self.send_error(404)
                    return
                ok = alive(last_tick(), clock(), stale_after)
                body = b"ok\n" if ok else b"binder loop stalled\n"
                self.send_response(200 if ok else 503)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return  # probes every few seconds would flood the log

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health", daemon=True
        )

    def start(self) -> HealthServer:
        self._thread.start()
        log.info("health endpoint listening port=%d", self.port)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
