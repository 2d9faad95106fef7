"""How the fake answers Mail Send as the real `sendgrid` client and raw HTTP see it: accepted
and recorded, a bad request naming every wrong field, a body that is not JSON, a missing bearer
token, the rate limit, injected failures and held answers.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from fake_sendgrid_support import API_KEY, RECIPIENT, SENDER, SENDER_ACCOUNT, raw_send, valid_payload
from python_http_client.exceptions import BadRequestsError, ServiceUnavailableError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Category, CustomArg, Mail
from waiting import eventually

from dripiq_devtools.fake_sendgrid import FakeSendGrid
from dripiq_devtools.fake_sendgrid.errors import UNAUTHORIZED_MESSAGE

FROZEN_NOW = 1_700_000_000.25


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
    async with FakeSendGrid(
        rate_limit_per_second=2, clock=lambda: FROZEN_NOW, authenticated_domains=SENDER_ACCOUNT
    ) as fake:
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


async def test_latency_holds_the_answer_and_the_message() -> None:
    """While the fake holds its answer, the message is not yet accepted; it is once the answer
    comes (positive signals, not a measured time)."""
    async with FakeSendGrid(latency_seconds=2, authenticated_domains=SENDER_ACCOUNT) as fake:
        send = asyncio.create_task(raw_send(fake, valid_payload()))
        await eventually(lambda: fake.requests_received == 1, "the request at the fake")
        assert not send.done() and fake.messages == []
        status, _, _ = await send

    assert status == 202
    assert len(fake.messages) == 1
