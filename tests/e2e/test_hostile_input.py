"""Hostile input against the running suite, as a caller or a publisher with bad intent would
send it: every RPC's string fields and every bus command's fields get newlines, wildcards,
dots, NUL, very long and non-ASCII values.

What must hold: an RPC answers INVALID_ARGUMENT naming the field (or a plain domain answer,
NOT_FOUND and the like), never INTERNAL or a hang; a bad tenant id is always INVALID_ARGUMENT;
a bus message is handled or dead-lettered with its reason at once, never retried in a loop,
and the consumers go on with what comes after it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import channel
from waiting import eventually

from dripiq.dispatcher.v1 import dispatcher_service_pb2, messages_pb2
from dripiq.events.v1 import events_service_pb2
from dripiq.events.v1 import messages_pb2 as events_messages_pb2
from dripiq.planner.v1 import campaign_service_pb2
from dripiq.scheduler.v1 import scheduler_service_pb2
from dripiq_common import validation
from dripiq_common.bus.contract import DEAD_LETTER_PREFIX, ERROR_HEADER, Consumers, Streams, Subjects
from dripiq_devtools.suite import Suite

# Values that break subjects, headers, SQL text columns, regexes with `$`, or logs.
HOSTILE = [
    "acme\n",
    "acme\r\nDripiq-Forged: 1",
    "a.b",
    "*",
    ">",
    "dripiq.planner.timer.*.acme",
    "a b",
    "\x00",
    "a\x00b",
    "\t",
    "..",
    "ünïcødé",
    "\u202eevil",
    "\ud7ff\ue000",
    "x" * 70_000,
    "' OR 1=1 --",
    "{{first_name}}",
    "%s%n",
]
hostile_text = st.one_of(st.sampled_from(HOSTILE), st.text(min_size=1, max_size=80))

# An answer to hostile input may be any of these; never INTERNAL, UNKNOWN, a timeout or an outage.
FINE = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
SERVICES = [
    ("PLANNER_GRPC_PORT", campaign_service_pb2),
    ("DISPATCHER_GRPC_PORT", dispatcher_service_pb2),
    ("EVENTS_GRPC_PORT", events_service_pb2),
    ("SCHEDULER_GRPC_PORT", scheduler_service_pb2),
]
TENANT = "prop-hostile"
MAX_DEPTH = 3


@dataclass(frozen=True)
class Rpc:
    port_env: str
    method: MethodDescriptor

    @property
    def path(self) -> str:
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    def __str__(self) -> str:
        return f"{self.method.containing_service.name}.{self.method.name}"


def rpcs() -> Iterator[Rpc]:
    for port_env, module in SERVICES:
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                if not method.client_streaming and not method.server_streaming:
                    yield Rpc(port_env, method)


def string_fields(descriptor: Descriptor, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Paths of every string field reachable through singular and repeated messages."""
    for field in descriptor.fields:
        path = (*prefix, field.name)
        if field.type == FieldDescriptor.TYPE_STRING:
            yield path
        elif field.message_type is not None and len(path) < MAX_DEPTH and not field.message_type.GetOptions().map_entry:
            if field.message_type.full_name.startswith("google.protobuf."):
                continue
            yield from string_fields(field.message_type, path)


def holder_of(request: Message, path: tuple[str, ...]) -> Message:
    """The message that holds the field at `path`, created on the way (the first item of a
    repeated message)."""
    holder = request
    for name in path[:-1]:
        field = holder.DESCRIPTOR.fields_by_name[name]
        if field.is_repeated:
            items = getattr(holder, name)
            holder = items[0] if len(items) else items.add()
        else:
            holder = getattr(holder, name)
    return holder


def assign(request: Message, path: tuple[str, ...], value: str) -> None:
    holder = holder_of(request, path)
    field = holder.DESCRIPTOR.fields_by_name[path[-1]]
    if field.is_repeated:
        getattr(holder, path[-1]).append(value)
    else:
        setattr(holder, path[-1], value)


def value_at(request: Message, path: tuple[str, ...]) -> str:
    holder = holder_of(request, path)
    value = getattr(holder, path[-1])
    return value if isinstance(value, str) else ""


