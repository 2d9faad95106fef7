"""The fake SendGrid must satisfy the real `sendgrid` client and SendGrid's own webhook verifier.

Everything runs over real HTTP on 127.0.0.1 with ephemeral ports; no database or NATS needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import stat
import sys
import time
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
from sendgrid.helpers.mail import (
    Asm,
    Bcc,
    Category,
    Cc,
    ClickTracking,
    CustomArg,
    GroupId,
    Header,
    Mail,
    OpenTracking,
    ReplyTo,
    SendAt,
    SubscriptionTracking,
    TrackingSettings,
)
from waiting import eventually

from dripiq_devtools.fake_sendgrid import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AcceptedMessage,
    FakeSendGrid,
    TrackedLink,
    UnreportableEvent,
    build_event,
    build_reportable_event,
    load_or_create_private_key,
)
from dripiq_devtools.fake_sendgrid.errors import (
    ASM_GROUP_NOT_INTEGER,
    CATEGORIES_NOT_STRINGS,
    CATEGORY_NOT_ASCII,
    CATEGORY_REPEATED,
    CATEGORY_TOO_LONG,
    CONTENT_ORDER,
    CONTENT_TYPE_REPEATED,
    CUSTOM_ARGS_NOT_STRINGS,
    CUSTOM_ARGS_TOO_LARGE,
    HEADER_RESERVED,
    HEADER_VALUES_NOT_STRINGS,
    REPLY_TO_EXCLUSIVE,
    SEND_AT_NOT_INTEGER,
    SEND_AT_TOO_FAR,
    SUBJECT_EMPTY,
    TOO_MANY_CATEGORIES,
    TOO_MANY_PERSONALIZATIONS,
    TOO_MANY_RECIPIENTS,
    UNAUTHORIZED_MESSAGE,
)
from dripiq_devtools.fake_sendgrid.server import OUTBOX_TASK_NAME
from dripiq_devtools.sendgrid_schema import is_known_erratum, mail_send_schema_errors, mail_send_schema_violations

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
    """A stand-in for the events service's webhook endpoint that keeps the raw request.

    It answers 500 to the next `refusals` requests (keeping them all the same), then 200.
    """

    url: str
    requests: list[Captured] = field(default_factory=list)
    refusals: int = 0

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event it was posted, in arrival order, refused batches included."""
        return [event for captured in self.requests for event in json.loads(captured.body)]


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
    stand_in = Receiver(url="")

    async def handle(request: web.Request) -> web.Response:
        stand_in.requests.append(Captured(await request.read(), dict(request.headers)))
        if stand_in.refusals > 0:
            stand_in.refusals -= 1
            return web.Response(status=500)
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/webhooks/sendgrid", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    stand_in.url = f"http://127.0.0.1:{runner.addresses[0][1]}/webhooks/sendgrid"
    yield stand_in
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


def personalized(**fields: Any) -> dict[str, Any]:
    """A valid payload whose first personalization carries `fields`."""
    payload = valid_payload()
    payload["personalizations"][0].update(fields)
    return payload


def recipients(count: int) -> list[dict[str, str]]:
    return [{"email": f"reader-{n}@example.com"} for n in range(count)]


def tracking(setting: str, **values: Any) -> dict[str, Any]:
    return valid_payload(tracking_settings={setting: values})


MORE_THAN_72_HOURS_AHEAD = int(time.time()) + 73 * 60 * 60
NOT_AN_OBJECT = "Invalid type. Expected: object, given: string."

