"""The HTTP endpoint Prometheus scrapes: ``GET <path>`` answers the exposition text, in the
agent's own event loop (aiohttp, which kopf already runs for its liveness endpoint)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from rkt_operator.httpserve import GetEndpoint
from rkt_operator.metrics.exposition import CONTENT_TYPE
from rkt_operator.settings import split_http_endpoint

log = logging.getLogger(__name__)

Render = Callable[[], Awaitable[str]]


class MetricsServer(GetEndpoint):
    """Serves ``render()`` at ``endpoint`` (``http://host:port/path``; port 0 picks one)."""

    def __init__(self, endpoint: str, render: Render) -> None:
        super().__init__(*split_http_endpoint(endpoint), handler=self._handle)
        self._render = render

    async def start(self) -> None:
        await super().start()
        log.info("metrics served at http://%s:%d%s", self.host, self.port, self.path)

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