def base_request(rpc: Rpc) -> Message:
    """The request with every tenant_id it holds set to one valid tenant, so hostile values in
    the other fields get past the tenant check and reach deeper."""
    request = message_factory.GetMessageClass(rpc.method.input_type)()
    for path in string_fields(rpc.method.input_type):
        if path[-1] == "tenant_id":
            assign(request, path, TENANT)
    return request


def field_named(status: Any) -> str:
    for detail in status.details:
        violation = error_details_pb2.BadRequest()
        if detail.Unpack(violation) and violation.field_violations:
            return violation.field_violations[0].field
    return ""


def call(suite: Suite, rpc: Rpc, request: Message) -> tuple[grpc.StatusCode, str]:
    """The status code and the field INVALID_ARGUMENT named."""
    with channel(suite, rpc.port_env) as ch:
        stub = ch.unary_unary(
            rpc.path,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=message_factory.GetMessageClass(rpc.method.output_type).FromString,
        )
        try:
            stub(request, timeout=20)
        except grpc.RpcError as exc:
            code = exc.code()  # type: ignore[attr-defined]
            status = rpc_status.from_call(exc)  # type: ignore[arg-type]
            return code, field_named(status) if status is not None else ""
    return grpc.StatusCode.OK, ""


ALL_RPCS = list(rpcs())
# Every RPC of the suite takes strings; one that took none would have nothing to test here.
STRING_RPCS = [rpc for rpc in ALL_RPCS if any(string_fields(rpc.method.input_type))]


@pytest.mark.parametrize("rpc", STRING_RPCS, ids=str)
def test_every_rpc_refuses_hostile_strings_by_name(suite: Suite, rpc: Rpc) -> None:
    fields = list(string_fields(rpc.method.input_type))

    @settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
    @given(st.lists(st.tuples(st.sampled_from(fields), hostile_text), min_size=1, max_size=3))
    def hostile(assignments: list[tuple[tuple[str, ...], str]]) -> None:
        request = base_request(rpc)
        for path, value in assignments:
            assign(request, path, value)
        code, field = call(suite, rpc, request)
        assert code in FINE, f"{rpc} answered {code.name} to {assignments!r}"
        if code is grpc.StatusCode.INVALID_ARGUMENT:
            assert field, f"{rpc}: INVALID_ARGUMENT without naming the field"
        tenants = [value_at(request, p) for p in {p for p, _ in assignments if p[-1] == "tenant_id"}]
        if any(not validation.TENANT.fullmatch(t) for t in tenants if t):
            assert code is grpc.StatusCode.INVALID_ARGUMENT, f"{rpc} took tenant {assignments!r}: {code.name}"

    hostile()


def test_the_tenant_acme_newline_is_refused_everywhere(suite: Suite) -> None:
    """The issue's own example, on every RPC that names a tenant."""
    wrong = []
    for rpc in ALL_RPCS:
        for path in [p for p in string_fields(rpc.method.input_type) if p[-1] == "tenant_id"]:
            request = base_request(rpc)
            assign(request, path, "acme\n")
            code, field = call(suite, rpc, request)
            if code is not grpc.StatusCode.INVALID_ARGUMENT or not field.endswith("tenant_id"):
                wrong.append(f"{rpc} {'.'.join(path)}: {code.name} {field!r}")
    assert not wrong, "\n".join(wrong)


# --- the bus -----------------------------------------------------------------------------------

