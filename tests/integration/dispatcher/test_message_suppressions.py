"""An unsubscribe is never lost: the address of a message the events service holds no record of
is suppressed by the dispatcher, which keeps every message. On real PostgreSQL and NATS.

The first test follows one click through every hop as production wires them: the edge over
HTTP, the EDGE_WEBHOOKS stream, the events service's handler, its outbox row published as the
relay would, and a real PullWorker on a consumer filtered to the test's own tenant.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from waiting import eventually

from dripiq.dispatcher.v1 import messages_pb2
from dripiq_common.bus.contract import ConsumerSpec, Streams, Subjects
from dripiq_common.bus.worker import PullWorker, per_message
from dripiq_common.clock import ManualClock
from dripiq_common.errors import PermanentMessageError
from dripiq_common.tokens import TokenSigner
from dripiq_devtools.fake_sendgrid import FakeSendGrid
from dripiq_dispatcher import convert, repository
from dripiq_dispatcher.failures import RetryLater
from dripiq_dispatcher.message_suppressions import MessageSuppressions
from dripiq_dispatcher.models import suppressions
from dripiq_events.edge.app import BodyLimits, Edge
from dripiq_events.edge.proofs import ParseAuth, load_verifiers
from dripiq_events.ingest import EventIngest
from dripiq_events.models import outbox as events_outbox

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
CLICKED = datetime(2030, 3, 4, 8, 15, tzinfo=UTC)
SIGNER = TokenSigner(b"integration-test-token-secret")


@pytest.fixture
def handler(engine: AsyncEngine) -> MessageSuppressions:
    return MessageSuppressions(engine, ManualClock(T0))


async def known_message(engine: AsyncEngine, tenant_id: str, message_id: str, to_email: str) -> None:
    """The dispatcher's row of a message, as its send path records it."""
    command = messages_pb2.SendMessageCommand(
        tenant_id=tenant_id,
        message_id=message_id,
        campaign_id="camp-9",
        step_index=0,
        contact_id="contact-1",
        channel="email",
        to_email=to_email,
        sender_identity_id="identity-1",
        subject="Hello",
        body_text="Hi",
    )
    async with engine.begin() as conn:
        await repository.messages.insert_messages(conn, batch=[convert.new_message(command)], now=T0)


def command(tenant_id: str, message_id: str, **overrides: Any) -> messages_pb2.SuppressByMessageCommand:
    cmd = messages_pb2.SuppressByMessageCommand(
        **{"tenant_id": tenant_id, "message_id": message_id, "reason": "unsubscribe", **overrides}
    )
    if "occurred_at" not in overrides:
        cmd.occurred_at.FromDatetime(CLICKED)
    return cmd


async def suppressed(engine: AsyncEngine, tenant_id: str) -> list[Any]:
    async with engine.connect() as conn:
        return list(
            (
                await conn.execute(
                    select(suppressions).where(suppressions.c.tenant_id == tenant_id).order_by(suppressions.c.id)
                )
            ).all()
        )


def worker_count(durable: str, result: str) -> float:
    return REGISTRY.get_sample_value("dripiq_worker_messages_total", {"consumer": durable, "result": result}) or 0.0


@asynccontextmanager
async def suppress_worker(js, nats_conn, handler: MessageSuppressions, tenant_id: str) -> AsyncIterator[ConsumerSpec]:  # type: ignore[no-untyped-def]
    """A real PullWorker on the tenant's suppress subject, retrying within a fraction of a second."""
    spec = ConsumerSpec(
        Streams.DISPATCHER_SUPPRESS,
        f"test-suppress-{tenant_id}",
        Subjects.dispatcher_suppress(tenant_id),
        max_deliver=50,
        retry_delays_seconds=(0.1,),
    )
    worker = PullWorker(
        js, nats_conn, spec, per_message(lambda msg: handler.handle(msg.data, subject=msg.subject)), fetch_timeout=0.2
    )
    await js.add_consumer(Streams.DISPATCHER_SUPPRESS.name, spec.config())
    task = asyncio.create_task(worker.run())
    try:
        yield spec
    finally:
        worker.stop()
        await task
        await js.delete_consumer(Streams.DISPATCHER_SUPPRESS.name, spec.durable)


async def publish_outboxed(engine: AsyncEngine, js, subject: str) -> int:  # type: ignore[no-untyped-def]
    """Publish and delete the events outbox's rows on one subject, as its relay would."""
    async with engine.begin() as conn:
        rows = (
            await conn.execute(
                select(events_outbox.c.id, events_outbox.c.payload).where(events_outbox.c.subject == subject)
            )
        ).all()
        for row in rows:
            await js.publish(subject, row.payload, headers={"Nats-Msg-Id": f"events:{row.id}"})
            await conn.execute(events_outbox.delete().where(events_outbox.c.id == row.id))
    return len(rows)