# One bad payload per rule, with the field and message SendGrid answers with.
REJECTED = [
    pytest.param(valid_payload(custom_args="camp-1"), "custom_args", NOT_AN_OBJECT, id="custom_args-not-object"),
    pytest.param(
        valid_payload(custom_args={"step": 2}), "custom_args", CUSTOM_ARGS_NOT_STRINGS, id="custom_args-not-strings"
    ),
    pytest.param(
        personalized(custom_args="c-1"),
        "personalizations.0.custom_args",
        NOT_AN_OBJECT,
        id="personalization-custom_args-not-object",
    ),
    pytest.param(
        personalized(custom_args={"known": True}),
        "personalizations.0.custom_args",
        CUSTOM_ARGS_NOT_STRINGS,
        id="personalization-custom_args-not-strings",
    ),
    pytest.param(
        {**personalized(custom_args={"note": "n" * 5_000}), "custom_args": {"blob": "b" * 5_000}},
        "personalizations.0.custom_args",
        CUSTOM_ARGS_TOO_LARGE,
        id="custom_args-merged-too-large",
    ),
    pytest.param(
        valid_payload(personalizations=[{"to": [{"email": RECIPIENT}]}], custom_args={"blob": "b" * 10_000}),
        "custom_args",
        CUSTOM_ARGS_TOO_LARGE,
        id="custom_args-top-level-too-large",
    ),
    pytest.param(
        valid_payload(categories=[f"c{n}" for n in range(11)]),
        "categories",
        TOO_MANY_CATEGORIES.format(count=11),
        id="categories-too-many",
    ),
    pytest.param(
        valid_payload(categories=["onboarding", "onboarding"]),
        "categories",
        CATEGORY_REPEATED.format(duplicate="onboarding"),
        id="categories-repeated",
    ),
    pytest.param(
        valid_payload(categories=["c" * 256]),
        "categories.0",
        CATEGORY_TOO_LONG.format(value="c" * 256),
        id="category-too-long",
    ),
    pytest.param(valid_payload(categories=[7]), "categories.0", CATEGORIES_NOT_STRINGS, id="category-not-string"),
    pytest.param(valid_payload(categories=["café"]), "categories", CATEGORY_NOT_ASCII, id="category-not-ascii"),
    pytest.param(
        valid_payload(reply_to={"email": SENDER}, reply_to_list=[{"email": SENDER}]),
        "reply_to_list",
        REPLY_TO_EXCLUSIVE,
        id="reply_to-and-reply_to_list",
    ),
    pytest.param(
        valid_payload(content=[{"type": "text/html", "value": "<p>Hi</p>"}, {"type": "text/plain", "value": "Hi"}]),
        "content",
        CONTENT_ORDER,
        id="content-html-before-plain",
    ),
    pytest.param(
        valid_payload(
            content=[
                {"type": "text/plain", "value": "Hi"},
                {"type": "text/calendar", "value": "BEGIN:VCALENDAR"},
                {"type": "text/html", "value": "<p>Hi</p>"},
            ]
        ),
        "content",
        CONTENT_ORDER,
        id="content-html-not-right-after-plain",
    ),
    pytest.param(
        valid_payload(content=[{"type": "text/plain", "value": "Hi"}, {"type": "text/plain", "value": "Again"}]),
        "content",
        CONTENT_TYPE_REPEATED.format(type="text/plain"),
        id="content-type-twice",
    ),
    pytest.param(valid_payload(headers={"reply-to": SENDER}), "headers", HEADER_RESERVED, id="header-reserved"),
    pytest.param(valid_payload(headers={"X-SG-EID": "abc"}), "headers", HEADER_RESERVED, id="header-reserved-sg"),
    pytest.param(
        personalized(headers={"Bcc": SENDER}),
        "personalizations.0.headers",
        HEADER_RESERVED,
        id="personalization-header-reserved",
    ),
    pytest.param(
        valid_payload(headers={"X-Attempt": 2}), "headers", HEADER_VALUES_NOT_STRINGS, id="header-value-not-string"
    ),
    pytest.param(
        tracking("click_tracking", enable="yes"),
        "tracking_settings.click_tracking.enable",
        "The click tracking enable param should be a boolean value.",
        id="click-tracking-enable",
    ),
    pytest.param(
        tracking("click_tracking", enable=True, enable_text=1),
        "tracking_settings.click_tracking.enable_text",
        "The click tracking enable text must be a boolean value.",
        id="click-tracking-enable-text",
    ),
    pytest.param(
        tracking("open_tracking", enable="true"),
        "tracking_settings.open_tracking.enable",
        "The open tracking enable param should be a boolean value.",
        id="open-tracking-enable",
    ),
    pytest.param(
        tracking("subscription_tracking", enable=None),
        "tracking_settings.subscription_tracking.enable",
        "The subscription tracking enable param should be a boolean value.",
        id="subscription-tracking-enable",
    ),
    pytest.param(
        tracking("ganalytics", enable=0),
        "tracking_settings.ganalytics.enable",
        "The Google Analytics enable param must be a boolean value.",
        id="ganalytics-enable",
    ),
    pytest.param(valid_payload(asm={"group_id": "42"}), "asm.group_id", ASM_GROUP_NOT_INTEGER, id="asm-group-id"),
    pytest.param(
        valid_payload(send_at=MORE_THAN_72_HOURS_AHEAD), "send_at", SEND_AT_TOO_FAR, id="send_at-too-far-ahead"
    ),
    pytest.param(
        personalized(send_at=MORE_THAN_72_HOURS_AHEAD),
        "personalizations.0.send_at",
        SEND_AT_TOO_FAR,
        id="personalization-send_at-too-far-ahead",
    ),
    pytest.param(valid_payload(send_at="tomorrow"), "send_at", SEND_AT_NOT_INTEGER, id="send_at-not-integer"),
    pytest.param(
        valid_payload(personalizations=[{"to": [address]} for address in recipients(1001)]),
        "personalizations",
        TOO_MANY_PERSONALIZATIONS.format(count=1001),
        id="personalizations-too-many",
    ),
    pytest.param(
        valid_payload(personalizations=[{"to": recipients(600), "bcc": recipients(1001)[600:]}]),
        "personalizations",
        TOO_MANY_RECIPIENTS,
        id="recipients-too-many",
    ),
    pytest.param(personalized(subject=""), "personalizations.0.subject", SUBJECT_EMPTY, id="schema-subject-empty"),
    pytest.param(
        personalized(**{"from": {"email": "nobody"}}),
        "personalizations.0.from.email",
        "Does not match format 'email'.",
        id="schema-email-format",
    ),
    pytest.param(
        valid_payload(attachments=[{"content": "aGk="}]),
        "attachments.0.filename",
        "filename is required.",
        id="schema-required",
    ),
    pytest.param(
        valid_payload(attachments=[{"content": "aGk=", "filename": "hi.txt", "disposition": "sideways"}]),
        "attachments.0.disposition",
        "Must be one of the following: ['inline', 'attachment'].",
        id="schema-enum",
    ),
    pytest.param(
        valid_payload(ip_pool_name="x"),
        "ip_pool_name",
        "String length must be greater than or equal to 2.",
        id="schema-min-length",
    ),
    pytest.param(
        valid_payload(mail_settings={"sandbox_mode": {"enable": "no"}}),
        "mail_settings.sandbox_mode.enable",
        "Invalid type. Expected: boolean, given: string.",
        id="schema-type",
    ),
]


