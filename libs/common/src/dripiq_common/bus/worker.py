"""Durable pull workers: fetch from a consumer, hand messages to a handler, then ack, retry
or dead-letter each one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import nats
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import BadRequestError
from prometheus_client import Counter

from dripiq_common.bus.contract import (
    DEAD_LETTER_PREFIX,
    DELIVERED_HEADER,
    ERROR_HEADER,
    ORIGINAL_SEQUENCE_HEADER,
    ORIGINAL_SUBJECT_HEADER,
    ConsumerSpec,
    own_headers,
)
from dripiq_common.errors import PermanentMessageError

log = structlog.get_logger(__name__)

Handler = Callable[[Msg], Awaitable[None]]

WORKER_MESSAGES = Counter(
    "dripiq_worker_messages",
    "Messages a JetStream consumer's worker finished with, by result (acked, retried, dead_lettered)",
    ["consumer", "result"],
)


@dataclass
class PullWorker:
    """Fetches from a durable pull consumer and acks each message after its handler returned.

    The handler commits its own transaction; a raised error naks the message with the
    consumer's retry delay for that delivery. On the last delivery, or for a
    PermanentMessageError, the message goes to `dripiq.dlq.<stream>.<consumer>` and is
    terminated, so a poison message never blocks the ones behind it.
    """

    js: JetStreamContext
    nc: NATS
    spec: ConsumerSpec
    handler: Handler
    batch_size: int = 100
    # Messages handled at once. 1 keeps a batch in order; more suits handlers that wait on
    # the network (provider calls), each message acked on its own as it finishes. With a
    # batch_handler it is the number of whole batches handled at once.
    concurrency: int = 1
    # Handles a whole fetched batch in one go (one transaction). It returns None when every
    # message is done, or one entry per message: None to ack it, or the error it failed with,
    # judged as the single handler's would be. When it raises, each message is retried alone
    # through `handler`, so one bad message cannot hold the others back.
    batch_handler: Callable[[list[Msg]], Awaitable[Sequence[BaseException | None] | None]] | None = None
    fetch_timeout: float = 1.0
    # Seconds to wait before the next fetch (0: fetch now), asked before each one: a circuit
    # breaker holds the worker while what its handlers call is down. Waits end at stop().
    hold: Callable[[], float] | None = None
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def setup(self) -> JetStreamContext.PullSubscription:
        try:
            await self.js.add_consumer(self.spec.stream.name, self.spec.config())
        except BadRequestError as exc:
            log.warning("jetstream.consumer_config_kept", consumer=self.spec.durable, error=str(exc))
        return await self.js.pull_subscribe_bind(durable=self.spec.durable, stream=self.spec.stream.name)

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        sub = await self.setup()
        bound = log.bind(consumer=self.spec.durable)
        bound.info("worker.started", concurrency=self.concurrency)
        inflight: set[asyncio.Task[None]] = set()
        try:
            while not self._stopping.is_set():
                free = self.concurrency - len(inflight)
                if free <= 0:
                    await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
                    continue
                if self.hold is not None and (wait := self.hold()) > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), timeout=min(wait, 1.0))
                    continue
                try:
                    # A whole batch for a batch handler or in order (concurrency 1). Single
                    # messages side by side are fetched one at a time: a fetch of several
                    # waits for all of them (up to fetch_timeout) before the first is handled.
                    whole = self.batch_handler is not None or self.concurrency == 1
                    msgs = await sub.fetch(self.batch_size if whole else 1, timeout=self.fetch_timeout)
                except (nats.errors.TimeoutError, TimeoutError):
                    continue
                except (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError):
                    break
                except Exception as exc:
                    bound.warning("worker.fetch_failed", error=str(exc))
                    await asyncio.sleep(1)
                    continue
                if self.batch_handler is not None and self.concurrency > 1:
                    self._spawn(inflight, self._handle_fetched(msgs, bound))
                elif self.batch_handler is not None or self.concurrency == 1:
                    await self._handle_fetched(msgs, bound)
                else:
                    for msg in msgs:
                        self._spawn(inflight, self._handle(msg, bound))
        except asyncio.CancelledError:
            # Shutdown ran out of grace: what was not acked comes back to another worker.
            for task in inflight:
                task.cancel()
            raise
        finally:
            if inflight:
                await asyncio.gather(*inflight, return_exceptions=True)
            # An open pull subscription would hold up nc.drain() at shutdown.
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        bound.info("worker.stopped")

    @staticmethod
    def _spawn(inflight: set[asyncio.Task[None]], work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        inflight.add(task)
        task.add_done_callback(inflight.discard)

    async def _handle_fetched(self, msgs: list[Msg], bound: structlog.stdlib.BoundLogger) -> None:
        if self.batch_handler is not None and len(msgs) > 1 and await self._handle_batch(msgs, bound):
            return
        for msg in msgs:
            await self._handle(msg, bound)

    async def _handle_batch(self, msgs: list[Msg], bound: structlog.stdlib.BoundLogger) -> bool:
        try:
            results = await self.batch_handler(msgs)  # type: ignore[misc]
            if results is not None and len(results) != len(msgs):
                raise RuntimeError(f"batch handler answered {len(results)} results for {len(msgs)} messages")
        except Exception as exc:
            bound.warning("worker.batch_failed_retrying_one_by_one", size=len(msgs), error=repr(exc))
            return False
        for msg, error in zip(msgs, results or [None] * len(msgs), strict=True):
            await self._settle(msg, error, bound)
        return True

    async def _handle(self, msg: Msg, bound: structlog.stdlib.BoundLogger) -> None:
        try:
            await self.handler(msg)
        except Exception as exc:
            await self._settle(msg, exc, bound)
            return
        await self._ack(msg)

    async def _ack(self, msg: Msg) -> None:
        await msg.ack()
        WORKER_MESSAGES.labels(consumer=self.spec.durable, result="acked").inc()

    async def _settle(self, msg: Msg, error: BaseException | None, bound: structlog.stdlib.BoundLogger) -> None:
        """Ack a handled message; dead-letter or nak one that failed."""
        if error is None:
            await self._ack(msg)
            return
        delivered = msg.metadata.num_delivered
        if isinstance(error, PermanentMessageError):
            await self._dead_letter(msg, str(error), bound)
        elif delivered >= self.spec.max_deliver:
            await self._dead_letter(msg, repr(error), bound)
        else:
            delay = self.spec.retry_delay(delivered)
            bound.warning(
                "worker.handler_failed",
                subject=msg.subject,
                delivered=delivered,
                retry_in=delay,
                error=repr(error),
                exc_info=error,
            )
            await msg.nak(delay=delay)
            WORKER_MESSAGES.labels(consumer=self.spec.durable, result="retried").inc()

    async def _dead_letter(self, msg: Msg, reason: str, bound: structlog.stdlib.BoundLogger) -> None:
        meta = msg.metadata
        subject = f"{DEAD_LETTER_PREFIX}.{meta.stream}.{meta.consumer}"
        headers = {
            # The original headers travel along, so a replay (dripiq_common.deadletters) restores them.
            **own_headers(msg.headers),
            ORIGINAL_SUBJECT_HEADER: msg.subject,
            ORIGINAL_SEQUENCE_HEADER: str(meta.sequence.stream),
            DELIVERED_HEADER: str(meta.num_delivered),
            ERROR_HEADER: reason[:1000],
            "Nats-Msg-Id": f"{meta.stream}:{meta.sequence.stream}",
        }
        await self.js.publish(subject, msg.data, headers=headers)
        await msg.term()
        WORKER_MESSAGES.labels(consumer=meta.consumer, result="dead_lettered").inc()
        bound.error("worker.dead_lettered", subject=msg.subject, dlq=subject, reason=reason)
