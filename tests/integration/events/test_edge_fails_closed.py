"""The edge fails closed (docs/decisions/0041-edge-fails-closed.md).

Start-up is checked by running `python -m dripiq_events.edge` as the deployment does. Requests
go to the real edge app on 127.0.0.1 against a NATS server of this module's own (the streams'
limits are changed here, and the events service's real durable consumer reads EDGE_INBOUND),
and the events service's worker stores what the consumer delivers into PostgreSQL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from events_helpers import MAIL_DOMAIN, SECRET
from prometheus_client import REGISTRY
from sqlalchemy import select
from waiting import eventually

from dripiq.events.v1.messages_pb2 import RawWebhook
from dripiq_common.bus.client import connect, ensure_streams
from dripiq_common.bus.contract import Consumers, Streams, Subjects
from dripiq_common.bus.worker import PullWorker, per_message
from dripiq_common.clock import SystemClock
from dripiq_common.tokens import TokenSigner, reply_address
from dripiq_devtools.fake_sendgrid import FakeSendGrid
from dripiq_devtools.servers import EmbeddedNats
from dripiq_events.edge.app import EVENTS_PATH, INBOUND_PATH, TOKEN_PATH, BodyLimits, Edge
from dripiq_events.edge.proofs import OAuthClient, ParseAuth, load_verifiers
from dripiq_events.ingest import EventIngest
from dripiq_events.models import inbound_emails

FAKE = FakeSendGrid()
URL_SECRET = "a-parse-url-secret-" + "x" * 20
CLIENT_SECRET = "an-oauth-client-secret-" + "y" * 20
OAUTH = OAuthClient("sendgrid", CLIENT_SECRET, token_ttl_seconds=600)
TOKEN_SECRET = "a-token-secret-that-is-long-enough"


# --- start-up, as the process starts ---------------------------------------------------------

BASE_ENV = {
    "DRIPIQ_TOKEN_SECRET": TOKEN_SECRET,
    "SENDGRID_WEBHOOK_PUBLIC_KEY": FAKE.public_key_base64,
    "SENDGRID_PARSE_PUBLIC_KEY": FAKE.parse_public_key_base64,
    # Never reached: every case stops before it connects.
    "NATS_URL": "nats://127.0.0.1:9",
}


def start_edge(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_", "SENDGRID_", "DRIPIQ_"))}
    merged = {**clean, **BASE_ENV, **env}
    return subprocess.run(
        [sys.executable, "-m", "dripiq_events.edge"],
        env={k: v for k, v in merged.items() if v is not None},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        # The hole this closes: no signature, an empty client secret, and OAuth silently off.
        (
            {"EDGE_REQUIRE_SIGNATURE": "false", "EDGE_OAUTH_CLIENT_ID": "sg", "EDGE_OAUTH_CLIENT_SECRET": ""},
            "EDGE_OAUTH_CLIENT_SECRET: Value error, must be at least 32 characters",
        ),
        (
            {
                "EDGE_REQUIRE_SIGNATURE": "false",
                "EDGE_OAUTH_CLIENT_ID": "sg",
                "EDGE_OAUTH_CLIENT_SECRET": "tiny-secret-1",
            },
            "EDGE_OAUTH_CLIENT_SECRET: Value error, must be at least 32 characters",
        ),
        ({"EDGE_REQUIRE_SIGNATURE": "false"}, "EDGE_REQUIRE_SIGNATURE=false needs OAuth"),
        ({"EDGE_OAUTH_CLIENT_ID": "", "EDGE_OAUTH_CLIENT_SECRET": CLIENT_SECRET}, "EDGE_OAUTH_CLIENT_ID and"),
        ({"SENDGRID_WEBHOOK_PUBLIC_KEY": ""}, "SENDGRID_WEBHOOK_PUBLIC_KEY is required"),
        ({"SENDGRID_WEBHOOK_PUBLIC_KEY": "bm90IGEga2V5"}, "SENDGRID_WEBHOOK_PUBLIC_KEY: Value error"),
        ({"SENDGRID_PARSE_PUBLIC_KEY": ""}, "Inbound Parse would be unauthenticated"),
        (
            {"SENDGRID_PARSE_PUBLIC_KEY": "", "EDGE_PARSE_URL_SECRET": "tiny-secret-2"},
            "EDGE_PARSE_URL_SECRET: Value error",
        ),
        ({"EDGE_PARSE_OAUTH": "true"}, "EDGE_PARSE_OAUTH=true needs EDGE_OAUTH_CLIENT_ID"),
    ],
    ids=[
        "empty-client-secret",
        "short-client-secret",
        "no-signature-no-oauth",
        "empty-client-id",
        "no-event-key",
        "bad-event-key",
        "parse-unauthenticated",
        "short-url-secret",
        "parse-oauth-without-client",
    ],
)
def test_a_fail_open_configuration_does_not_start(env, named):
    started = start_edge(**env)
    assert started.returncode != 0
    assert named in started.stderr, started.stderr
    # A secret is never echoed, not even a wrong one.
    for secret in (CLIENT_SECRET, "tiny-secret-1", "tiny-secret-2"):
        assert secret not in started.stderr


def test_the_edge_refuses_to_be_built_fail_open():
    """Whoever builds the app without the settings (a test, a tool) meets the same rule."""
    ok = {
        "js": None,
        "nc": None,
        "verifiers": load_verifiers(FAKE.public_key_base64),
        "signer": TokenSigner(SECRET),
        "signature_tolerance_seconds": 600,
        "parse_auth": ParseAuth(url_secret=URL_SECRET),
    }
    Edge(**ok)  # type: ignore[arg-type]
    for change, why in [
        ({"require_signature": False}, "OAuth is required"),
        ({"verifiers": ()}, "no public key"),
        ({"oauth": OAuthClient("sg", "")}, "at least 32"),
        ({"parse_auth": ParseAuth()}, "Inbound Parse needs"),
        ({"parse_auth": ParseAuth(oauth=True)}, "needs the OAuth client"),
        ({"parse_auth": ParseAuth(url_secret="short")}, "at least 32"),
    ]:
        with pytest.raises(ValueError, match=why):
            Edge(**{**ok, **change})  # type: ignore[arg-type]


# --- requests, against a NATS server of our own ---------------------------------------------------


@pytest.fixture(scope="module")
def own_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats(tmp_path_factory.mktemp("edge-nats")).start()
    yield server
    server.stop()


@pytest_asyncio.fixture(scope="module")
async def nc(own_nats: EmbeddedNats):  # type: ignore[no-untyped-def]
    conn = await connect(own_nats.url, name="edge-tests")
    await ensure_streams(conn.jetstream(), Streams.all())
    yield conn
    await conn.drain()


@asynccontextmanager
async def serving(edge: Edge) -> AsyncIterator[str]:
    runner = web.AppRunner(edge.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def new_edge(nc, **options) -> Edge:  # type: ignore[no-untyped-def]
    settings = {
        "js": nc.jetstream(),
        "nc": nc,
        "verifiers": load_verifiers(FAKE.public_key_base64),
        "signer": TokenSigner(SECRET),
        "signature_tolerance_seconds": 600,
        "parse_auth": ParseAuth(verifiers=load_verifiers(FAKE.parse_public_key_base64)),
        "limits": BodyLimits(events=64 * 1024, inbound=128 * 1024, unsubscribe=256, token=256),
        **options,
    }
    return Edge(**settings)


async def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], str]:
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as response:
        return response.status, dict(response.headers), await response.text()


async def waiting_inbound(nc) -> int:  # type: ignore[no-untyped-def]
    return (await nc.jetstream().stream_info(Streams.EDGE_INBOUND.name)).state.messages


def reply_fields(to: str, text: str) -> dict[str, str | bytes]:
    return {
        "to": to,
        "from": "Ada <ada@example.com>",
        "subject": "Re: Hello",
        "text": text,
        "headers": f"From: ada@example.com\nTo: {to}\nSubject: Re: Hello\n",
        "envelope": f'{{"to": ["{to}"], "from": "ada@example.com"}}',
    }


async def test_unsigned_inbound_is_403_and_a_signed_reply_is_stored_through_the_events_consumer(nc, engine, send):
    tenant_id = f"t-{uuid.uuid4().hex[:12]}"
    sent = await send(tenant_id)
    signer = TokenSigner(SECRET)
    fields = reply_fields(reply_address(signer, sent.message_id, MAIL_DOMAIN), f"Yes, let's talk {uuid.uuid4()}")
    async with serving(new_edge(nc)) as base:
        before = await waiting_inbound(nc)
        unsigned, headers = FAKE.signed_inbound(fields, signed=False)
        status, _, text = await post(base + INBOUND_PATH, unsigned, headers)
        assert (status, "missing signature headers" in text) == (403, True)
        # Signed with another key (the Event Webhook's, say): not the Parse policy's.
        body, headers = FAKE.signed_inbound(fields)
        forged = {
            **headers,
            "X-Twilio-Email-Event-Webhook-Signature": FAKE.sign(
                body, headers["X-Twilio-Email-Event-Webhook-Timestamp"]
            ),
        }
        assert (await post(base + INBOUND_PATH, body, forged))[0] == 403
        assert await waiting_inbound(nc) == before

        assert await FAKE.post_inbound(base + INBOUND_PATH, fields) == 200

    ingest = EventIngest(engine, SystemClock(), signer)
    worker = PullWorker(
        nc.jetstream(),
        nc,
        Consumers.EVENTS_INBOUND,
        per_message(lambda m: ingest.handle_webhook(m.data)),
        fetch_timeout=0.2,
    )
    task = asyncio.create_task(worker.run())
    try:

        async def stored():  # type: ignore[no-untyped-def]
            async with engine.connect() as conn:
                return (await conn.execute(select(inbound_emails).where(inbound_emails.c.tenant_id == tenant_id))).all()

        [mail] = await eventually(stored, "the signed reply stored")
        assert (mail.matched, mail.message_id, mail.text_body) == (True, sent.message_id, fields["text"])
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)


async def test_the_url_secret_lets_an_account_without_a_policy_post(nc):
    edge = new_edge(nc, parse_auth=ParseAuth(url_secret=URL_SECRET))
    body, headers = FAKE.signed_inbound(reply_fields("sales@dripiq.test", f"hi {uuid.uuid4()}"), signed=False)
    async with serving(edge) as base:
        before = await waiting_inbound(nc)
        for path, why in [
            (INBOUND_PATH, "only at its secret URL"),
            (f"{INBOUND_PATH}/{URL_SECRET[:-1]}Z", "wrong Inbound Parse URL secret"),
            (f"{INBOUND_PATH}/{URL_SECRET[:-1]}", "wrong Inbound Parse URL secret"),
        ]:
            status, _, text = await post(base + path, body, headers)
            assert (status, why in text) == (403, True), text
        assert await waiting_inbound(nc) == before
        assert (await post(f"{base}{INBOUND_PATH}/{URL_SECRET}", body, headers))[0] == 200
        assert await waiting_inbound(nc) == before + 1
    # Without a URL secret configured, a guessed one is refused too.
    async with serving(new_edge(nc)) as base:
        signed_body, signed = FAKE.signed_inbound(reply_fields("sales@dripiq.test", "hi"))
        status, _, text = await post(f"{base}{INBOUND_PATH}/{URL_SECRET}", signed_body, signed)
        assert (status, "no Inbound Parse URL secret" in text) == (403, True)


async def test_parse_oauth_needs_a_token_this_edge_issued(nc):
    edge = new_edge(nc, oauth=OAUTH, parse_auth=ParseAuth(oauth=True))
    body, headers = FAKE.signed_inbound(reply_fields("sales@dripiq.test", f"hi {uuid.uuid4()}"), signed=False)
    async with serving(edge) as base:
        assert (await post(base + INBOUND_PATH, body, headers))[0] == 403
        form = f"grant_type=client_credentials&client_id=sendgrid&client_secret={CLIENT_SECRET}".encode()
        status, _, text = await post(base + TOKEN_PATH, form, {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 200, text
        token = json.loads(text)["access_token"]
        assert (
            await FAKE.post_inbound(base + INBOUND_PATH, reply_fields("s@dripiq.test", "hi"), bearer_token=token) == 200
        )


async def test_each_route_refuses_a_body_over_its_own_cap_without_reading_it_all(nc):
    async with serving(new_edge(nc)) as base:
        events, headers = FAKE.signed_request([{"event": "open", "pad": "x" * 70_000}])
        status, _, text = await post(base + EVENTS_PATH, events, headers)
        assert (status, "larger than 65536 bytes" in text) == (413, True)

        mail, headers = FAKE.signed_inbound(reply_fields("s@dripiq.test", "x" * 140_000))
        status, _, text = await post(base + INBOUND_PATH, mail, headers)
        assert (status, "larger than 131072 bytes" in text) == (413, True)

        token = TokenSigner(SECRET).unsubscribe_token("t-1", str(uuid.uuid4()))
        form = b"List-Unsubscribe=One-Click&" + b"x" * 300
        status, _, text = await post(f"{base}/u/{token}", form, {"Content-Type": "application/x-www-form-urlencoded"})
        assert (status, "larger than 256 bytes" in text) == (413, True)

    async with serving(new_edge(nc, oauth=OAUTH)) as base:
        form = b"grant_type=client_credentials&client_id=sendgrid&client_secret=" + b"z" * 300
        assert (await post(base + TOKEN_PATH, form, {"Content-Type": "application/x-www-form-urlencoded"}))[0] == 413

        # Chunked, with no length to refuse it by: the cap holds while reading.
        release = asyncio.Event()

        async def endless():  # type: ignore[no-untyped-def]
            for _ in range(64):
                yield b"x" * 8192
            await release.wait()
            yield b"never read"

        async with aiohttp.ClientSession() as session:
            async with session.post(
                base + EVENTS_PATH, data=endless(), headers={"Content-Type": "application/json"}
            ) as response:
                assert response.status == 413
        release.set()


async def test_past_the_requests_in_flight_the_edge_answers_503_with_retry_after(nc):
    edge = new_edge(nc, max_in_flight=1, retry_after_seconds=7)
    release = asyncio.Event()
    first_sent = asyncio.Event()
    batch, headers = FAKE.signed_request([{"event": "open", "sg_event_id": uuid.uuid4().hex}])

    async def slow_body():  # type: ignore[no-untyped-def]
        yield batch[:10]
        first_sent.set()
        await release.wait()
        yield batch[10:]

    async with serving(edge) as base, aiohttp.ClientSession() as session:
        held = asyncio.create_task(post_stream(session, base + EVENTS_PATH, slow_body(), headers))
        await first_sent.wait()
        await eventually(lambda: edge.in_flight == 1, "the first request in flight")
        failures_before = counted(EVENTS_PATH, "503")
        shed_before = REGISTRY.get_sample_value("dripiq_edge_shed_total", {"route": EVENTS_PATH}) or 0.0
        status, answer_headers, text = await post(base + EVENTS_PATH, batch, headers)
        assert (status, answer_headers.get("Retry-After")) == (503, "7"), text
        # Shed on purpose, counted apart: the 5xx alert on dripiq_edge_requests means failures.
        assert counted(EVENTS_PATH, "503") == failures_before
        assert REGISTRY.get_sample_value("dripiq_edge_shed_total", {"route": EVENTS_PATH}) == shed_before + 1
        # Probes still answer: a busy edge is not a dead one.
        async with session.get(base + "/readyz") as ready:
            assert ready.status == 200
        release.set()
        assert await held == 200
        assert (await post(base + EVENTS_PATH, batch, headers))[0] == 200
        assert edge.in_flight == 0


def counted(route: str, status: str) -> float:
    return REGISTRY.get_sample_value("dripiq_edge_requests_total", {"route": route, "status": status}) or 0.0


async def post_stream(session: aiohttp.ClientSession, url: str, data, headers) -> int:  # type: ignore[no-untyped-def]
    async with session.post(url, data=data, headers=headers) as response:
        await response.read()
        return response.status


async def test_a_full_inbound_stream_is_503_and_keeps_what_it_took(nc):
    js = nc.jetstream()
    small = dataclasses.replace(Streams.EDGE_INBOUND, max_bytes=64 * 1024)
    await js.purge_stream(Streams.EDGE_INBOUND.name)
    await js.update_stream(small.config(1))
    try:
        taken: list[bytes] = []
        async with serving(new_edge(nc)) as base:
            for n in range(40):
                body, headers = FAKE.signed_inbound(reply_fields("s@dripiq.test", f"{n} " + "y" * 8000))
                failures_before = counted(INBOUND_PATH, "503")
                status, answer_headers, _ = await post(base + INBOUND_PATH, body, headers)
                if status == 503:
                    assert answer_headers["Retry-After"]
                    # Not shed: mail that could not be queued is a failure the 5xx alert counts.
                    assert counted(INBOUND_PATH, "503") == failures_before + 1
                    break
                assert status == 200
                taken.append(body)
            else:
                pytest.fail("the stream never filled")
            # The events and the unsubscribes wait in another stream: they are still taken.
            events, headers = FAKE.signed_request([{"event": "open", "sg_event_id": uuid.uuid4().hex}])
            assert (await post(base + EVENTS_PATH, events, headers))[0] == 200
        assert taken, "nothing was taken before the stream was full"
        info = await js.stream_info(Streams.EDGE_INBOUND.name)
        assert info.state.messages == len(taken)
        kept = [
            await js.get_msg(Streams.EDGE_INBOUND.name, seq=seq)
            for seq in range(info.state.first_seq, info.state.last_seq + 1)
        ]
        assert [RawWebhook.FromString(k.data).body for k in kept] == taken
        assert {k.subject for k in kept} == {Subjects.EDGE_SENDGRID_INBOUND}
    finally:
        await js.purge_stream(Streams.EDGE_INBOUND.name)
        await js.update_stream(Streams.EDGE_INBOUND.config(1))
