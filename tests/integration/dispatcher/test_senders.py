"""The SendGrid transport against the fake SendGrid on 127.0.0.1: the body on the wire, the
answers, and failures as `classify_failure` judges them. No database or NATS needed."""

from __future__ import annotations

from typing import Any

from dispatch_support import TEST_ACCOUNT

from dripiq_devtools.fake_sendgrid import FakeSendGrid
from dripiq_dispatcher import failures
from dripiq_dispatcher.failures import FailureKind
from dripiq_dispatcher.provider import AsyncSendGridSender, MailSender

MAIL: dict[str, Any] = {
    "from": {"email": "sender@acme.test", "name": "Sender"},
    "personalizations": [{"to": [{"email": "lead@example.com"}], "custom_args": {"message_id": "m-1"}}],
    "subject": "Hello",
    "content": [{"type": "text/plain", "value": "Hi there"}],
    "headers": {"Message-ID": "<m-1@mid.test>"},
}


def new_sender(host: str, timeout_seconds: float = 5) -> MailSender:
    return AsyncSendGridSender(api_key="SG.test", host=host, concurrency=2, timeout_seconds=timeout_seconds)


async def failure(sender: MailSender, mail: dict[str, Any]) -> failures.SendFailure:
    try:
        await sender.send(mail)
    except Exception as exc:  # noqa: BLE001 - whatever the transport raised is what is judged
        return failures.classify_failure(exc)
    finally:
        await sender.aclose()
    raise AssertionError("the send succeeded")


async def test_accepted_mail_returns_the_message_id_and_arrives_as_built(fake):
    fake.clear()
    sender = new_sender(fake.url)
    try:
        message_id = await sender.send(MAIL)
    finally:
        await sender.aclose()
    [accepted] = fake.messages
    assert message_id == accepted.x_message_id
    assert accepted.payload == MAIL


async def test_rejected_mail_is_permanent_with_the_providers_message(fake):
    got = await failure(new_sender(fake.url), {**MAIL, "subject": ""})
    assert got.kind == FailureKind.PERMANENT
    assert got.reason.startswith("sendgrid 400: subject:")


async def test_unavailable_provider_is_retried(fake):
    fake.fail_next(503)
    got = await failure(new_sender(fake.url), MAIL)
    assert got.kind == FailureKind.RETRY and got.reason.startswith("sendgrid 503:")


async def test_refused_connection_is_retried():
    got = await failure(new_sender("http://127.0.0.1:9"), MAIL)
    assert got.kind == FailureKind.RETRY and got.reason.startswith("sendgrid unreachable:")


async def test_timeout_after_the_request_left_is_unknown():
    async with FakeSendGrid(latency_seconds=0.5, authenticated_domains=TEST_ACCOUNT) as slow:
        got = await failure(new_sender(slow.url, timeout_seconds=0.1), MAIL)
        assert slow.requests_received == 1
    assert got.kind == FailureKind.UNKNOWN and "after the request was sent" in got.reason


async def test_async_sender_reuses_its_connections(fake):
    sender = AsyncSendGridSender(api_key="SG.test", host=fake.url, concurrency=2, timeout_seconds=5)
    try:
        for _ in range(5):
            await sender.send(MAIL)
        connector = sender._client().connector
        assert connector is not None and len(connector._conns) == 1  # noqa: SLF001 - one idle keep-alive
    finally:
        await sender.aclose()
