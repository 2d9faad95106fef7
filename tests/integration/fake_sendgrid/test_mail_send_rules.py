"""SendGrid's Mail Send rules, one bad payload each: the fake refuses it naming the field with
SendGrid's message, reports every broken rule at once, and takes the richest mail within limits.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from fake_sendgrid_support import API_KEY, RECIPIENT, SENDER, personalized, raw_send, recipients, valid_payload
from python_http_client.exceptions import BadRequestsError
from sendgrid import SendGridAPIClient
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

from dripiq_devtools.fake_sendgrid import FakeSendGrid
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
)


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