@pytest.mark.parametrize(("body", "field", "message"), REJECTED)
async def test_sendgrid_rule_is_enforced_naming_the_field(
    fake: FakeSendGrid, body: dict[str, Any], field: str, message: str
) -> None:
    client = SendGridAPIClient(API_KEY, host=fake.url)

    with pytest.raises(BadRequestsError) as raised:
        await asyncio.to_thread(client.client.mail.send.post, request_body=body)

    errors = json.loads(raised.value.body)["errors"]
    assert {"field": field, "message": message} in [{"field": e["field"], "message": e["message"]} for e in errors]
    assert fake.messages == []


async def test_new_rules_are_reported_together_with_the_old(fake: FakeSendGrid) -> None:
    body = valid_payload(
        categories=["a"] * 11,
        headers={"Subject": "Sneaky"},
        send_at=MORE_THAN_72_HOURS_AHEAD,
        subject="",
        content=[],
    )

    status, answer, _ = await raw_send(fake, body)

    assert status == 400
    assert [e["field"] for e in answer["errors"]] == [
        "subject",
        "content",
        "categories",
        "categories",
        "headers",
        "send_at",
    ]


async def test_everything_sendgrid_takes_passes(fake: FakeSendGrid) -> None:
    """The real client's richest Mail, within every limit: the fake must not refuse it."""
    mail = Mail(
        from_email=SENDER,
        to_emails=RECIPIENT,
        subject="Hello",
        plain_text_content="Hi Ada, see https://dripiq.test/pricing",
        html_content='<p>Hi Ada, see <a href="https://dripiq.test/pricing">pricing</a></p>',
    )
    mail.add_cc(Cc("grace@example.com"))
    mail.add_bcc(Bcc("linus@example.com"))
    mail.reply_to_list = [ReplyTo("replies@dripiq.test"), ReplyTo("team@dripiq.test")]
    mail.custom_arg = [CustomArg("campaign_id", "camp-1"), CustomArg("padding", "p" * 9_000)]
    mail.category = [Category(f"category-{n}") for n in range(10)]
    mail.header = [Header("List-Unsubscribe", "<https://dripiq.test/u>"), Header("Message-ID", "<m-1@dripiq.test>")]
    mail.asm = Asm(GroupId(42))
    mail.send_at = SendAt(int(time.time()) + 71 * 60 * 60)
    mail.tracking_settings = TrackingSettings(
        ClickTracking(True, True), OpenTracking(True), SubscriptionTracking(False)
    )

    response = await asyncio.to_thread(SendGridAPIClient(API_KEY, host=fake.url).send, mail)

    assert response.status_code == 202
    [message] = fake.messages
    assert message.recipient_emails == [RECIPIENT, "grace@example.com", "linus@example.com"]


