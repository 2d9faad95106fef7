"""Every Mail Send body the dispatcher builds holds to SendGrid's published schema.

The schema is SendGrid's own OpenAPI description of `POST /v3/mail/send`, vendored under
`tools/devtools/src/dripiq_devtools/specs/` with its source. Each body the dispatcher can build
is checked here: campaign email in its shapes (text, HTML, both, threaded, tracking off, names
and none) and a reply forwarded to a person. No erratum is excused: the dispatcher puts its
custom_args on the personalization, where the spec types them correctly.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from dripiq.dispatcher.v1 import messages_pb2
from dripiq_common.tokens import TokenSigner
from dripiq_devtools.sendgrid_schema import mail_send_schema_errors
from dripiq_dispatcher import campaign_mail, convert, domain, forward_mail
from dripiq_dispatcher.campaign_mail import Identity
from dripiq_dispatcher.forward_mail import AnsweredMessage, ForwardRoute

SIGNER = TokenSigner(b"unit-test-secret-0123456789")
MAIL = campaign_mail.MailSettings("reply.test", "mid.test", "https://u.test/u/", click_tracking_text=True)
IDENTITY = Identity(id="id-1", from_email="sales@acme.test", from_name="Acme Sales", verified=True)
UNNAMED = Identity(id="id-2", from_email="noname@acme.test", from_name="", verified=True)
MESSAGE_ID = "7b0c1f4e-3f55-4a43-9a59-0d4f0f3b9a10"
EARLIER = ("0b9b5a43-3b7e-4d55-9f6c-4a1f2f3e1a01", "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f")


def command(**overrides: object) -> messages_pb2.SendMessageCommand:
    fields: dict[str, object] = {
        "tenant_id": "t-1",
        "message_id": MESSAGE_ID,
        "campaign_id": "camp-1",
        "step_index": 2,
        "contact_id": "contact-1",
        "channel": "email",
        "to_email": "ada@example.com",
        "to_name": "Ada Lovelace",
        "sender_identity_id": "id-1",
        "subject": "Files TPS reports for you",
        "body_text": "Hi Ada,\n\nSee https://tps.example/autopilot for the details.\n\nBest,\nAcme",
        "postal_address": "1 Infinite Loop, Cupertino, CA 95014, USA",
        "categories": ["onboarding", "campaign:camp-1"],
    }
    fields.update(overrides)
    return messages_pb2.SendMessageCommand(**fields)  # type: ignore[arg-type]


CAMPAIGN_MAIL = {
    "text only": {},
    "HTML only": {"body_text": "", "body_html": "<p>Hi <b>Ada</b>, <a href='https://tps.example'>look</a></p>"},
    "text and HTML": {"body_html": "<html><body><p>Hi Ada</p></body></html>"},
    "threaded follow-up": {"subject": "Re: Files TPS reports for you", "thread_message_ids": list(EARLIER)},
    "tracking off": {"tracking": messages_pb2.Tracking(opens=False, clicks=False)},
    "no names, no categories, no postal address": {"to_name": "", "categories": [], "postal_address": ""},
    "unicode everywhere": {"to_name": "Zoë Ørsted", "subject": "Grüße, Zoë 👋", "body_text": "Ça va ? 你好"},
}


@pytest.mark.parametrize("overrides", list(CAMPAIGN_MAIL.values()), ids=list(CAMPAIGN_MAIL))
@pytest.mark.parametrize("identity", [IDENTITY, UNNAMED], ids=["named sender", "unnamed sender"])
def test_campaign_mail_validates_against_sendgrids_schema(overrides: dict[str, object], identity: Identity) -> None:
    message = convert.new_message(command(**overrides))
    assert domain.content_problem(message) is None

    body = campaign_mail.build_mail(message, identity, signer=SIGNER, settings=MAIL)

    assert mail_send_schema_errors(as_sent(body)) == []
    # multipart/alternative as SendGrid wants it: text/plain first, then text/html.
    assert [part["type"] for part in body["content"]] == ["text/plain", "text/html"]


def test_a_forwarded_reply_validates_against_sendgrids_schema() -> None:
    reply = convert.reply_to_forward(
        messages_pb2.ForwardReplyCommand(
            tenant_id="t-1",
            inbound_id="42",
            message_id=MESSAGE_ID,
            from_email="ada@example.com",
            subject="Re: Files TPS reports for you",
            text="Sounds good, call me Tuesday.\n\nOn Mon, Acme wrote:\n> Hi Ada",
            html="<div>Sounds good, <script>alert(1)</script>call me Tuesday.</div>",
            reply_class="interested",
        )
    )
    answered = AnsweredMessage(MESSAGE_ID, "camp-1", 0, "Files TPS reports for you", "ada@example.com", "Ada", "id-1")

    body = forward_mail.build_forward(reply, answered, ForwardRoute(IDENTITY, "rep@acme.test"))

    assert mail_send_schema_errors(as_sent(body)) == []


def test_the_schema_check_can_fail_on_a_dispatcher_body() -> None:
    """The check above is not vacuous: a body the dispatcher built, broken as a bug would break
    it, is refused by the schema with the path named."""
    body = as_sent(campaign_mail.build_mail(convert.new_message(command()), IDENTITY, signer=SIGNER, settings=MAIL))
    body["personalizations"][0]["to"][0]["email"] = "nobody"
    body["tracking_settings"]["open_tracking"]["enable"] = "yes"

    errors = mail_send_schema_errors(body)

    assert errors == [
        "$.personalizations[0].to[0].email: 'nobody' is not a 'email'",
        "$.tracking_settings.open_tracking.enable: 'yes' is not of type 'boolean'",
    ]


def as_sent(body: dict[str, Any]) -> Any:
    """The body as the sendgrid client puts it on the wire (JSON), so the schema sees the
    same types SendGrid does."""
    return json.loads(json.dumps(body, default=_no_surprises))


def _no_surprises(value: object) -> object:
    if isinstance(value, datetime):
        return int(value.astimezone(UTC).timestamp())
    raise TypeError(f"not JSON: {value!r}")
