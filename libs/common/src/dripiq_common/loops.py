"""A background loop that polls, and can be woken early."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog
from prometheus_client import Counter, Gauge

log = structlog.get_logger(__name__)

ROUNDS = Counter(
    "dripiq_loop_rounds", "Rounds of a background loop, by loop and result (ok, failed)", ["loop", "result"]
)
LAST_OK = Gauge(
    "dripiq_loop_last_ok_timestamp_seconds",
    "When a background loop last finished a round without an error (unix seconds)",
    ["loop"],
)


def count_round(loop: str, *, ok: bool) -> None:
    """Count one round of a background loop (Poller does; other loops call this)."""
    ROUNDS.labels(loop=loop, result="ok" if ok else "failed").inc()
    if ok:
        LAST_OK.labels(loop=loop).set_to_current_time()


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
                count_round(self._name, ok=False)
                log.warning("loop.round_failed", loop=self._name, error=repr(exc))
                done = 0
                await asyncio.sleep(self._poll_seconds)
            else:
                count_round(self._name, ok=True)
            if done >= self._full:
                continue
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_seconds)
            except TimeoutError:
                pass