def test_schema_reports_the_spec_as_written_naming_json_paths() -> None:
    body = valid_payload(personalizations=[{"to": [{"email": "nobody"}]}, {}], categories=["a", "a"])
    del body["from"]

    errors = mail_send_schema_errors(body)

    assert errors == [
        "$.personalizations[0].to[0].email: 'nobody' is not a 'email'",
        "$.personalizations[1].to: 'to' is a required property",
        "$.categories: ['a', 'a'] has non-unique elements",
        "$.custom_args: {'campaign_id': 'camp-1'} is not of type 'string'",
        "$.from: 'from' is a required property",
    ]


def test_schema_keeps_its_custom_args_erratum_for_callers_to_recognise() -> None:
    [violation] = mail_send_schema_violations(valid_payload())

    assert violation.path == ("custom_args",)
    assert is_known_erratum(violation)
    assert mail_send_schema_errors(valid_payload(custom_args="camp-1")) == []
    body = valid_payload()
    del body["custom_args"]
    assert mail_send_schema_errors(body) == []


# Bodies right and wrong in every way the schema checks: the Rust first pass must never pass
# one that jsonschema finds a violation in (it may refuse more: it reads `email` strictly).
SCHEMA_PROBES: list[dict[str, Any]] = [
    valid_payload(),
    valid_payload(custom_args="camp-1"),
    {k: v for k, v in valid_payload().items() if k != "custom_args"},
    {k: v for k, v in valid_payload().items() if k != "from"},
    valid_payload(personalizations=[]),
    valid_payload(personalizations=[{"to": []}]),
    valid_payload(personalizations=[{"to": [{"email": "nobody"}]}]),
    valid_payload(personalizations=[{"to": [{"email": "a@b"}]}]),
    valid_payload(personalizations=[{"to": [{"email": "two@@example.com"}]}]),
    valid_payload(personalizations=[{"to": [{"email": RECIPIENT, "name": 7}]}]),
    valid_payload(personalizations=[{"to": [{"email": RECIPIENT}]}] * 1001),
    valid_payload(categories=["a", "a"]),
    valid_payload(categories=[f"c{i}" for i in range(11)]),
    valid_payload(subject=5),
    valid_payload(content=[{"type": "text/plain"}]),
    valid_payload(content="Hi"),
    valid_payload(send_at="tomorrow"),
    valid_payload(headers={"X-Count": 1}),
    valid_payload(reply_to={"email": "nobody"}),
    valid_payload(tracking_settings={"open_tracking": {"enable": "yes"}}),
    valid_payload(tracking_settings={"click_tracking": {"enable": True, "enable_text": True}}),
    valid_payload(asm={"group_id": "one"}),
    valid_payload(unknown_key={"anything": True}),
]


