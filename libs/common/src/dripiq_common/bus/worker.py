"""Durable pull workers: fetch a batch from a consumer, hand it to the consumer's batch handler,
then ack, retry or dead-letter each message by the handler's answer for it."""

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
from nats.js.errors import BadRequestError, NotFoundError
from prometheus_client import Counter

from dripiq_common.bus.contract import (
    DEAD_LETTER_PREFIX,
    DELIVERED_HEADER,
    ERROR_HEADER,
    ORIGINAL_SEQUENCE_HEADER,
    ORIGINAL_SUBJECT_HEADER,
    ConsumerSpec,
    header_text,
    own_headers,
    refused_payload,
)
from dripiq_common.errors import PermanentMessageError
from dripiq_common.redaction import error_text, one_line
from dripiq_common.status_codes import refused_by_database

log = structlog.get_logger(__name__)

# One answer per message of the batch, in its order: None when the message is done, else the
# error it failed with.
BatchHandler = Callable[[list[Msg]], Awaitable[Sequence[Exception | None]]]

WORKER_MESSAGES = Counter(
    "dripiq_worker_messages",
    "Messages a JetStream consumer's worker finished with, by result (acked, retried, dead_lettered)",
    ["consumer", "result"],
)


def per_message(handle: Callable[[Msg], Awaitable[object]]) -> BatchHandler:
    """A batch handler from a handler of one message: the batch's messages one after another,
    in order, each answered by what its own call raised (None if nothing).

    For messages that each wait on the network, fetch batches of one and keep several in
    flight (`PullWorker.batches_in_flight`) rather than handling a batch side by side: a message
    then never waits for the fetch to fill a batch, nor the next fetch for a batch's slowest."""

    async def handle_batch(msgs: list[Msg]) -> list[Exception | None]:
        answers: list[Exception | None] = []
        for msg in msgs:
            try:
                await handle(msg)
            except Exception as exc:
                answers.append(exc)
            else:
                answers.append(None)
        return answers

    return handle_batch


def whole_batch(handle: Callable[[list[Msg]], Awaitable[object]]) -> BatchHandler:
    """A batch handler from one that does a whole batch as one unit (one transaction): every
    message is done once it returns; when it raises, the worker splits the batch (PullWorker)."""

    async def handle_batch(msgs: list[Msg]) -> list[Exception | None]:
        await handle(msgs)
        return [None] * len(msgs)

    return handle_batch


