"""Provider calls in flight across send batches, held at the connection pool's size.

A batch takes a slot for every command before it admits any (so a row moved to `sending`
never waits for a connection while its call's clock runs) and gives each back as that call is
answered, or at once for a command that calls nothing. Batches beyond those whose calls fill
the pool wait here, fetched but not admitted, and go as soon as slots come free: one batch's
admission and settlement then overlap the others' calls instead of idling the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque


class CallSlots:
    """A counting semaphore taken a batch at a time: all of a batch's slots or none, first come
    first served, so two waiting batches can never each hold part of what the other needs."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"call slots: size must be at least 1, not {size}")
        self.size = size
        self._free = size
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def free(self) -> int:
        return self._free

    async def take(self, n: int) -> None:
        """Wait until `n` slots are free and take them. Cancelled while waiting, it takes none."""
        if not 0 <= n <= self.size:
            raise ValueError(f"call slots: cannot take {n} of {self.size}")
        if not self._waiting and self._free >= n:
            self._free -= n
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((n, granted))
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                # Granted in the same turn as the cancellation: hand them on.
                self.give(n)
            else:
                with contextlib.suppress(ValueError):
                    self._waiting.remove((n, granted))
                # A smaller batch behind this one may fit now.
                self._grant()
            raise

    def give(self, n: int) -> None:
        self._free += n
        if self._free > self.size:
            raise RuntimeError(f"call slots: {self._free} free of {self.size}, more given back than taken")
        self._grant()

    def _grant(self) -> None:
        while self._waiting and self._free >= self._waiting[0][0]:
            n, granted = self._waiting.popleft()
            if granted.done():
                continue
            self._free -= n
            granted.set_result(None)
