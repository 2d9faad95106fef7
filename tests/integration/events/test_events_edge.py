"""The HTTP edge in-process on 127.0.0.1, against the shared NATS server.

What the edge published is read back from the EDGE_WEBHOOKS stream itself (no consumer), and
the same bytes are handed to the events service's handler, as its worker would.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from events_helpers import SECRET, accepted_message

from dripiq.events.v1 import messages_pb2
from dripiq_common.bus.contract import Subjects, stream_for_subject
from dripiq_common.clock import ManualClock
from dripiq_common.tokens import TokenSigner
from dripiq_devtools.fake_sendgrid import SIGNATURE_HEADER, TIMESTAMP_HEADER, FakeSendGrid, build_event
from dripiq_events.edge.app import EVENTS_PATH, INBOUND_PATH, TOKEN_PATH, BodyLimits, Edge
from dripiq_events.edge.proofs import OAuthClient, ParseAuth, load_verifier, load_verifiers

BODY_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def fake() -> FakeSendGrid:
    """Signs like SendGrid; no server needed for that."""
    return FakeSendGrid()


@asynccontextmanager
async def serving(edge: Edge) -> AsyncIterator[tuple[Edge, str]]:
    runner = web.AppRunner(edge.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield edge, f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def new_edge(nats_conn, fake, signer, **options) -> Edge:  # type: ignore[no-untyped-def]
    return Edge(
        js=nats_conn.jetstream(),
        nc=nats_conn,
        verifiers=load_verifiers(fake.public_key_base64),
        signer=signer,
        limits=BodyLimits.all(BODY_LIMIT),
        signature_tolerance_seconds=600,
        **{"parse_auth": ParseAuth(verifiers=load_verifiers(fake.parse_public_key_base64)), **options},
    )


@pytest_asyncio.fixture
async def edge(nats_conn, fake, signer) -> AsyncIterator[tuple[Edge, str]]:  # type: ignore[no-untyped-def]
    async with serving(new_edge(nats_conn, fake, signer)) as served:
        yield served


def stream_of(subject: str) -> str:
    stream = stream_for_subject(subject)
    assert stream is not None
    return stream.name


async def published(js, subject: str) -> int:  # type: ignore[no-untyped-def]
    info = await js.stream_info(stream_of(subject), subjects_filter=subject)
    return (info.state.subjects or {}).get(subject, 0)


async def last_raw(js, subject: str) -> tuple[messages_pb2.RawWebhook, dict[str, str]]:  # type: ignore[no-untyped-def]
    msg = await js.get_last_msg(stream_of(subject), subject)
    return messages_pb2.RawWebhook.FromString(msg.data), dict(msg.headers or {})


async def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict | str]:  # type: ignore[type-arg]
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as response:
        payload = await response.json() if response.content_type == "application/json" else await response.text()
        return response.status, payload


def events_batch(tenant_id: str) -> list[dict]:  # type: ignore[type-arg]
    message = accepted_message(tenant_id, str(uuid.uuid4()), f"x{uuid.uuid4().hex[:21]}")
    return [build_event(message, "delivered"), build_event(message, "open")]


async def test_signed_batch_is_published_after_the_puback(edge, fake, js, ingest, tenant_id):
    _, base = edge
    before = await published(js, Subjects.EDGE_SENDGRID_EVENTS)
    body, headers = fake.signed_request(events_batch(tenant_id))
    assert await post(base + EVENTS_PATH, body, headers) == (200, {"accepted": 2})
    raw, msg_headers = await last_raw(js, Subjects.EDGE_SENDGRID_EVENTS)
    assert raw.kind == messages_pb2.RawWebhook.KIND_SENDGRID_EVENTS
    assert raw.body == body and raw.HasField("received_at")
    assert msg_headers["Nats-Msg-Id"] == hashlib.sha256(headers[SIGNATURE_HEADER].encode() + body).hexdigest()

    # SendGrid retrying the same batch is answered 200 and dropped by JetStream's dedupe.
    assert (await post(base + EVENTS_PATH, body, headers))[0] == 200
    assert await published(js, Subjects.EDGE_SENDGRID_EVENTS) == before + 1

    # What the edge published is exactly what the events worker handles.
    msg = await js.get_last_msg(stream_of(Subjects.EDGE_SENDGRID_EVENTS), Subjects.EDGE_SENDGRID_EVENTS)
    assert (await ingest.handle_webhook(msg.data)).published == 2


@pytest.mark.parametrize("tamper", ["unsigned", "other_key", "changed_body", "stale", "future"])
async def test_untrusted_batches_are_refused_and_not_published(edge, fake, js, tenant_id, tamper):
    _, base = edge
    events = events_batch(tenant_id)
    body, headers = fake.signed_request(events)
    if tamper == "unsigned":
        headers = {"Content-Type": "application/json"}
    elif tamper == "other_key":
        body, headers = FakeSendGrid().signed_request(events)
    elif tamper == "changed_body":
        body = body.replace(b'"delivered"', b'"bounce"')
    else:
        skew = -3600 if tamper == "stale" else 3600
        signer = FakeSendGrid(private_key_pem=fake.private_key_pem, clock=lambda: time.time() + skew)
        body, headers = signer.signed_request(events)
    before = await published(js, Subjects.EDGE_SENDGRID_EVENTS)
    status, payload = await post(base + EVENTS_PATH, body, headers)
    assert status == 403 and payload["error"]
    assert await published(js, Subjects.EDGE_SENDGRID_EVENTS) == before


async def test_a_signed_body_that_is_not_a_json_array_is_400(edge, fake, js):
    _, base = edge
    before = await published(js, Subjects.EDGE_SENDGRID_EVENTS)
    for body in (b'{"event": "open"}', b"not json"):
        timestamp = str(int(time.time()))
        headers = {SIGNATURE_HEADER: fake.sign(body, timestamp), TIMESTAMP_HEADER: timestamp}
        status, payload = await post(base + EVENTS_PATH, body, headers)
        assert status == 400 and "JSON" in payload["error"]
    assert await published(js, Subjects.EDGE_SENDGRID_EVENTS) == before


async def test_bodies_over_the_limit_are_413(edge, fake, js):
    _, base = edge
    huge = [{"event": "open", "padding": "x" * BODY_LIMIT}]
    body, headers = fake.signed_request(huge)
    status, payload = await post(base + EVENTS_PATH, body, headers)
    assert status == 413 and str(BODY_LIMIT) in payload["error"]

    async def chunked():  # no Content-Length: the limit holds while reading
        yield b"--b\r\n" + b"x" * BODY_LIMIT
        yield b"\r\n--b--\r\n"

    async with aiohttp.ClientSession() as session:
        async with session.post(
            base + INBOUND_PATH, data=chunked(), headers={"Content-Type": "multipart/form-data; boundary=b"}
        ) as response:
            assert response.status == 413


async def test_inbound_mail_is_published_with_its_content_type(edge, fake, js):
    _, base = edge
    body, headers = fake.signed_inbound({"text": f"reply {uuid.uuid4()}", "to": "reply+abc@mail.test"})
    content_type = headers["Content-Type"]
    assert (await post(base + INBOUND_PATH, body, headers))[0] == 200
    raw, headers = await last_raw(js, Subjects.EDGE_SENDGRID_INBOUND)
    assert (raw.kind, raw.body, raw.content_type) == (messages_pb2.RawWebhook.KIND_SENDGRID_INBOUND, body, content_type)
    assert headers["Nats-Msg-Id"] == "inbound:" + hashlib.sha256(content_type.encode() + b"\n" + body).hexdigest()

    status, payload = await post(base + INBOUND_PATH, b'{"not": "multipart"}', {"Content-Type": "application/json"})
    assert status == 400 and "multipart" in payload["error"]


async def test_unsubscribe_page_asks_and_one_click_post_publishes(edge, js, signer, tenant_id):
    _, base = edge
    message_id = str(uuid.uuid4())
    url = f"{base}/u/{signer.unsubscribe_token(tenant_id, message_id)}"
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            page = await response.text()
            assert response.status == 200 and '<form method="post">' in page
            assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
        before = await published(js, Subjects.EDGE_UNSUBSCRIBE)
        # RFC 8058: what Gmail and Apple Mail post, without cookies.
        async with session.post(url, data={"List-Unsubscribe": "One-Click"}) as response:
            assert response.status == 200 and "unsubscribed" in await response.text()
    assert await published(js, Subjects.EDGE_UNSUBSCRIBE) == before + 1
    raw, headers = await last_raw(js, Subjects.EDGE_UNSUBSCRIBE)
    assert dict(raw.fields) == {"tenant_id": tenant_id, "message_id": message_id}
    assert headers["Nats-Msg-Id"] == f"unsub:{message_id}"


async def test_a_bad_unsubscribe_token_is_400_and_publishes_nothing(edge, js, signer, tenant_id):
    _, base = edge
    token = signer.unsubscribe_token(tenant_id, str(uuid.uuid4()))
    # A changed character inside the token, where every bit counts (unlike the last one).
    forged = token[:5] + ("B" if token[5] != "B" else "C") + token[6:]
    before = await published(js, Subjects.EDGE_UNSUBSCRIBE)
    async with aiohttp.ClientSession() as session:
        for method in ("GET", "POST"):
            async with session.request(method, f"{base}/u/{forged}") as response:
                assert response.status == 400 and "not valid" in await response.text()
    assert await published(js, Subjects.EDGE_UNSUBSCRIBE) == before


async def unsubscribe_post(base: str, token: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{base}/u/{token}", data={"List-Unsubscribe": "One-Click"}) as response,
    ):
        return response.status, await response.text()


async def test_a_refused_unsubscribe_link_says_why_and_publishes_nothing(edge, js, signer, tenant_id):
    _, base = edge
    message_id = str(uuid.uuid4())
    token = signer.unsubscribe_token(tenant_id, message_id)
    middle = len(token) // 2
    cases = {
        # Signed with a secret this edge does not hold (retired from the previous list).
        TokenSigner(b"a secret retired long ago, 32 bytes").unsubscribe_token(tenant_id, message_id): (
            403,
            "the key it was signed with has been retired",
        ),
        token[:middle] + ("B" if token[middle] != "B" else "C") + token[middle + 1 :]: (
            400,
            "its signature does not match",
        ),
        token[:-7]: (400, "not valid or has been damaged"),
        # Ours, but naming a tenant nobody could record: refused here rather than dead-lettered later.
        signer.unsubscribe_token("bad tenant!", message_id): (400, "tenant_id: must be"),
    }
    before = await published(js, Subjects.EDGE_UNSUBSCRIBE)
    for bad, (status, why) in cases.items():
        got, page = await unsubscribe_post(base, bad)
        assert (got, why in html.unescape(page)) == (status, True), page
        assert "unsubscribed" not in page and "reply to one of them" in page
    assert await published(js, Subjects.EDGE_UNSUBSCRIBE) == before


async def test_links_in_mail_sent_before_a_rotation_still_unsubscribe(nats_conn, fake, signer, js, tenant_id):
    """The secret that signed them is listed as previous; links from before key ids too."""
    old_link = signer.unsubscribe_token(tenant_id, str(uuid.uuid4()))
    pre_key_id_body = f"{tenant_id}|{uuid.uuid4()}".encode()
    pre_key_id_link = (
        base64.urlsafe_b64encode(
            pre_key_id_body + hmac.new(SECRET, b"unsubscribe\0" + pre_key_id_body, hashlib.sha256).digest()[:16]
        )
        .decode()
        .rstrip("=")
    )
    rotated = TokenSigner(b"this year's token secret: 32 bytes", [SECRET])
    async with serving(new_edge(nats_conn, fake, rotated)) as (_, base):
        for link in (old_link, pre_key_id_link, rotated.unsubscribe_token(tenant_id, str(uuid.uuid4()))):
            before = await published(js, Subjects.EDGE_UNSUBSCRIBE)
            status, page = await unsubscribe_post(base, link)
            assert status == 200 and "unsubscribed" in page
            assert await published(js, Subjects.EDGE_UNSUBSCRIBE) == before + 1


async def test_health_and_readiness(edge):
    state, base = edge
    async with aiohttp.ClientSession() as session:
        async with session.get(base + "/healthz") as response:
            assert response.status == 200
        async with session.get(base + "/readyz") as response:
            assert response.status == 200
        state.stopping = True
        async with session.get(base + "/readyz") as response:
            assert response.status == 503


def test_a_key_that_is_not_sendgrids_stops_start_up():
    with pytest.raises(ValueError):
        load_verifier("bm90IGEga2V5")


OAUTH = OAuthClient("sendgrid-webhook", "s3cret-client-secret-of-32-or-more-chars", token_ttl_seconds=60)


@pytest_asyncio.fixture
async def oauth_edge(nats_conn, fake, signer) -> AsyncIterator[tuple[Edge, str]]:  # type: ignore[no-untyped-def]
    """The edge with SendGrid's OAuth on, and the signature no longer required."""
    clock = ManualClock(datetime.now(UTC))
    async with serving(new_edge(nats_conn, fake, signer, clock=clock, oauth=OAUTH, require_signature=False)) as served:
        yield served