@asynccontextmanager
async def edge_serving(nats_conn) -> AsyncIterator[str]:  # type: ignore[no-untyped-def]
    edge = Edge(
        js=nats_conn.jetstream(),
        nc=nats_conn,
        verifiers=load_verifiers(FakeSendGrid().public_key_base64),
        signer=SIGNER,
        limits=BodyLimits.all(64 * 1024),
        signature_tolerance_seconds=600,
        parse_auth=ParseAuth(verifiers=load_verifiers(FakeSendGrid().parse_public_key_base64)),
    )
    runner = web.AppRunner(edge.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_an_unsubscribe_without_an_outbound_copy_suppresses_the_address_at_the_dispatcher(
    engine, js, nats_conn, handler, tenant_id
):
    """The events service never heard the message was sent (its copy is past retention, or
    the SENT outcome is late): the click is still honoured, through the dispatcher's record."""
    message_id = str(uuid.uuid4())
    await known_message(engine, tenant_id, message_id, " Ada.Lovelace@Example.com")
    async with edge_serving(nats_conn) as base, aiohttp.ClientSession() as session:
        url = f"{base}/u/{SIGNER.unsubscribe_token(tenant_id, message_id)}"
        async with session.post(url, data={"List-Unsubscribe": "One-Click"}) as response:
            assert response.status == 200 and "unsubscribed" in await response.text()
    taken = await js.get_last_msg(Streams.EDGE_WEBHOOKS.name, Subjects.EDGE_UNSUBSCRIBE)

    ingest = EventIngest(engine, ManualClock(T0), SIGNER)
    result = await ingest.handle_webhook(taken.data)
    assert (result.stored, result.published) == (1, 2)  # the event's fact, and the command
    assert await publish_outboxed(engine, js, Subjects.dispatcher_suppress(tenant_id)) == 1

    async with suppress_worker(js, nats_conn, handler, tenant_id):

        async def honoured() -> bool:
            return bool(await suppressed(engine, tenant_id))

        await eventually(honoured)
    [row] = await suppressed(engine, tenant_id)
    assert (row.address, row.reason, row.source) == ("ada.lovelace@example.com", "unsubscribe", f"message:{message_id}")
    # The same click again (a second post, a redelivery) stores and asks nothing more.
    assert (await ingest.handle_webhook(taken.data)).published == 0
    assert await publish_outboxed(engine, js, Subjects.dispatcher_suppress(tenant_id)) == 0


async def test_a_message_the_dispatcher_does_not_know_yet_is_retried_then_honoured(
    engine, js, nats_conn, handler, tenant_id
):
    message_id = str(uuid.uuid4())
    subject = Subjects.dispatcher_suppress(tenant_id)
    async with suppress_worker(js, nats_conn, handler, tenant_id) as spec:
        retried = worker_count(spec.durable, "retried")
        await js.publish(subject, command(tenant_id, message_id).SerializeToString())

        async def came_back_twice() -> bool:
            return worker_count(spec.durable, "retried") >= retried + 2

        await eventually(came_back_twice)
        assert await suppressed(engine, tenant_id) == []
        # Its row arrives (a restored database, a replica catching up): the next delivery honours it.
        await known_message(engine, tenant_id, message_id, "grace@example.com")

        async def honoured() -> bool:
            return bool(await suppressed(engine, tenant_id))

        await eventually(honoured)
        assert worker_count(spec.durable, "dead_lettered") == 0
    [row] = await suppressed(engine, tenant_id)
    assert (row.address, row.reason) == ("grace@example.com", "unsubscribe")


async def test_the_suppression_is_made_once_and_dated_by_the_request(engine, handler, tenant_id):
    message_id = str(uuid.uuid4())
    await known_message(engine, tenant_id, message_id, "ada@example.com")
    cmd = command(tenant_id, message_id).SerializeToString()
    await handler.handle(cmd, subject=Subjects.dispatcher_suppress(tenant_id))
    await handler.handle(cmd, subject=Subjects.dispatcher_suppress(tenant_id))
    [row] = await suppressed(engine, tenant_id)
    assert row.created_at == CLICKED
    # An address suppressed already (from the engagement fact, say) stays as it was.
    other = str(uuid.uuid4())
    await known_message(engine, tenant_id, other, "ADA@example.com")
    await handler.handle(command(tenant_id, other).SerializeToString())
    assert [r.source for r in await suppressed(engine, tenant_id)] == [f"message:{message_id}"]


async def test_an_unknown_message_raises_retry_later(engine, handler, tenant_id):
    with pytest.raises(RetryLater):
        await handler.handle(command(tenant_id, str(uuid.uuid4())).SerializeToString())


async def test_commands_that_can_never_be_honoured_are_dead_lettered(engine, handler, tenant_id):
    message_id = str(uuid.uuid4())
    await known_message(engine, tenant_id, message_id, "ada@example.com")
    with pytest.raises(PermanentMessageError):
        await handler.handle(b"\xff\xff not a protobuf")
    with pytest.raises(PermanentMessageError):
        await handler.handle(command("bad tenant!", message_id).SerializeToString())
    with pytest.raises(PermanentMessageError):
        await handler.handle(command(tenant_id, message_id, reason=" ").SerializeToString())
    # A payload naming one tenant on another tenant's subject is never trusted.
    with pytest.raises(PermanentMessageError):
        await handler.handle(
            command(tenant_id, message_id).SerializeToString(), subject=Subjects.dispatcher_suppress(f"{tenant_id}-x")
        )
    # Nor a tenant naming another tenant's message: waiting would not change whose it is.
    with pytest.raises(PermanentMessageError):
        await handler.handle(
            command(f"{tenant_id}-x", message_id).SerializeToString(),
            subject=Subjects.dispatcher_suppress(f"{tenant_id}-x"),
        )
    assert await suppressed(engine, tenant_id) == []
    assert await suppressed(engine, f"{tenant_id}-x") == []