@pytest.mark.parametrize("body", SCHEMA_PROBES)
def test_the_fast_schema_check_never_passes_what_jsonschema_refuses(body: dict[str, Any]) -> None:
    from dripiq_devtools import sendgrid_schema

    fast = sendgrid_schema._fast_validator().is_valid(body)
    thorough = [str(sendgrid_schema._violation(e)) for e in sendgrid_schema._validator().iter_errors(body)]

    assert not (fast and thorough), thorough
    if fast:
        assert mail_send_schema_errors(body) == []
    else:
        assert mail_send_schema_errors(body) == thorough


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


async def test_latency_holds_the_answer_and_the_message() -> None:
    """While the fake holds its answer, the message is not yet accepted; it is once the answer
    comes (positive signals, not a measured time)."""
    async with FakeSendGrid(latency_seconds=2) as fake:
        send = asyncio.create_task(raw_send(fake, valid_payload()))
        await eventually(lambda: fake.requests_received == 1, "the request at the fake")
        assert not send.done() and fake.messages == []
        status, _, _ = await send

    assert status == 202
    assert len(fake.messages) == 1


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


HTML_WITH_LINKS = (
    '<p>Hi Ada, see <a href="https://dripiq.test/pricing">pricing</a>,'
    ' <a href="mailto:help@dripiq.test">write</a>,'
    ' <a clicktracking="off" href="https://dripiq.test/unsubscribe">unsubscribe</a>,'
    " <a href=https://dripiq.test/raw clicktracking=off>raw</a>"
    ' and <A HREF="http://dripiq.test/docs?a=1&amp;b=2">docs</A>.</p>'
)
TEXT_WITH_LINKS = "Hi Ada, see https://dripiq.test/pricing (or http://dripiq.test/docs)."
HTML_LINKS = [
    TrackedLink("https://dripiq.test/pricing", "html", 0),
    TrackedLink("http://dripiq.test/docs?a=1&b=2", "html", 1),
]
TEXT_LINKS = [TrackedLink("https://dripiq.test/pricing", "text", 0), TrackedLink("http://dripiq.test/docs", "text", 1)]


def multipart(**tracking_settings: Any) -> dict[str, Any]:
    """A valid payload with text and HTML parts full of links, tracked as given."""
    content = [{"type": "text/plain", "value": TEXT_WITH_LINKS}, {"type": "text/html", "value": HTML_WITH_LINKS}]
    return valid_payload(content=content, tracking_settings=tracking_settings)


def sent(payload: dict[str, Any], **account_tracking: bool) -> AcceptedMessage:
    return AcceptedMessage("W86EgYT6SQKk0lRflfLRsA", payload, datetime.now(UTC), **account_tracking)


def test_no_open_without_an_html_part_whatever_the_tracking() -> None:
    message = sent(valid_payload(tracking_settings={"open_tracking": {"enable": True}}), account_open_tracking=True)

    reason = message.open_untracked_reason()

    assert reason is not None and "text/html" in reason


@pytest.mark.parametrize(
    ("tracking_settings", "account_open_tracking", "untracked_because"),
    [
        ({"open_tracking": {"enable": True}}, False, None),
        ({}, True, None),
        ({}, False, "the request leaves open_tracking to the account, where it is off"),
        ({"open_tracking": {"enable": False}}, True, "tracking_settings.open_tracking.enable is false"),
        ({"open_tracking": {"enable": True, "substitution_tag": "%open%"}}, False, "substitution_tag '%open%'"),
    ],
)
def test_open_tracking_follows_the_request_then_the_account(
    tracking_settings: dict[str, Any], account_open_tracking: bool, untracked_because: str | None
) -> None:
    message = sent(multipart(**tracking_settings), account_open_tracking=account_open_tracking)

    reason = message.open_untracked_reason()

    if untracked_because is None:
        assert reason is None
    else:
        assert reason is not None and untracked_because in reason


def test_open_tracking_substitution_tag_in_the_html_is_where_the_pixel_goes() -> None:
    payload = multipart(open_tracking={"enable": True, "substitution_tag": "%open%"})
    payload["content"][1]["value"] += "%open%"

    assert sent(payload).open_untracked_reason() is None


