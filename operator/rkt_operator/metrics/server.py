"""The HTTP endpoint Prometheus scrapes: ``GET <path>`` answers the exposition text, in the
agent's own event loop (aiohttp, which kopf already runs for its liveness endpoint)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from rkt_operator.metrics.exposition import CONTENT_TYPE
from rkt_operator.settings import split_http_endpoint

log = logging.getLogger(__name__)

Render = Callable[[], Awaitable[str]]


class MetricsServer:
    """Serves ``render()`` at ``endpoint`` (``http://host:port/path``; port 0 picks one)."""

    def __init__(self, endpoint: str, render: Render) -> None:
        self.host, self._port, self.path = split_http_endpoint(endpoint)
        self._render = render
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        """The bound port (the chosen one when the endpoint said 0)."""
        return self._port

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(self.path, self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        for address in runner.addresses:  # (host, port, ...) of each bound socket
            if isinstance(address, tuple) and len(address) >= 2:
                self._port = int(address[1])
                break
        log.info("metrics served at http://%s:%d%s", self.host, self._port, self.path)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        del request
        body = await self._render()
        return web.Response(body=body.encode(), headers={"Content-Type": CONTENT_TYPE})


async def start_metrics(endpoint: str, render: Render) -> MetricsServer | None:
    """Serve ``render()`` at ``endpoint`` (empty: not at all). A bind failure (port taken)
    is logged and the agent goes on without metrics."""
    if not endpoint:
        return None
    server = MetricsServer(endpoint, render)
    try:
        await server.start()
    except OSError as exc:
        log.error("metrics endpoint %s not served: %s", endpoint, exc)
        return None
    return server
