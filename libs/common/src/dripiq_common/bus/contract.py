"""The bus contract: streams, subjects, consumers, dead letters and payloads.

Streams and subjects are a public contract (docs/streams.md). Work queues use work-queue
retention and durable pull consumers with max_deliver, a retry delay per delivery and a
dead-letter subject; facts use limits retention so several services and outside readers can
consume them. Every payload is a protobuf message.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtoMessage
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from dripiq.audit.v1 import audit_pb2
from dripiq.dispatcher.v1 import messages_pb2 as dispatcher_pb2
from dripiq.events.v1 import messages_pb2 as events_pb2
from dripiq.planner.v1 import facts_pb2 as planner_facts_pb2
from dripiq.planner.v1 import planning_pb2 as planner_planning_pb2
from dripiq.planner.v1 import timers_pb2 as planner_timers_pb2
from dripiq.scheduler.v1 import commands_pb2 as scheduler_commands_pb2
from dripiq_common import validation
from dripiq_common.errors import PermanentMessageError
from dripiq_common.proto_text import nul_fields

ProtoT = TypeVar("ProtoT", bound=ProtoMessage)

DAY = 24 * 3600
DEAD_LETTER_PREFIX = "dripiq.dlq"
# What a dead letter carries besides the original payload and headers.
ORIGINAL_SUBJECT_HEADER = "Dripiq-Original-Subject"
ORIGINAL_SEQUENCE_HEADER = "Dripiq-Original-Sequence"
DELIVERED_HEADER = "Dripiq-Delivered"
ERROR_HEADER = "Dripiq-Error"
# One Inbound Parse post as the edge publishes it (its body cap plus the envelope), and all of
# them waiting at once: past that the edge answers 503 and SendGrid keeps the mail and retries.
INBOUND_MAX_MESSAGE_BYTES = 8 * 1024 * 1024
INBOUND_STREAM_MAX_BYTES = 2 * 1024 * 1024 * 1024


def header_text(value: str) -> str:
    """Any text made fit for a header value: control characters (a CR/LF would end the header
    and start a forged one) and anything outside ASCII become escapes."""
    return value if value.isascii() and value.isprintable() else value.encode("unicode_escape").decode("ascii")


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
    # The protobuf message every payload is, when its subjects carry the tenant (token 3,
    # `dripiq.<service>.<kind>.<tenant>`): a consumer refuses a payload naming another tenant.
    payload: type[ProtoMessage] | None = None
    # Bounds for a stream anyone on the internet can fill: with discard-new a full stream
    # refuses the publish (the publisher answers 503 and the sender retries) rather than
    # dropping messages already taken. 0: unbounded, discard-old (NATS' defaults).
    max_bytes: int = 0
    max_msg_size: int = 0

    def config(self, replicas: int, duplicate_window_seconds: float | None = None) -> StreamConfig:
        return StreamConfig(
            name=self.name,
            subjects=list(self.subjects),
            retention=RetentionPolicy.WORK_QUEUE if self.work_queue else RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=self.max_age_seconds or None,
            duplicate_window=duplicate_window_seconds or self.duplicate_window_seconds,
            num_replicas=replicas,
            max_bytes=self.max_bytes or None,
            max_msg_size=self.max_msg_size or None,
            discard=DiscardPolicy.NEW if self.max_bytes else DiscardPolicy.OLD,
        )


class Streams:
    """Every stream of the suite. Subjects end in the tenant id (rule 5)."""

    SCHEDULER_COMMANDS = StreamSpec(
        "SCHEDULER_COMMANDS", ("dripiq.scheduler.cmd.>",), True, payload=scheduler_commands_pb2.TimerCommand
    )
    PLANNER_TIMERS = StreamSpec(
        "PLANNER_TIMERS", ("dripiq.planner.timer.>",), True, payload=planner_timers_pb2.PlannerTimer
    )
    # Campaigns stored as planning, waiting for a planning worker to write their strategy.
    PLANNER_PLANNING = StreamSpec(
        "PLANNER_PLANNING", ("dripiq.planner.plan.>",), True, payload=planner_planning_pb2.PlanCampaign
    )
    DISPATCHER_SEND = StreamSpec(
        "DISPATCHER_SEND", ("dripiq.dispatcher.send.>",), True, payload=dispatcher_pb2.SendMessageCommand
    )
    # People's replies, to be forwarded to the mailbox behind the identity that was answered.
    DISPATCHER_FORWARD = StreamSpec(
        "DISPATCHER_FORWARD", ("dripiq.dispatcher.forward.>",), True, payload=dispatcher_pb2.ForwardReplyCommand
    )
    # Addresses to suppress that only the dispatcher can resolve, from the message they were sent.
    DISPATCHER_SUPPRESS = StreamSpec(
        "DISPATCHER_SUPPRESS", ("dripiq.dispatcher.suppress.>",), True, payload=dispatcher_pb2.SuppressByMessageCommand
    )
    MESSAGE_OUTCOMES = StreamSpec(
        "MESSAGE_OUTCOMES",
        ("dripiq.dispatcher.outcome.>",),
        False,
        max_age_seconds=30 * DAY,
        payload=dispatcher_pb2.MessageOutcome,
    )
    # Call and LinkedIn tasks for the applications where people perform them.
    DISPATCHER_TASKS = StreamSpec(
        "DISPATCHER_TASKS",
        ("dripiq.dispatcher.task.>",),
        False,
        max_age_seconds=30 * DAY,
        payload=dispatcher_pb2.TaskCreated,
    )
    # Each campaign's status as the planner committed it: the dispatcher sends nothing for a
    # campaign that is not active.
    CAMPAIGN_STATUS = StreamSpec(
        "CAMPAIGN_STATUS",
        ("dripiq.planner.campaign.>",),
        False,
        max_age_seconds=30 * DAY,
        payload=planner_facts_pb2.CampaignStatusChanged,
    )
    EDGE_WEBHOOKS = StreamSpec("EDGE_WEBHOOKS", ("dripiq.edge.>",), True)
    # Inbound Parse posts (mail of up to megabytes each), apart from the signed events and the
    # unsubscribes so that a flood of mail cannot fill the stream those wait in.
    EDGE_INBOUND = StreamSpec(
        "EDGE_INBOUND",
        ("dripiq.inbound.sendgrid",),
        True,
        max_bytes=INBOUND_STREAM_MAX_BYTES,
        max_msg_size=INBOUND_MAX_MESSAGE_BYTES,
    )
    ENGAGEMENT = StreamSpec(
        "ENGAGEMENT",
        ("dripiq.events.engagement.>",),
        False,
        max_age_seconds=30 * DAY,
        payload=events_pb2.EngagementBatch,
    )
    DEAD_LETTERS = StreamSpec("DEAD_LETTERS", (f"{DEAD_LETTER_PREFIX}.>",), False, max_age_seconds=30 * DAY)
    # Who changed what through an admin call (dripiq_common.audit), for operators to read.
    AUDIT = StreamSpec("AUDIT", ("dripiq.audit.>",), False, max_age_seconds=365 * DAY, payload=audit_pb2.AuditRecord)

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
    def planner_plan(tenant_id: str) -> str:
        return f"dripiq.planner.plan.{token(tenant_id)}"

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

    @staticmethod
    def audit(tenant_id: str, service: str) -> str:
        """A tenant's audit records; a call whose request named no tenant, under its service."""
        return f"dripiq.audit.record.{token(tenant_id)}" if tenant_id else f"dripiq.audit.unscoped.{token(service)}"

    EDGE_SENDGRID_EVENTS = "dripiq.edge.sendgrid.events"
    # Outside dripiq.edge.> (EDGE_WEBHOOKS): streams may not share subjects. Mail published on the
    # old dripiq.edge.sendgrid.inbound still drains through events-webhooks.
    EDGE_SENDGRID_INBOUND = "dripiq.inbound.sendgrid"
    EDGE_UNSUBSCRIBE = "dripiq.edge.unsubscribe"


