"""The fake SendGrid must satisfy the real `sendgrid` client and SendGrid's own webhook verifier.

Everything runs over real HTTP on 127.0.0.1 with ephemeral ports; no database or NATS needed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from python_http_client.exceptions import BadRequestsError, ServiceUnavailableError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.mail import Category, CustomArg, Mail

from dripiq_devtools.fake_sendgrid import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    UNAUTHORIZED_MESSAGE,
    AcceptedMessage,
    FakeSendGrid,
    build_event,
    load_or_create_private_key,
)

API_KEY = "SG.local-test-key"
SENDER = "campaigns@dripiq.test"
RECIPIENT = "ada@example.com"
FROZEN_NOW = 1_700_000_000.25


def valid_payload(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "personalizations": [{"to": [{"email": RECIPIENT}], "custom_args": {"contact_id": "c-1"}}],
        "from": {"email": SENDER},
        "subject": "Hello",
        "content": [{"type": "text/plain", "value": "Hi Ada"}],
        "custom_args": {"campaign_id": "camp-1"},
    }
    payload.update(overrides)
    return payload


@dataclass
class Captured:
    body: bytes
    headers: dict[str, str]


@dataclass
class Receiver:
    """A stand-in for the events service's webhook endpoint that keeps the raw request."""

    url: str
    requests: list[Captured] = field(default_factory=list)


@pytest.fixture
async def fake() -> AsyncIterator[FakeSendGrid]:
    async with FakeSendGrid() as server:
        yield server


@pytest.fixture
def fake_key() -> FakeSendGrid:
    """A fake that is never started: signing needs only its key."""
    return FakeSendGrid()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    captured: list[Captured] = []

    async def handle(request: web.Request) -> web.Response:
        captured.append(Captured(await request.read(), dict(request.headers)))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/webhooks/sendgrid", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    yield Receiver(f"http://127.0.0.1:{port}/webhooks/sendgrid", captured)
    await runner.cleanup()


