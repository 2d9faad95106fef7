"""The automatic events: `processed` then `delivered` for every recipient of an accepted message,
queued and posted to the webhook in order, in batches, retried until the receiver takes them."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import partial
from http import HTTPStatus
from typing import Any

import aiohttp

from dripiq_devtools.fake_sendgrid.events import build_event
from dripiq_devtools.fake_sendgrid.messages import AcceptedMessage

MAX_EVENTS_PER_POST = 1000
# SendGrid retries a refused batch for up to 24 hours; the fake retries as long as it runs,
# waiting twice as long after each refusal up to this.
MAX_RETRY_WAIT_SECONDS = 60.0

EventPost = Callable[[list[dict[str, Any]]], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class QueuedEvent:
    event: dict[str, Any]
    # Built and queued once `event` is posted, as SendGrid reports delivery after processing.
    then: Callable[[], dict[str, Any]] | None = None


class WebhookOutbox:
    """Events on their way to the webhook, posted in order in batches by `flush`.

    A batch the receiver refuses (non-2xx) or cannot take (unreachable) stays at the head of
    the queue and is posted again in a later flush, after a wait that doubles with each refusal
    up to MAX_RETRY_WAIT_SECONDS; nothing queued is dropped while the fake runs.
    """

    def __init__(self, post: EventPost, *, interval_seconds: float) -> None:
        self._post = post
        self._interval_seconds = interval_seconds
        self._queue: deque[QueuedEvent] = deque()
        self._refusals = 0
        self._retry_at = 0.0
        # Every refused or unreachable post, consecutive or not: proof the outbox kept trying.
        self.failed_posts = 0

    @property
    def pending(self) -> int:
        """Events not yet taken by the receiver, counting those that follow a queued one."""
        return sum(1 if queued.then is None else 2 for queued in self._queue)

    def add(self, events: Iterable[QueuedEvent]) -> None:
        self._queue.extend(events)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_seconds)
            await self.flush()

    async def flush(self) -> None:
        """Post what is queued now, a batch at a time, stopping at the first refusal.

        Events queued during the flush (new sends, the follow-ups of posted events) wait for
        the next one, so a `delivered` never travels with, or before, its `processed`.
        """
        loop = asyncio.get_running_loop()
        if loop.time() < self._retry_at:
            return
        due = len(self._queue)
        while due > 0:
            batch = list(itertools.islice(self._queue, min(due, MAX_EVENTS_PER_POST)))
            if not await self._taken([queued.event for queued in batch]):
                self.failed_posts += 1
                self._refusals += 1
                wait = self._interval_seconds * 2 ** min(self._refusals - 1, 16)
                self._retry_at = loop.time() + min(wait, MAX_RETRY_WAIT_SECONDS)
                return
            self._refusals = 0
            for _ in batch:
                self._queue.popleft()
            due -= len(batch)
            self._queue.extend(QueuedEvent(queued.then()) for queued in batch if queued.then is not None)

    async def _taken(self, events: list[dict[str, Any]]) -> bool:
        try:
            status = await self._post(events)
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False
        return is_2xx(status)


def is_2xx(status: int) -> bool:
    return HTTPStatus.OK <= status < HTTPStatus.MULTIPLE_CHOICES


def processed_then_delivered(message: AcceptedMessage) -> list[QueuedEvent]:
    return [
        QueuedEvent(
            build_event(message, "processed", email=email),
            then=partial(build_event, message, "delivered", email=email),
        )
        for email in message.recipient_emails
    ]