_SUBJECT_FORBIDDEN = set(" \t\r\n.*>")


def token(value: str) -> str:
    """One subject token. Ids are validated at the API; this guards the bus all the same."""
    if not value or any(ch in _SUBJECT_FORBIDDEN for ch in value):
        raise ValueError(f"not usable as a subject token: {value!r}")
    return value


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


class Consumers:
    """Every durable consumer of the suite, by the service that reads it. The bus set-up step
    (dripiq_common.bus.setup) creates them; a service's workers bind to them."""

    PLANNER_TIMERS = ConsumerSpec.whole(Streams.PLANNER_TIMERS, "planner-timers")
    PLANNER_OUTCOMES = ConsumerSpec.whole(Streams.MESSAGE_OUTCOMES, "planner-outcomes")
    PLANNER_ENGAGEMENT = ConsumerSpec.whole(Streams.ENGAGEMENT, "planner-engagement")
    # A plan may wait on the model for up to the planner's deadline (60 s) and a tenant's turn:
    # a live worker's message must not come back meanwhile. Retries are for a model that gave
    # no answer; the last delivery plans with the template instead (planning_worker).
    PLANNER_PLANNING = ConsumerSpec.whole(
        Streams.PLANNER_PLANNING,
        "planner-planning",
        max_deliver=6,
        retry_delays_seconds=(5, 15, 60, 300, 900),
        ack_wait_seconds=180,
        max_ack_pending=10_000,
    )
    DISPATCHER_SEND = ConsumerSpec.whole(Streams.DISPATCHER_SEND, "dispatcher-send")
    DISPATCHER_ENGAGEMENT = ConsumerSpec.whole(Streams.ENGAGEMENT, "dispatcher-engagement")
    DISPATCHER_FORWARD = ConsumerSpec.whole(Streams.DISPATCHER_FORWARD, "dispatcher-forward")
    DISPATCHER_SUPPRESS = ConsumerSpec.whole(Streams.DISPATCHER_SUPPRESS, "dispatcher-suppress")
    DISPATCHER_CAMPAIGNS = ConsumerSpec.whole(Streams.CAMPAIGN_STATUS, "dispatcher-campaigns")
    EVENTS_OUTCOMES = ConsumerSpec.whole(Streams.MESSAGE_OUTCOMES, "events-outcomes")
    EVENTS_WEBHOOKS = ConsumerSpec.whole(Streams.EDGE_WEBHOOKS, "events-webhooks")
    EVENTS_INBOUND = ConsumerSpec.whole(Streams.EDGE_INBOUND, "events-inbound")
    SCHEDULER_COMMANDS = ConsumerSpec.whole(Streams.SCHEDULER_COMMANDS, "scheduler-commands")

    @classmethod
    def all(cls) -> tuple[ConsumerSpec, ...]:
        return tuple(v for v in vars(cls).values() if isinstance(v, ConsumerSpec))

    @classmethod
    def of(cls, service: str) -> tuple[ConsumerSpec, ...]:
        return tuple(c for c in cls.all() if c.durable.startswith(f"{service}-"))


