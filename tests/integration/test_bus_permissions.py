"""NATS with a user per process, as `make run` and production run it: each may publish what it
writes and read what it consumes, and nothing else; no process may change the streams."""

from __future__ import annotations

import asyncio
import secrets
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
import pytest_asyncio
from nats.js.api import StreamConfig
from waiting import eventually

from dripiq.planner.v1 import timers_pb2
from dripiq_common.bus.access import SETUP_USER, USERS, server_config
from dripiq_common.bus.client import inbox_prefix, tls_context
from dripiq_common.bus.contract import Consumers, Streams, Subjects
from dripiq_common.bus.setup import set_up
from dripiq_devtools.dev_pki import DevCA
from dripiq_devtools.servers import EmbeddedNats, nats_tls_config

PASSWORDS = {name: secrets.token_urlsafe(12) for name in [SETUP_USER, *USERS]}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevCA:
    return DevCA.create(Path(tmp_path_factory.mktemp("nats-pki")))


@pytest.fixture(scope="module")
def secured_nats(tmp_path_factory: pytest.TempPathFactory, pki: DevCA) -> Iterator[EmbeddedNats]:
    cert = pki.issue(pki.path.parent, "nats")
    config = server_config(PASSWORDS) + nats_tls_config(cert.cert, cert.key)
    server = EmbeddedNats(Path(tmp_path_factory.mktemp("nats-users")), extra_config=config).start()
    try:
        yield server
    finally:
        server.stop()


def url(server: EmbeddedNats | Bus, user: str) -> str:
    return server.url.replace("nats://", f"nats://{user}:{PASSWORDS[user]}@")


@dataclass(frozen=True)
class Bus:
    """The server, set up, and the CA its clients verify it against."""

    server: EmbeddedNats
    ca_file: str

    @property
    def url(self) -> str:
        return self.server.url


@pytest_asyncio.fixture(scope="module")
async def bus(secured_nats: EmbeddedNats, pki: DevCA) -> AsyncIterator[Bus]:
    await set_up(url(secured_nats, SETUP_USER), ca_file=str(pki.path))
    yield Bus(secured_nats, str(pki.path))


def tls(bus: Bus) -> ssl.SSLContext | None:
    return tls_context(bus.ca_file)


async def connected(server: Bus, user: str, errors: list[str]) -> nats.NATS:
    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    return await nats.connect(
        url(server, user), error_cb=on_error, allow_reconnect=False, inbox_prefix=inbox_prefix(user), tls=tls(server)
    )


async def stored(server: Bus, stream: str) -> int:
    admin = await nats.connect(url(server, SETUP_USER), tls=tls(server))
    try:
        return (await admin.jetstream().stream_info(stream)).state.messages
    finally:
        await admin.close()


async def test_the_edge_may_publish_webhooks_and_not_send_commands(bus: Bus) -> None:
    errors: list[str] = []
    edge = await connected(bus, "edge", errors)
    try:
        js = edge.jetstream()
        ack = await js.publish(Subjects.EDGE_SENDGRID_EVENTS, b"[]", timeout=5)
        assert ack.stream == Streams.EDGE_WEBHOOKS.name
        before = await stored(bus, Streams.DISPATCHER_SEND.name)
        await edge.publish(Subjects.dispatcher_send("t1"), b"forged")
        await edge.flush()
        # The server says no (a positive signal), then nothing was stored.
        await eventually(lambda: any("permissions violation" in e.lower() for e in errors), "the refusal")
        assert "dripiq.dispatcher.send.t1" in " ".join(errors)
        assert await stored(bus, Streams.DISPATCHER_SEND.name) == before
    finally:
        await edge.close()


async def test_no_process_may_create_or_change_a_stream(bus: Bus) -> None:
    errors: list[str] = []
    planner = await connected(bus, "planner", errors)
    try:
        with pytest.raises((nats.errors.TimeoutError, nats.js.errors.APIError, nats.errors.NoRespondersError)):
            await planner.jetstream(timeout=2).add_stream(StreamConfig(name="INTRUDER", subjects=["intruder.>"]))
        with pytest.raises((nats.errors.TimeoutError, nats.js.errors.APIError, nats.errors.NoRespondersError)):
            await planner.jetstream(timeout=2).delete_stream(Streams.DISPATCHER_SEND.name)
        await eventually(lambda: errors, "the refusals")
    finally:
        await planner.close()


async def test_a_process_reads_and_acks_its_own_consumer(bus: Bus) -> None:
    timer = timers_pb2.PlannerTimer(tenant_id="t1", campaign_id="c1")
    admin = await nats.connect(url(bus, SETUP_USER), tls=tls(bus))
    try:
        await admin.jetstream().publish(Subjects.planner_timer("t1"), timer.SerializeToString(), timeout=5)
    finally:
        await admin.close()
    errors: list[str] = []
    planner = await connected(bus, "planner", errors)
    try:
        spec = Consumers.PLANNER_TIMERS
        sub = await planner.jetstream().pull_subscribe_bind(durable=spec.durable, stream=spec.stream.name)
        [msg] = await sub.fetch(1, timeout=5)
        assert timers_pb2.PlannerTimer.FromString(msg.data).campaign_id == "c1"
        await msg.ack_sync(timeout=5)
        # Another service's consumer is not the planner's to read.
        other = Consumers.DISPATCHER_SEND
        foreign = await planner.jetstream().pull_subscribe_bind(durable=other.durable, stream=other.stream.name)
        with pytest.raises((nats.errors.TimeoutError, asyncio.TimeoutError)):
            await foreign.fetch(1, timeout=1)
        await eventually(lambda: errors, "the refusal")
    finally:
        await planner.close()
    assert errors == [] or all("permissions violation" in e.lower() for e in errors)


async def test_a_process_may_not_listen_on_another_process_inboxes(bus: Bus) -> None:
    errors: list[str] = []
    edge = await connected(bus, "edge", errors)
    try:
        await edge.subscribe(f"{inbox_prefix('planner')}.>")
        await edge.flush()
        await eventually(lambda: any("permissions violation" in e.lower() for e in errors), "the refusal")
    finally:
        await edge.close()


async def test_a_client_without_tls_gets_no_connection(bus: Bus) -> None:
    with pytest.raises(Exception):  # noqa: B017 - nats-py reports a refused plaintext client in several ways
        plain = await nats.connect(
            url(bus, "planner"), allow_reconnect=False, connect_timeout=2, max_reconnect_attempts=0
        )
        await plain.close()
