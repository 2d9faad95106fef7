"""What every local fake of an outside API shares: an aiohttp app on 127.0.0.1, started and
stopped by tests or run as a process until SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Self

from aiohttp import web


class LocalHttpServer(ABC):
    """Subclasses build their app; this serves it. Port 0 picks a free port."""

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._host = "127.0.0.1"
        self._port: int | None = None

    @abstractmethod
    def build_app(self) -> web.Application: ...

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the server is not started")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on host:port; port 0 picks a free one, readable afterwards as `.port`."""
        runner = web.AppRunner(self.build_app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._host = host
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = None
        self._port = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def serve_until_signal(self, host: str, port: int, *, announce: Callable[[], None]) -> None:
        """Run as a process: serve until SIGTERM or SIGINT, saying where once started."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await self.start(host, port)
        announce()
        try:
            await stop.wait()
        finally:
            await self.stop()
