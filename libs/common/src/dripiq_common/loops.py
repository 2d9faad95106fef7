"""A background loop that polls, and can be woken early."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)


class Poller:
    """Runs `round()` until stopped: again at once while rounds come back full, otherwise after
    `poll_seconds` or as soon as `wake()` is called (after a commit that made work, say)."""

    def __init__(self, round_: Callable[[], Awaitable[int]], *, full: int, poll_seconds: float, name: str) -> None:
        self._round = round_
        self._full = full
        self._poll_seconds = poll_seconds
        self._name = name
        self._wake = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
            try:
                done = await self._round()
            except Exception as exc:
                log.warning("loop.round_failed", loop=self._name, error=repr(exc))
                done = 0
                await asyncio.sleep(self._poll_seconds)
            if done >= self._full:
                continue
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_seconds)
            except TimeoutError:
                pass