async def token(base: str, **form: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    async with aiohttp.ClientSession() as session, session.post(base + TOKEN_PATH, data=form) as response:
        return response.status, await response.json()


async def test_sendgrid_gets_a_token_with_client_credentials_and_sends_it(oauth_edge, js, tenant_id):
    edge, base = oauth_edge
    assert await token(base, grant_type="password", client_id=OAUTH.client_id, client_secret=OAUTH.client_secret) == (
        400,
        {"error": "unsupported_grant_type"},
    )
    assert (await token(base, grant_type="client_credentials", client_id=OAUTH.client_id, client_secret="nope")) == (
        401,
        {"error": "invalid_client"},
    )
    credentials = base64.b64encode(f"{OAUTH.client_id}:{OAUTH.client_secret}".encode()).decode()
    basic = {"Authorization": f"Basic {credentials}"}
    async with aiohttp.ClientSession() as session:
        form = {"grant_type": "client_credentials"}
        async with session.post(base + TOKEN_PATH, data=form, headers=basic) as answer:
            assert answer.status == 200
            issued = await answer.json()
    assert (issued["token_type"], issued["expires_in"]) == ("Bearer", 60)

    body = json.dumps(events_batch(tenant_id)).encode()
    before = await published(js, Subjects.EDGE_SENDGRID_EVENTS)
    status, payload = await post(base + EVENTS_PATH, body, {"Content-Type": "application/json"})
    assert status == 401 and payload == {"error": "missing bearer token"}
    bearer = {"Authorization": f"Bearer {issued['access_token']}"}
    assert await post(base + EVENTS_PATH, body, bearer) == (200, {"accepted": 2})
    assert await published(js, Subjects.EDGE_SENDGRID_EVENTS) == before + 1

    edge.clock.advance(timedelta(seconds=61))
    status, payload = await post(base + EVENTS_PATH, body, bearer)
    assert status == 401 and payload == {"error": "bearer token not valid or expired"}
    forged = {"Authorization": "Bearer " + issued["access_token"][:-2] + "xx"}
    assert (await post(base + EVENTS_PATH, body, forged))[0] == 401


async def test_with_oauth_besides_the_signature_both_are_needed(edge, fake, tenant_id):
    plain, base = edge
    plain.oauth = OAUTH
    try:
        status, issued = await token(
            base, grant_type="client_credentials", client_id=OAUTH.client_id, client_secret=OAUTH.client_secret
        )
        assert status == 200
        body, headers = fake.signed_request(events_batch(tenant_id))
        assert (await post(base + EVENTS_PATH, body, headers))[0] == 401
        unsigned = {"Authorization": f"Bearer {issued['access_token']}"}
        assert (await post(base + EVENTS_PATH, body, unsigned))[0] == 403
        both = {**headers, **unsigned}
        assert (await post(base + EVENTS_PATH, body, both))[0] == 200
    finally:
        plain.oauth = None


async def test_metrics_count_requests_by_route_and_status(edge, fake, tenant_id):
    state, base = edge
    body, headers = fake.signed_request(events_batch(tenant_id))
    await post(base + EVENTS_PATH, body, headers)
    await post(base + EVENTS_PATH, body, {"Content-Type": "application/json"})
    async with aiohttp.ClientSession() as session:
        # Not on the public port: what the edge has seen is nobody's business out there.
        async with session.get(base + "/metrics") as answer:
            assert answer.status == 404
        runner = web.AppRunner(state.metrics_app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        try:
            async with session.get(f"http://127.0.0.1:{runner.addresses[0][1]}/metrics") as answer:
                assert answer.status == 200
                text = await answer.text()
        finally:
            await runner.cleanup()
    assert 'dripiq_edge_requests_total{route="/webhooks/sendgrid/events",status="200"}' in text
    assert 'dripiq_edge_requests_total{route="/webhooks/sendgrid/events",status="403"}' in text
    assert "dripiq_edge_events_accepted_total" in text and "dripiq_edge_publish_seconds_bucket" in text
