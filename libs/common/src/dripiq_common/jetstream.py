"""JetStream: the stream contract, idempotent set-up, and durable pull workers.

Streams and subjects are a public contract (docs/streams.md). Work queues use work-queue
retention and durable pull consumers with max_deliver, a backoff list and a dead-letter
subject; facts use limits retention so several services and outside readers can consume them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import nats
import structlog
from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtoMessage
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError
from prometheus_client import Counter

from dripiq_common.errors import PermanentMessageError

log = structlog.get_logger(__name__)

ProtoT = TypeVar("ProtoT", bound=ProtoMessage)

DAY = 24 * 3600
DEAD_LETTER_PREFIX = "dripiq.dlq"
# What a dead letter carries besides the original payload and headers.
ORIGINAL_SUBJECT_HEADER = "Dripiq-Original-Subject"
ORIGINAL_SEQUENCE_HEADER = "Dripiq-Original-Sequence"
DELIVERED_HEADER = "Dripiq-Delivered"
ERROR_HEADER = "Dripiq-Error"


def own_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """A message's headers without the server's `Nats-*` ones (dedupe ids and the like)."""
    return {k: v for k, v in (headers or {}).items() if not k.lower().startswith("nats-")}


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    work_queue: bool
    max_age_seconds: float = 0
    duplicate_window_seconds: float = 600

    def config(self, replicas: int, duplicate_window_seconds: float | None = None) -> StreamConfig:
        return StreamConfig(
            name=self.name,
            subjects=list(self.subjects),
            retention=RetentionPolicy.WORK_QUEUE if self.work_queue else RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=self.max_age_seconds or None,
            duplicate_window=duplicate_window_seconds or self.duplicate_window_seconds,
            num_replicas=replicas,
        )


class Streams:
    """Every stream of the suite. Subjects end in the tenant id (rule 5)."""

    SCHEDULER_COMMANDS = StreamSpec("SCHEDULER_COMMANDS", ("dripiq.scheduler.cmd.>",), True)
    PLANNER_TIMERS = StreamSpec("PLANNER_TIMERS", ("dripiq.planner.timer.>",), True)
    DISPATCHER_SEND = StreamSpec("DISPATCHER_SEND", ("dripiq.dispatcher.send.>",), True)
    # People's replies, to be forwarded to the mailbox behind the identity that was answered.
    DISPATCHER_FORWARD = StreamSpec("DISPATCHER_FORWARD", ("dripiq.dispatcher.forward.>",), True)
    # Addresses to suppress that only the dispatcher can resolve, from the message they were sent.
    DISPATCHER_SUPPRESS = StreamSpec("DISPATCHER_SUPPRESS", ("dripiq.dispatcher.suppress.>",), True)
    MESSAGE_OUTCOMES = StreamSpec("MESSAGE_OUTCOMES", ("dripiq.dispatcher.outcome.>",), False, max_age_seconds=30 * DAY)
    # Call and LinkedIn tasks for the applications where people perform them.
    DISPATCHER_TASKS = StreamSpec("DISPATCHER_TASKS", ("dripiq.dispatcher.task.>",), False, max_age_seconds=30 * DAY)
    # Each campaign's status as the planner committed it: the dispatcher sends nothing for a
    # campaign that is not active.
    CAMPAIGN_STATUS = StreamSpec("CAMPAIGN_STATUS", ("dripiq.planner.campaign.>",), False, max_age_seconds=30 * DAY)
    EDGE_WEBHOOKS = StreamSpec("EDGE_WEBHOOKS", ("dripiq.edge.>",), True)
    ENGAGEMENT = StreamSpec("ENGAGEMENT", ("dripiq.events.engagement.>",), False, max_age_seconds=30 * DAY)
    DEAD_LETTERS = StreamSpec("DEAD_LETTERS", (f"{DEAD_LETTER_PREFIX}.>",), False, max_age_seconds=30 * DAY)

    @classmethod
    @functools.cache
    def all(cls) -> tuple[StreamSpec, ...]:
        # Cached: timer validation asks for every timer of a 10,000-timer batch.
        return tuple(v for v in vars(cls).values() if isinstance(v, StreamSpec))


class Subjects:
    """Subject builders, so no service spells a subject by hand."""

    @staticmethod
    def scheduler_command(tenant_id: str) -> str:
        return f"dripiq.scheduler.cmd.{token(tenant_id)}"

    @staticmethod
    def planner_timer(tenant_id: str) -> str:
        return f"dripiq.planner.timer.{token(tenant_id)}"

    @staticmethod
    def campaign_status(tenant_id: str) -> str:
        return f"dripiq.planner.campaign.{token(tenant_id)}"

    @staticmethod
    def dispatcher_send(tenant_id: str) -> str:
        return f"dripiq.dispatcher.send.{token(tenant_id)}"

    @staticmethod
    def dispatcher_forward(tenant_id: str) -> str:
        return f"dripiq.dispatcher.forward.{token(tenant_id)}"

    # A reply whose tenant only the dispatcher can tell, from the message its signed reply
    # address names (the events service has no record of it): the command names no tenant.
    # Two tokens, so it never collides with a tenant's own subject.
    DISPATCHER_FORWARD_BY_MESSAGE = "dripiq.dispatcher.forward.by-message.reply"

    @staticmethod
    def dispatcher_suppress(tenant_id: str) -> str:
        return f"dripiq.dispatcher.suppress.{token(tenant_id)}"

    @staticmethod
    def message_outcome(tenant_id: str) -> str:
        return f"dripiq.dispatcher.outcome.{token(tenant_id)}"

    @staticmethod
    def dispatcher_task(tenant_id: str) -> str:
        return f"dripiq.dispatcher.task.{token(tenant_id)}"

    @staticmethod
    def engagement(tenant_id: str, event_type: str) -> str:
        return f"dripiq.events.engagement.{token(tenant_id)}.{token(event_type)}"

    EDGE_SENDGRID_EVENTS = "dripiq.edge.sendgrid.events"
    EDGE_SENDGRID_INBOUND = "dripiq.edge.sendgrid.inbound"
    EDGE_UNSUBSCRIBE = "dripiq.edge.unsubscribe"


_SUBJECT_FORBIDDEN = set(" \t\r\n.*>")


def token(value: str) -> str:
    """One subject token. Ids are validated at the API; this guards the bus all the same."""
    if not value or any(ch in _SUBJECT_FORBIDDEN for ch in value):
        raise ValueError(f"not usable as a subject token: {value!r}")
    return value


NATS_CONNECTION_EVENTS = Counter(
    "dripiq_nats_connection_events",
    "What happened to the process's NATS connection: disconnected, reconnected, error",
    ["event"],
)


async def connect(url: str, *, name: str) -> NATS:
    nc = NATS()

    async def on_error(exc: Exception) -> None:
        NATS_CONNECTION_EVENTS.labels(event="error").inc()
        log.warning("nats.error", error=str(exc))

    async def on_disconnect() -> None:
        if not (nc.is_closed or nc.is_draining):
            NATS_CONNECTION_EVENTS.labels(event="disconnected").inc()
            log.warning("nats.disconnected")

    async def on_reconnect() -> None:
        NATS_CONNECTION_EVENTS.labels(event="reconnected").inc()
        log.info("nats.reconnected")

    await nc.connect(
        url,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
    )
    return nc


@dataclass(frozen=True)
class Outgoing:
    subject: str
    payload: bytes
    msg_id: str
    headers: dict[str, str] = field(default_factory=dict)


async def publish_many(js: JetStreamContext, items: Sequence[Outgoing], *, ack_timeout: float = 10.0) -> list[bool]:
    """Publish without waiting for each ack in turn, then wait for all; True where acked.

    `Nats-Msg-Id` makes a retry of the same item a no-op within the duplicate window.
    """
    futures = []
    for item in items:
        headers = {**item.headers, "Nats-Msg-Id": item.msg_id}
        futures.append(await js.publish_async(item.subject, item.payload, headers=headers))
    if not futures:
        return []
    # One wait for all the acks: a timer and a task per message would cost more than the publish.
    done, pending = await asyncio.wait(futures, timeout=ack_timeout)
    for future in pending:
        future.cancel()
    return [f in done and not f.cancelled() and f.exception() is None for f in futures]


async def drain(nc: NATS, *, grace_seconds: float = 10.0) -> None:
    """Drain at shutdown, but never hang on a server that is gone: then just close."""
    try:
        await asyncio.wait_for(nc.drain(), timeout=grace_seconds)
    except Exception as exc:
        log.warning("nats.drain_incomplete", error=repr(exc))
        with contextlib.suppress(Exception):
            await nc.close()


async def ensure_streams(
    js: JetStreamContext,
    specs: Sequence[StreamSpec],
    *,
    replicas: int = 1,
    duplicate_window_seconds: float | None = None,
) -> None:
    """Create or update each stream so that start-up is idempotent.

    The duplicate window must outlast the worst stall between a publish and the commit that
    records it (a relay or firer that dies in between publishes again with the same id).
    """
    for spec in specs:
        config = spec.config(replicas, duplicate_window_seconds)
        try:
            await js.stream_info(spec.name)
        except NotFoundError:
            await js.add_stream(config)
            log.info("jetstream.stream_created", stream=spec.name)
            continue
        await js.update_stream(config)


@dataclass(frozen=True)
class ConsumerSpec:
    stream: StreamSpec
    durable: str
    filter_subject: str
    max_deliver: int = 8
    # Delay before each retry of a failed handler, by delivery count (the last one repeats).
    retry_delays_seconds: tuple[float, ...] = (1, 5, 15, 60, 300)
    # A crashed worker's messages come back after this long.
    ack_wait_seconds: float = 30
    max_ack_pending: int = 2000
    deliver_all: bool = True

    @classmethod
    def whole(cls, stream: StreamSpec, durable: str, **options: Any) -> ConsumerSpec:
        """A consumer of everything on `stream` (its one subject pattern, every tenant)."""
        [subject] = stream.subjects
        return cls(stream, durable, subject, **options)

    def retry_delay(self, delivered: int) -> float:
        return self.retry_delays_seconds[min(delivered, len(self.retry_delays_seconds)) - 1]

    def config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.durable,
            name=self.durable,
            filter_subject=self.filter_subject,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL if self.deliver_all else DeliverPolicy.NEW,
            max_deliver=self.max_deliver,
            ack_wait=self.ack_wait_seconds,
            max_ack_pending=self.max_ack_pending,
        )


Handler = Callable[[Msg], Awaitable[None]]

WORKER_MESSAGES = Counter(
    "dripiq_worker_messages",
    "Messages a JetStream consumer's worker finished with, by result (acked, retried, dead_lettered)",
    ["consumer", "result"],
)


def decode(kind: type[ProtoT], data: bytes) -> ProtoT:
    """A bus payload as its protobuf message; one that cannot be decoded never will be."""
    message = kind()
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        raise PermanentMessageError(f"undecodable {kind.__name__}: {exc}") from exc
    return message


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


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcard match: `*` is one token, a trailing `>` one or more."""
    p, s = pattern.split("."), subject.split(".")
    for i, part in enumerate(p):
        if part == ">":
            return len(s) > i
        if i >= len(s) or (part != "*" and part != s[i]):
            return False
    return len(p) == len(s)


def stream_for_subject(subject: str) -> StreamSpec | None:
    return next(
        (spec for spec in Streams.all() if any(subject_matches(p, subject) for p in spec.subjects)),
        None,
    )