def decode(kind: type[ProtoT], data: bytes) -> ProtoT:
    """A bus payload as its protobuf message; one that cannot be decoded never will be."""
    message = kind()
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        raise PermanentMessageError(f"undecodable {kind.__name__}: {exc}") from exc
    return message


# Where a tenant's subjects carry its id: dripiq.<service>.<kind>.<tenant>[.<more>].
TENANT_TOKEN = 3


def refused_payload(stream: StreamSpec, subject: str, data: bytes) -> str:
    """Why a payload may not be handled at all ("" when it may), decided before any handler:

    - it names a tenant other than the subject's, so a publisher allowed one tenant's subjects
      cannot act for another;
    - a text field holds a NUL, which PostgreSQL cannot store: retrying would never help.

    A payload that cannot be read is left to its handler (it dead-letters it as undecodable)."""
    if stream.payload is None:
        return ""
    tokens = subject.split(".")
    subject_tenant = tokens[TENANT_TOKEN] if len(tokens) > TENANT_TOKEN else ""
    if not validation.is_tenant(subject_tenant):
        # Handlers build subjects and rows from it: refuse it here, once, with the reason.
        return f"subject token {subject_tenant!r} is not a tenant id"
    message = stream.payload()
    try:
        message.ParseFromString(data)
    except DecodeError:
        return ""
    others = sorted(tenants_in(message) - {subject_tenant})
    if others:
        return f"payload names tenant {', '.join(map(repr, others))} on a subject of tenant {subject_tenant!r}"
    if b"\x00" in data:
        for path in nul_fields(message):
            return f"{stream.payload.__name__}.{path} contains a NUL character"
    return ""


def tenants_in(message: ProtoMessage) -> set[str]:
    """Every non-empty tenant_id anywhere in the message (batches and nested commands too)."""
    found: set[str] = set()
    for field, value in message.ListFields():
        if field.name == "tenant_id" and isinstance(value, str) and value:
            found.add(value)
        elif field.message_type is not None:
            for item in value if field.is_repeated else [value]:
                if isinstance(item, ProtoMessage):
                    found |= tenants_in(item)
    return found


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
