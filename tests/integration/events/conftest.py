"""Fixtures for the events service tests.

The production durable consumers are never created here (the NATS server is shared with other
services' tests): tests call the handlers with the bytes JetStream would deliver.
`h` is the edge run in-process for the property and regression tests of the edge
(test_edge_*.py; see edge_properties_support.py).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from edge_properties_support import BODY_LIMIT, Harness, RecordingJetStream
from events_helpers import MAIL_DOMAIN, SECRET, T0, Sent, accepted_message, outcome
from secured import caller_channel, server_security

from dripiq.events.v1 import events_service_pb2_grpc as pb_grpc
from dripiq_common.clock import ManualClock
from dripiq_common.grpc_server import GrpcServer
from dripiq_common.tokens import TokenSigner, rfc_message_id
from dripiq_devtools.fake_sendgrid import FakeSendGrid, new_message_id
from dripiq_events.edge.app import BodyLimits, Edge
from dripiq_events.edge.proofs import ParseAuth, load_verifiers
from dripiq_events.handlers import EventsServicer
from dripiq_events.ingest import EventIngest
from dripiq_events.queries import EventQuery


@pytest_asyncio.fixture
async def stub(engine):  # type: ignore[no-untyped-def]
    """The events API served as the service serves it (TLS, the caller's token), over `engine`."""
    servicer = EventsServicer(EventQuery(engine))
    server = GrpcServer(
        address="127.0.0.1:0",
        service_names=["dripiq.events.v1.EventsService"],
        register=[lambda s: pb_grpc.add_EventsServiceServicer_to_server(servicer, s)],
        security=server_security(serves_as="events"),
    )
    await server.start()
    async with caller_channel(f"127.0.0.1:{server.port}") as channel:
        yield pb_grpc.EventsServiceStub(channel)
    await server.stop(0)


@pytest.fixture
def signer() -> TokenSigner:
    return TokenSigner(SECRET)


@pytest.fixture
def ingest(engine, signer) -> EventIngest:  # type: ignore[no-untyped-def]
    return EventIngest(engine, ManualClock(T0), signer)


@pytest.fixture
def send(ingest: EventIngest) -> Callable[..., Awaitable[Sent]]:
    """Record a sent message through the outcome consumer's handler (unless recorded=False)."""

    async def _send(tenant_id: str, *, custom_args: bool = True, recorded: bool = True) -> Sent:
        message_id, x_message_id = str(uuid.uuid4()), new_message_id()
        sent = Sent(
            tenant_id,
            message_id,
            x_message_id,
            rfc_message_id(message_id, MAIL_DOMAIN),
            accepted_message(tenant_id, message_id, x_message_id, custom_args=custom_args),
        )
        if recorded:
            assert await ingest.record_outcome(outcome(sent))
        return sent

    return _send


# Package scope (no __init__.py here, so pytest keeps it for the session): one edge for every
# property and regression test of the edge, which are split over several modules by topic.
@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def h(nats_conn, engine) -> AsyncIterator[Harness]:  # type: ignore[no-untyped-def]
    fake, signer = FakeSendGrid(), TokenSigner(SECRET)
    recorder = RecordingJetStream(nats_conn.jetstream())
    edge = Edge(
        js=recorder,  # type: ignore[arg-type]
        nc=nats_conn,
        verifiers=load_verifiers(fake.public_key_base64),
        signer=signer,
        limits=BodyLimits.all(BODY_LIMIT),
        signature_tolerance_seconds=600,
        parse_auth=ParseAuth(verifiers=load_verifiers(fake.parse_public_key_base64)),
        # The property tests post one request at a time; no example may meet a busy edge.
        max_in_flight=1000,
    )
    assert edge.body_limit(BODY_LIMIT) == BODY_LIMIT
    runner = web.AppRunner(edge.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    async with aiohttp.ClientSession() as http:
        yield Harness(
            base=f"http://127.0.0.1:{runner.addresses[0][1]}",
            http=http,
            recorder=recorder,
            fake=fake,
            signer=signer,
            ingest=EventIngest(engine, ManualClock(T0), signer),
            engine=engine,
        )
    await runner.cleanup()