BUS_TENANT = "prop-bus"
COMMANDS: list[tuple[str, type[Message] | None]] = [
    (Subjects.scheduler_command(BUS_TENANT), Streams.SCHEDULER_COMMANDS.payload),
    (Subjects.planner_timer(BUS_TENANT), Streams.PLANNER_TIMERS.payload),
    (Subjects.dispatcher_send(BUS_TENANT), messages_pb2.SendMessageCommand),
    (Subjects.dispatcher_forward(BUS_TENANT), messages_pb2.ForwardReplyCommand),
    (Subjects.DISPATCHER_FORWARD_BY_MESSAGE, messages_pb2.ForwardReplyCommand),
    (Subjects.dispatcher_suppress(BUS_TENANT), messages_pb2.SuppressByMessageCommand),
    (Subjects.message_outcome(BUS_TENANT), messages_pb2.MessageOutcome),
    (Subjects.campaign_status(BUS_TENANT), Streams.CAMPAIGN_STATUS.payload),
    (Subjects.engagement(BUS_TENANT, "open"), events_messages_pb2.EngagementBatch),
    (Subjects.EDGE_SENDGRID_EVENTS, events_messages_pb2.RawWebhook),
    (Subjects.EDGE_SENDGRID_INBOUND, events_messages_pb2.RawWebhook),
    (Subjects.EDGE_UNSUBSCRIBE, events_messages_pb2.RawWebhook),
]


# A request to stop mail is never dropped: a suppression for a message the dispatcher does not
# hold (yet) is retried with backoff and dead-lettered after its last delivery, one message at a
# time. So for this consumer it is enough that nothing waits behind the hostile messages.
WAITS_FOR_UNKNOWN_MESSAGES = {Consumers.DISPATCHER_SUPPRESS}


def hostile_message(kind: type[Message], values: list[str], *, tenant: str) -> Message:
    """`kind` with each string field, at every depth, set to the next hostile value; tenant
    ids stay the subject's, so the message gets past the foreign-tenant check to its handler."""
    message = kind()
    paths = list(string_fields(kind.DESCRIPTOR))
    for n, path in enumerate(paths):
        assign(message, path, tenant if path[-1] == "tenant_id" else values[n % len(values)])
    return message


def test_hostile_bus_messages_are_handled_or_dead_lettered_at_once(suite: Suite) -> None:
    asyncio.run(_publish_hostile_and_wait(suite))


async def _publish_hostile_and_wait(suite: Suite) -> None:
    nc = await suite.nats_connect()
    js = nc.jetstream()
    try:
        published: dict[str, int] = {}
        variants = [HOSTILE[n:] + HOSTILE[:n] for n in range(0, len(HOSTILE), 3)]
        for subject, kind in COMMANDS:
            payloads = [b"\xff\x00not a protobuf", b""]
            if kind is not None:
                payloads += [hostile_message(kind, v, tenant=BUS_TENANT).SerializeToString() for v in variants]
                payloads.append(hostile_message(kind, HOSTILE, tenant="acme\n").SerializeToString())
            for payload in payloads:
                ack = await js.publish(subject, payload, headers={"Nats-Msg-Id": f"hostile-{uuid.uuid4()}"})
                published[ack.stream] = max(published.get(ack.stream, 0), ack.seq)

        consumers = [c for c in Consumers.all() if c.stream.name in published]

        async def behind() -> list[str]:
            late = []
            for spec in consumers:
                info = await js.consumer_info(spec.stream.name, spec.durable)
                if spec in WAITS_FOR_UNKNOWN_MESSAGES:
                    if info.num_pending:
                        late.append(f"{spec.durable} ({info.num_pending} never delivered)")
                elif info.ack_floor.stream_seq < published[spec.stream.name]:
                    late.append(
                        f"{spec.durable} (acked to {info.ack_floor.stream_seq} of {published[spec.stream.name]})"
                    )
            return late

        async def settled() -> bool:
            return not await behind()

        # The first retry of a failed handler comes after 1 s, the next after 5, then 15: a
        # hostile message retried instead of settled would still be pending long after this.
        try:
            await eventually(settled, "every consumer to have settled the hostile messages", seconds=12)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; behind: {', '.join(await behind())}") from None

        dead = await js.subscribe(f"{DEAD_LETTER_PREFIX}.>", stream=Streams.DEAD_LETTERS.name, ordered_consumer=True)
        reasons: list[str] = []
        try:
            while True:
                msg = await dead.next_msg(timeout=1)
                reasons.append((msg.headers or {}).get(ERROR_HEADER, ""))
        except TimeoutError:
            pass
        finally:
            await dead.unsubscribe()
        assert reasons and all(reasons), "a dead letter without its reason"
        assert all("\n" not in r and "\r" not in r for r in reasons)
    finally:
        await nc.close()