def test_tracked_links_are_the_html_anchors_sendgrid_rewrites() -> None:
    message = sent(multipart(click_tracking={"enable": True}))

    assert message.tracked_links() == HTML_LINKS
    assert message.click_untracked_reason() is None


def test_text_links_are_tracked_only_with_enable_text() -> None:
    message = sent(multipart(click_tracking={"enable": True, "enable_text": True}))

    assert message.tracked_links() == HTML_LINKS + TEXT_LINKS


@pytest.mark.parametrize(
    ("payload", "account_click_tracking", "untracked_because"),
    [
        (multipart(), False, "the request leaves click_tracking to the account, where it is off"),
        (multipart(click_tracking={"enable": False, "enable_text": True}), True, "click_tracking.enable is false"),
        (valid_payload(tracking_settings={"click_tracking": {"enable": True}}), False, "enable_text"),
    ],
)
def test_no_click_where_sendgrid_rewrote_no_link(
    payload: dict[str, Any], account_click_tracking: bool, untracked_because: str
) -> None:
    message = sent(payload, account_click_tracking=account_click_tracking)

    reason = message.click_untracked_reason()

    assert message.tracked_links() == []
    assert reason is not None and untracked_because in reason


def test_account_click_tracking_applies_where_the_request_is_silent() -> None:
    assert sent(multipart(), account_click_tracking=True).tracked_links() == HTML_LINKS


def test_reportable_click_says_which_link_and_where_it_sits() -> None:
    message = sent(multipart(click_tracking={"enable": True, "enable_text": True}))

    first = build_reportable_event(message, "click")
    chosen = build_reportable_event(message, "click", url="http://dripiq.test/docs")

    assert (first["url"], first["url_offset"]) == ("https://dripiq.test/pricing", {"index": 0, "type": "html"})
    assert (chosen["url"], chosen["url_offset"]) == ("http://dripiq.test/docs", {"index": 1, "type": "text"})
    assert chosen["contact_id"] == "c-1"


def test_unreportable_events_say_why() -> None:
    tracked = sent(multipart(click_tracking={"enable": True}))

    with pytest.raises(UnreportableEvent, match="^SendGrid could not report an open for this message: "):
        build_reportable_event(sent(valid_payload()), "open")
    with pytest.raises(UnreportableEvent, match="^SendGrid could not report a click for this message: "):
        build_reportable_event(sent(valid_payload()), "click")
    with pytest.raises(UnreportableEvent, match="https://dripiq.test/unsubscribe") as raised:
        build_reportable_event(tracked, "click", url="https://dripiq.test/unsubscribe")
    assert "https://dripiq.test/pricing (html #0)" in str(raised.value)
    assert build_reportable_event(sent(valid_payload()), "bounce")["event"] == "bounce"


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


async def trigger(fake: FakeSendGrid, receiver: Receiver, event: str, **extra: Any) -> tuple[int, dict[str, Any]]:
    """Ask the fake, over HTTP, to post `event` for its latest message to the receiver."""
    spec = {"webhook_url": receiver.url, "x_message_id": fake.messages[-1].x_message_id, "event": event}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{fake.url}/_fake/events", json={**spec, "extra": extra}) as resp:
            return resp.status, await resp.json()


async def test_trigger_refuses_an_open_sendgrid_could_not_track(fake: FakeSendGrid, receiver: Receiver) -> None:
    await raw_send(fake, multipart())

    status, answer = await trigger(fake, receiver, "open")

    assert status == 409
    assert answer["error"] == (
        "SendGrid could not report an open for this message: "
        "the request leaves open_tracking to the account, where it is off"
    )
    assert receiver.requests == []


async def test_trigger_posts_an_open_on_a_tracked_message(receiver: Receiver) -> None:
    async with FakeSendGrid(account_open_tracking=True) as fake:
        await raw_send(fake, multipart())
        status, answer = await trigger(fake, receiver, "open")

    assert (status, answer["status"], answer["event"]["event"]) == (200, 200, "open")
    assert receiver.events == [answer["event"]]