async def raw_send(
    fake: FakeSendGrid, body: bytes | dict[str, Any], *, auth: str | None = f"Bearer {API_KEY}"
) -> tuple[int, Any, dict[str, str]]:
    """A Mail Send request without the sendgrid client, to control headers and body bytes."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": auth} if auth else {})}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{fake.url}/v3/mail/send", data=data, headers=headers) as resp:
            raw = await resp.read()
            return resp.status, json.loads(raw) if raw else None, dict(resp.headers)


async def test_real_client_send_is_accepted_and_recorded(fake: FakeSendGrid) -> None:
    mail = Mail(from_email=SENDER, to_emails=RECIPIENT, subject="Hello", html_content="<p>Hi Ada</p>")
    mail.custom_arg = [CustomArg("campaign_id", "camp-1"), CustomArg("contact_id", "top")]
    mail.custom_arg = CustomArg("contact_id", "contact-42", p=0)
    mail.category = Category("onboarding")

    response = await asyncio.to_thread(SendGridAPIClient(API_KEY, host=fake.url).send, mail)

    assert response.status_code == 202
    assert response.body == b""
    message_id = response.headers["X-Message-Id"]
    assert len(message_id) == 22
    [message] = fake.messages
    assert message.x_message_id == message_id
    assert message.to_emails == [RECIPIENT]
    assert message.from_email == SENDER
    assert message.subject == "Hello"
    assert message.custom_args == {"campaign_id": "camp-1", "contact_id": "contact-42"}
    assert message.categories == ["onboarding"]


async def test_missing_personalizations_raises_bad_request_naming_the_field(
    fake: FakeSendGrid,
) -> None:
    client = SendGridAPIClient(API_KEY, host=fake.url)
    body = valid_payload()
    del body["personalizations"]

    with pytest.raises(BadRequestsError) as raised:
        await asyncio.to_thread(client.client.mail.send.post, request_body=body)

    assert raised.value.status_code == 400
    errors = json.loads(raised.value.body)["errors"]
    assert [e["field"] for e in errors] == ["personalizations"]
    assert fake.messages == []


async def test_every_validation_error_is_reported_at_once(fake: FakeSendGrid) -> None:
    body = {
        "personalizations": [{"to": [{"email": "not-an-address"}], "cc": [{"email": "x@y"}]}, {}],
        "from": {"name": "No address"},
        "reply_to": {"email": "nope"},
    }

    status, answer, _ = await raw_send(fake, body)

    assert status == 400
    assert [e["field"] for e in answer["errors"]] == [
        "personalizations.0.to.0.email",
        "personalizations.0.cc.0.email",
        "personalizations.1.to",
        "from.email",
        "reply_to.email",
        "subject",
        "content",
    ]
    assert all(set(e) == {"message", "field", "help"} for e in answer["errors"])


async def test_body_that_is_not_json_is_bad_request(fake: FakeSendGrid) -> None:
    status, answer, _ = await raw_send(fake, b"{not json")

    assert status == 400
    assert answer == {"errors": [{"message": "Bad Request", "field": None, "help": None}]}


@pytest.mark.parametrize("auth", [None, "Basic dXNlcjpwYXNz", "Bearer"])
async def test_missing_bearer_token_is_unauthorized(fake: FakeSendGrid, auth: str | None) -> None:
    status, answer, _ = await raw_send(fake, valid_payload(), auth=auth)

    assert status == 401
    assert answer == {"errors": [{"message": UNAUTHORIZED_MESSAGE, "field": None, "help": None}]}
    assert fake.messages == []


async def test_rate_limit_answers_429_with_sendgrid_headers() -> None:
    async with FakeSendGrid(rate_limit_per_second=2, clock=lambda: FROZEN_NOW) as fake:
        statuses = [(await raw_send(fake, valid_payload()))[0] for _ in range(2)]
        status, answer, headers = await raw_send(fake, valid_payload())

    assert statuses == [202, 202]
    assert status == 429
    assert answer == {"errors": [{"field": None, "message": "too many requests"}]}
    assert headers["X-RateLimit-Limit"] == "2"
    assert headers["X-RateLimit-Remaining"] == "0"
    assert headers["X-RateLimit-Reset"] == str(int(FROZEN_NOW) + 1)


async def test_injected_failures_answer_before_recovering(fake: FakeSendGrid) -> None:
    fake.fail_next(503, count=2)
    client = SendGridAPIClient(API_KEY, host=fake.url)

    for _ in range(2):
        with pytest.raises(ServiceUnavailableError) as raised:
            await asyncio.to_thread(client.client.mail.send.post, request_body=valid_payload())
        assert json.loads(raised.value.body)["errors"][0]["message"] == "service unavailable"
    status, _, _ = await raw_send(fake, valid_payload())

    assert status == 202
    assert len(fake.messages) == 1


async def test_latency_delays_the_answer() -> None:
    async with FakeSendGrid(latency_seconds=0.05) as fake:
        started = asyncio.get_running_loop().time()
        status, _, _ = await raw_send(fake, valid_payload())
        elapsed = asyncio.get_running_loop().time() - started

    assert status == 202
    assert elapsed >= 0.045


async def test_posted_events_verify_with_sendgrids_helper(fake: FakeSendGrid, receiver: Receiver) -> None:
    await raw_send(fake, valid_payload())
    event = build_event(fake.messages[0], "open")

    status = await fake.post_events(receiver.url, [event])

    assert status == 200
    [posted] = receiver.requests
    assert json.loads(posted.body) == [event]
    signature, timestamp = posted.headers[SIGNATURE_HEADER], posted.headers[TIMESTAMP_HEADER]
    verifier = EventWebhook(fake.public_key_base64)
    assert verifier.verify_signature(posted.body.decode(), signature, timestamp)
    tampered = posted.body.replace(b'"open"', b'"click"').decode()
    assert not verifier.verify_signature(tampered, signature, timestamp)
    assert not verifier.verify_signature(posted.body.decode(), signature, str(int(timestamp) + 1))


def test_sign_matches_what_the_verifier_expects(fake_key: FakeSendGrid) -> None:
    body = b'[{"event":"delivered"}]\r\n'

    signature = fake_key.sign(body, "1600112502")

    assert EventWebhook(fake_key.public_key_base64).verify_signature(body.decode(), signature, "1600112502")


def accepted(**payload_overrides: Any) -> AcceptedMessage:
    payload = valid_payload(categories=["onboarding"], **payload_overrides)
    return AcceptedMessage("W86EgYT6SQKk0lRflfLRsA", payload, datetime.now(UTC))


@pytest.mark.parametrize(
    ("event", "expected_keys"),
    [
        ("open", {"sg_machine_open", "useragent", "ip"}),
        ("click", {"url", "useragent", "ip"}),
        ("bounce", {"type", "reason", "status", "bounce_classification"}),
        ("delivered", {"response"}),
        ("processed", set()),
    ],
)
def test_build_event_is_shaped_like_sendgrids(event: str, expected_keys: set[str]) -> None:
    message = accepted()

    built = build_event(message, event)

    assert built["event"] == event
    assert built["email"] == RECIPIENT
    assert isinstance(built["timestamp"], int)
    assert built["sg_message_id"].startswith("W86EgYT6SQKk0lRflfLRsA.recvd-")
    assert built["smtp-id"].startswith("<W86EgYT6SQKk0lRflfLRsA@")
    assert built["campaign_id"] == "camp-1"
    assert built["contact_id"] == "c-1"
    assert built["category"] == ["onboarding"]
    assert expected_keys <= set(built)
    if event == "open":
        assert built["sg_machine_open"] is False


def test_build_event_ids_are_unique_and_extras_override() -> None:
    message = accepted()

    first = build_event(message, "click", url="https://dripiq.test/pricing", contact_id="c-9")
    second = build_event(message, "click")

    assert first["sg_event_id"] != second["sg_event_id"]
    assert first["url"] == "https://dripiq.test/pricing"
    assert first["contact_id"] == "c-9"


def test_personalization_custom_args_win_over_top_level() -> None:
    message = accepted(custom_args={"campaign_id": "camp-1", "contact_id": "top"})

    assert message.custom_args == {"campaign_id": "camp-1", "contact_id": "c-1"}


async def test_control_endpoints_let_another_process_drive_the_fake(fake: FakeSendGrid, receiver: Receiver) -> None:
    await raw_send(fake, valid_payload())
    message_id = fake.messages[0].x_message_id
    trigger = {"webhook_url": receiver.url, "x_message_id": message_id, "event": "delivered"}

    async with aiohttp.ClientSession(base_url=fake.url) as session:
        async with session.get("/_fake/public-key") as resp:
            assert await resp.json() == {"public_key": fake.public_key_base64}
        async with session.get("/_fake/messages") as resp:
            [listed] = (await resp.json())["messages"]
        async with session.post("/_fake/events", json={**trigger, "extra": {"tls": 0}}) as resp:
            triggered = await resp.json()
        async with session.post("/_fake/events", json={**trigger, "x_message_id": "x"}) as resp:
            unknown_status = resp.status
        async with session.delete("/_fake/messages") as resp:
            assert resp.status == 200
        async with session.get("/_fake/messages") as resp:
            remaining = (await resp.json())["messages"]

    assert listed["x_message_id"] == message_id
    assert listed["custom_args"] == {"campaign_id": "camp-1", "contact_id": "c-1"}
    assert triggered["status"] == 200
    [posted] = receiver.requests
    [event] = json.loads(posted.body)
    assert event["event"] == "delivered" and event["tls"] == 0 and event["contact_id"] == "c-1"
    assert EventWebhook(fake.public_key_base64).verify_signature(
        posted.body.decode(), posted.headers[SIGNATURE_HEADER], posted.headers[TIMESTAMP_HEADER]
    )
    assert unknown_status == 404
    assert remaining == []


def test_private_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "sendgrid.pem"

    created = load_or_create_private_key(path)
    reused = load_or_create_private_key(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert reused == created
    assert (
        FakeSendGrid(private_key_pem=created).public_key_base64
        == FakeSendGrid(private_key_pem=reused).public_key_base64
    )


async def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    key_file = tmp_path / "sendgrid.pem"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dripiq_devtools.fake_sendgrid",
        "--port",
        "0",
        "--private-key-file",
        str(key_file),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        url_line = await asyncio.wait_for(process.stdout.readline(), timeout=10)
        key_line = await asyncio.wait_for(process.stdout.readline(), timeout=5)
        url = url_line.decode().split()[-1]
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/_fake/public-key") as resp:
                public_key = (await resp.json())["public_key"]
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        exit_code = await asyncio.wait_for(process.wait(), timeout=10)

    assert url.startswith("http://127.0.0.1:")
    assert key_line.decode().split()[-1] == public_key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert FakeSendGrid(private_key_pem=key_file.read_bytes()).public_key_base64 == public_key
    assert exit_code == 0