@dataclass
class PullWorker:
    """Fetches batches from a durable pull consumer and settles each message by its answer.

    `handler` gets each fetched batch (up to `batch_size` messages, in stream order), commits
    what it does, then answers with one entry per message (`per_message` and `whole_batch` make
    one from a handler of one message or of a whole batch). None acks the message. An error
    naks it with the consumer's retry delay for that delivery; on the last delivery, or for a
    PermanentMessageError, the message goes to `dripiq.dlq.<stream>.<consumer>` with the error
    in its headers and is terminated.

    When the handler raises, or answers for another number of messages, the batch is halved and
    each half handed to it again, down to single messages, whose raise is their own answer. So
    one poison message never holds the others back: they are acked as their halves succeed, and
    it is retried or dead-lettered alone, at the cost of about two more calls per halving
    (some twenty for a thousand messages, where retrying each alone would take a thousand). A
    handler must be safe to call again with part of a batch it raised on, as it is safe to call
    again on a redelivery.
    """

    js: JetStreamContext
    nc: NATS
    spec: ConsumerSpec
    handler: BatchHandler
    batch_size: int = 100
    # Batches handled at once. With 1 they are handled in stream order; more keep the consumer
    # busy while a batch waits on the network (provider calls) or the database.
    batches_in_flight: int = 1
    fetch_timeout: float = 1.0
    # Seconds to wait before the next fetch (0: fetch now), asked before each one: a circuit
    # breaker holds the worker while what its handlers call is down. Waits end at stop().
    hold: Callable[[], float] | None = None
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _log: structlog.stdlib.BoundLogger = field(init=False)

    def __post_init__(self) -> None:
        self._log = log.bind(consumer=self.spec.durable)

    async def setup(self) -> JetStreamContext.PullSubscription:
        """Bind to the durable consumer; create it only where it does not exist yet (the bus
        set-up step creates them, and a process's NATS user may not)."""
        try:
            await self.js.consumer_info(self.spec.stream.name, self.spec.durable)
        except NotFoundError:
            try:
                await self.js.add_consumer(self.spec.stream.name, self.spec.config())
            except BadRequestError as exc:
                log.warning("jetstream.consumer_config_kept", consumer=self.spec.durable, error=str(exc))
        return await self.js.pull_subscribe_bind(durable=self.spec.durable, stream=self.spec.stream.name)

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        sub = await self.setup()
        self._log.info("worker.started", batch_size=self.batch_size, batches_in_flight=self.batches_in_flight)
        inflight: set[asyncio.Task[None]] = set()
        try:
            while not self._stopping.is_set():
                if len(inflight) >= self.batches_in_flight:
                    await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
                    continue
                if self.hold is not None and (wait := self.hold()) > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), timeout=min(wait, 1.0))
                    continue
                try:
                    msgs = await sub.fetch(self.batch_size, timeout=self.fetch_timeout)
                except (nats.errors.TimeoutError, TimeoutError):
                    continue
                except (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError):
                    break
                except Exception as exc:
                    self._log.warning("worker.fetch_failed", error=str(exc))
                    await asyncio.sleep(1)
                    continue
                task = asyncio.create_task(self.receive(msgs))
                inflight.add(task)
                task.add_done_callback(inflight.discard)
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
        self._log.info("worker.stopped")

    async def receive(self, msgs: list[Msg]) -> None:
        """Dead-letter what may not be handled at all (contract.refused_payload), hand the rest on."""
        mine = []
        for msg in msgs:
            if reason := refused_payload(self.spec.stream, msg.subject, msg.data):
                await self._settle(msg, PermanentMessageError(reason))
            else:
                mine.append(msg)
        await self.handle(mine)

    async def handle(self, msgs: list[Msg]) -> None:
        """Hand the batch to the handler and settle each message by its answer; split it when
        the handler raises (see the class)."""
        if not msgs:
            return
        try:
            answers = await self.handler(msgs)
            if len(answers) != len(msgs):
                raise RuntimeError(f"batch handler answered {len(answers)} results for {len(msgs)} messages")
        except Exception as exc:
            if len(msgs) == 1:
                answers = [exc]
            else:
                self._log.warning("worker.batch_failed_splitting", size=len(msgs), error=repr(exc))
                half = len(msgs) // 2
                await self.handle(msgs[:half])
                await self.handle(msgs[half:])
                return
        for msg, answer in zip(msgs, answers, strict=True):
            try:
                await self._settle(msg, answer)
            except Exception as exc:
                # Not acked, so it comes back after the consumer's ack wait; the rest go on.
                self._log.warning("worker.settle_failed", subject=msg.subject, error=repr(exc))

    async def _settle(self, msg: Msg, error: Exception | None) -> None:
        """Ack a handled message; dead-letter or nak one that failed."""
        if error is None:
            await msg.ack()
            WORKER_MESSAGES.labels(consumer=self.spec.durable, result="acked").inc()
            return
        delivered = msg.metadata.num_delivered
        if isinstance(error, PermanentMessageError):
            await self._dead_letter(msg, one_line(str(error)))
        elif refused_by_database(error):
            # The data itself is what PostgreSQL refuses: no retry can change that.
            await self._dead_letter(msg, error_text(error))
        elif delivered >= self.spec.max_deliver:
            await self._dead_letter(msg, error_text(error))
        else:
            delay = self.spec.retry_delay(delivered)
            self._log.warning(
                "worker.handler_failed",
                subject=msg.subject,
                delivered=delivered,
                retry_in=delay,
                error=repr(error),
                exc_info=error,
            )
            await msg.nak(delay=delay)
            WORKER_MESSAGES.labels(consumer=self.spec.durable, result="retried").inc()

    async def _dead_letter(self, msg: Msg, reason: str) -> None:
        meta = msg.metadata
        subject = f"{DEAD_LETTER_PREFIX}.{meta.stream}.{meta.consumer}"
        headers = {
            # The original headers travel along, so a replay (dripiq_common.deadletters) restores them.
            **own_headers(msg.headers),
            ORIGINAL_SUBJECT_HEADER: msg.subject,
            ORIGINAL_SEQUENCE_HEADER: str(meta.sequence.stream),
            DELIVERED_HEADER: str(meta.num_delivered),
            ERROR_HEADER: header_text(reason)[:1000],
            "Nats-Msg-Id": f"{meta.stream}:{meta.sequence.stream}",
        }
        await self.js.publish(subject, msg.data, headers=headers)
        await msg.term()
        WORKER_MESSAGES.labels(consumer=meta.consumer, result="dead_lettered").inc()
        self._log.error("worker.dead_lettered", subject=msg.subject, dlq=subject, reason=reason)