async def test_trigger_clicks_only_tracked_links(fake: FakeSendGrid, receiver: Receiver) -> None:
    await raw_send(fake, multipart(click_tracking={"enable": True, "enable_text": True}))

    default = await trigger(fake, receiver, "click")
    chosen = await trigger(fake, receiver, "click", url="http://dripiq.test/docs")
    untracked_status, untracked = await trigger(fake, receiver, "click", url="https://dripiq.test/unsubscribe")

    assert default[1]["event"]["url_offset"] == {"index": 0, "type": "html"}
    assert chosen[1]["event"]["url_offset"] == {"index": 1, "type": "text"}
    assert untracked_status == 409
    assert untracked["error"].startswith("SendGrid could not report a click on https://dripiq.test/unsubscribe")
    assert "http://dripiq.test/docs?a=1&b=2 (html #1)" in untracked["error"]
    assert [e["url"] for e in receiver.events] == ["https://dripiq.test/pricing", "http://dripiq.test/docs"]


async def test_listed_messages_say_what_sendgrid_could_track(fake: FakeSendGrid) -> None:
    await raw_send(fake, multipart(click_tracking={"enable": True}, open_tracking={"enable": True}))

    async with aiohttp.ClientSession() as session:
        async with session.get(f"{fake.url}/_fake/messages") as resp:
            [listed] = (await resp.json())["messages"]

    assert listed["open_untracked_reason"] is None
    assert listed["tracked_links"] == [link.to_json() for link in HTML_LINKS]


async def stats(fake: FakeSendGrid) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{fake.url}/_fake/stats") as resp:
            return dict(await resp.json())


def signed_by(fake: FakeSendGrid, posted: Captured) -> bool:
    verifier = EventWebhook(fake.public_key_base64)
    return verifier.verify_signature(
        posted.body.decode(), posted.headers[SIGNATURE_HEADER], posted.headers[TIMESTAMP_HEADER]
    )


def batches(receiver: Receiver) -> list[list[dict[str, Any]]]:
    return [json.loads(posted.body) for posted in receiver.requests]


def posting_by_itself(receiver: Receiver) -> FakeSendGrid:
    return FakeSendGrid(webhook_url=receiver.url, auto_events_delay_seconds=0.05)


async def test_processed_then_delivered_arrive_by_themselves(receiver: Receiver) -> None:
    async with posting_by_itself(receiver) as fake:
        await raw_send(fake, personalized(cc=[{"email": "grace@example.com"}]))
        await eventually(lambda: len(receiver.events) == 4)
        counts = await stats(fake)

    first, *later = batches(receiver)
    assert [(e["event"], e["email"]) for e in first] == [("processed", RECIPIENT), ("processed", "grace@example.com")]
    assert [(e["event"], e["email"]) for batch in later for e in batch] == [
        ("delivered", RECIPIENT),
        ("delivered", "grace@example.com"),
    ]
    assert all(e["contact_id"] == "c-1" and e["campaign_id"] == "camp-1" for e in receiver.events)
    assert all(signed_by(fake, posted) for posted in receiver.requests)
    assert (counts["events_posted"], counts["events_pending"]) == (4, 0)


async def test_many_events_arrive_in_batches_of_at_most_1000_in_order(receiver: Receiver) -> None:
    readers = recipients(1200)
    async with posting_by_itself(receiver) as fake:
        for half in (readers[:600], readers[600:]):
            await raw_send(fake, valid_payload(personalizations=[{"to": half}]))
        await eventually(lambda: len(receiver.events) == 2400, seconds=20)

    sizes = [len(batch) for batch in batches(receiver)]
    assert max(sizes) <= 1000 and len(sizes) >= 4
    processed_in = {
        e["email"]: n for n, batch in enumerate(batches(receiver)) for e in batch if e["event"] == "processed"
    }
    delivered_in = {
        e["email"]: n for n, batch in enumerate(batches(receiver)) for e in batch if e["event"] == "delivered"
    }
    assert all(processed_in[reader["email"]] < delivered_in[reader["email"]] for reader in readers)
    assert [e["email"] for e in receiver.events if e["event"] == "processed"] == [r["email"] for r in readers]


