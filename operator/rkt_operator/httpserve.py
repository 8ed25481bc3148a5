"""One GET route served in the agent's own event loop (aiohttp, which kopf already runs).

The agent answers two small HTTP endpoints, its watch health and its metrics; both are a
single GET path on one address and differ only in what they answer, so the listening
part lives here once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class GetEndpoint:
    """Serves ``handler`` for ``GET path`` on ``host:port`` (port 0 picks a free one;
    ``port`` then tells the bound one once started)."""

    def __init__(self, host: str, port: int, path: str, handler: Handler) -> None:
        self.host, self.port, self.path = host, port, path
        self._handler = handler
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(self.path, self._handler)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        for address in runner.addresses:  # (host, port, ...) of each bound socket
            if isinstance(address, tuple) and len(address) >= 2:
                self.port = int(address[1])
                break

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