async def test_a_refused_batch_is_posted_again_later(receiver: Receiver) -> None:
    receiver.refusals = 1
    async with posting_by_itself(receiver) as fake:
        await raw_send(fake, valid_payload())
        await eventually(lambda: [e["event"] for e in receiver.events][-1:] == ["delivered"])
        counts = await stats(fake)

    refused, again, delivered = batches(receiver)
    assert again == refused and [e["event"] for e in refused] == ["processed"]
    assert [e["event"] for e in delivered] == ["delivered"]
    assert (counts["events_posted"], counts["events_pending"], counts["failed_posts"]) == (2, 0, 1)


@pytest.mark.parametrize(("webhook", "delay_seconds", "queued"), [(False, 0.05, 0), (True, 0, 0), (True, 60, 2)])
async def test_nothing_is_queued_to_arrive_by_itself_when_off(
    receiver: Receiver, webhook: bool, delay_seconds: float, queued: int
) -> None:
    """Automatic events are only ever posted from the queue an accepted message fills; off, the
    queue stays empty the moment the message is accepted, so nothing can arrive later (the last
    case, on with a long delay, shows the same check seeing the queue filled)."""
    async with FakeSendGrid(
        webhook_url=receiver.url if webhook else None, auto_events_delay_seconds=delay_seconds
    ) as fake:
        await raw_send(fake, valid_payload())
        counts = await stats(fake)

    assert (counts["events_posted"], counts["events_pending"]) == (0, queued)


async def test_events_wait_while_the_webhook_is_unreachable_and_stopping_is_clean() -> None:
    """Two failed posts prove the fake tried, kept the events and tried again; a stop then ends
    the posting task instead of leaving it retrying."""
    async with FakeSendGrid() as gone:
        closed_url = f"{gone.url}/webhooks/sendgrid"
    fake = FakeSendGrid(webhook_url=closed_url, auto_events_delay_seconds=0.05)
    await fake.start()
    await raw_send(fake, valid_payload())

    async def retried() -> dict[str, Any] | None:
        counts = await stats(fake)
        return counts if counts["failed_posts"] >= 2 else None

    counts = await eventually(retried, "a second failed post to the unreachable webhook")
    [posting] = [task for task in asyncio.all_tasks() if task.get_name() == OUTBOX_TASK_NAME]
    await fake.stop()

    assert (counts["events_posted"], counts["events_pending"]) == (0, 2)
    assert posting.cancelled()


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


@contextlib.asynccontextmanager
async def fake_process(*args: str) -> AsyncIterator[tuple[str, str]]:
    """The fake run as `python -m` on a free port, yielding the URL and public key it prints.

    It is stopped with SIGTERM and must exit 0."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dripiq_devtools.fake_sendgrid",
        "--port",
        "0",
        *args,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        url_line = await asyncio.wait_for(process.stdout.readline(), timeout=10)
        key_line = await asyncio.wait_for(process.stdout.readline(), timeout=5)
        yield url_line.decode().split()[-1], key_line.decode().split()[-1]
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        exit_code = await asyncio.wait_for(process.wait(), timeout=10)
    assert exit_code == 0


async def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    key_file = tmp_path / "sendgrid.pem"
    async with fake_process("--private-key-file", str(key_file)) as (url, printed_key):
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/_fake/public-key") as resp:
                public_key = (await resp.json())["public_key"]

    assert url.startswith("http://127.0.0.1:")
    assert printed_key == public_key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert FakeSendGrid(private_key_pem=key_file.read_bytes()).public_key_base64 == public_key


async def test_cli_posts_events_by_itself(receiver: Receiver) -> None:
    async with fake_process("--webhook-url", receiver.url, "--auto-events-delay", "0.05") as (url, public_key):
        client = SendGridAPIClient(API_KEY, host=url)
        await asyncio.to_thread(client.client.mail.send.post, request_body=valid_payload())
        await eventually(lambda: len(receiver.events) == 2)

    assert [e["event"] for e in receiver.events] == ["processed", "delivered"]
    verifier = EventWebhook(public_key)
    assert all(
        verifier.verify_signature(p.body.decode(), p.headers[SIGNATURE_HEADER], p.headers[TIMESTAMP_HEADER])
        for p in receiver.requests
    )
