"""Dispatcher rules without I/O: command checks, the mail body, failure judgement, suppression."""

from __future__ import annotations

import json
import urllib.error
from datetime import UTC, datetime

import pytest
from python_http_client.exceptions import (
    BadRequestsError,
    HTTPError,
    ServiceUnavailableError,
    TooManyRequestsError,
    UnauthorizedError,
)

from dripiq.dispatcher.v1 import messages_pb2
from dripiq_common.errors import InvalidArgument
from dripiq_common.tokens import TokenSigner, token_from_reply_address
from dripiq_dispatcher import campaign_mail, convert, domain, failures, outcomes, provider, rendering, suppressions
from dripiq_dispatcher.campaign_mail import Identity
from dripiq_dispatcher.failures import FailureKind
from dripiq_dispatcher.settings import DispatcherSettings

SIGNER = TokenSigner(b"unit-test-secret-0123456789")
MAIL = campaign_mail.MailSettings("reply.test", "mid.test", "https://u.test/u/")
MESSAGE_ID = "7b0c1f4e-3f55-4a43-9a59-0d4f0f3b9a10"
IDENTITY = Identity(id="id-1", from_email="sales@acme.test", from_name="Acme Sales", verified=True)


def command(**overrides: object) -> messages_pb2.SendMessageCommand:
    fields: dict[str, object] = {
        "tenant_id": "t-1",
        "message_id": MESSAGE_ID,
        "campaign_id": "camp-1",
        "step_index": 2,
        "contact_id": "contact-1",
        "channel": "email",
        "to_email": "Ada@Example.com",
        "to_name": "Ada",
        "sender_identity_id": "id-1",
        "subject": "Hello",
        "body_text": "Hi Ada",
        "body_html": "<html><body><p>Hi Ada</p></body></html>",
        "categories": ["onboarding"],
    }
    fields.update(overrides)
    return messages_pb2.SendMessageCommand(**fields)  # type: ignore[arg-type]


def http_error(kind: type[HTTPError], status: int, body: object) -> HTTPError:
    return kind(status, "reason", json.dumps(body).encode(), {})


def test_command_needs_a_tenant_and_a_uuid_message_id() -> None:
    with pytest.raises(InvalidArgument) as raised:
        convert.new_message(command(message_id="campaign-1-step-2"))
    assert raised.value.field == "message_id"
    with pytest.raises(InvalidArgument) as raised:
        convert.new_message(command(tenant_id="no spaces"))
    assert raised.value.field == "tenant_id"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, None),
        ({"to_email": "not-an-address"}, "to_email"),
        ({"subject": ""}, "subject"),
        ({"body_text": "", "body_html": ""}, "body_text or body_html"),
        ({"channel": "sms"}, "channel 'sms' is not one the dispatcher handles (call, email, linkedin)"),
        ({"channel": "linkedin"}, None),
        ({"channel": "call", "subject": "", "body_text": ""}, "invalid task command: subject"),
        ({"channel": "call", "to_email": "nobody"}, "invalid task command: to_email"),
        ({"categories": [f"c{i}" for i in range(11)]}, "at most 10 categories"),
        ({"product_id": "p" * 256}, "product_id must be at most 255 characters"),
        ({"channel": "call", "strategist": "s" * 256}, "strategist must be at most 255 characters"),
        ({"product_id": "p" * 255, "strategist": "openai", "variant": "b"}, None),
    ],
)
def test_content_problems_name_what_is_wrong(overrides: dict[str, object], expected: str | None) -> None:
    problem = domain.content_problem(convert.new_message(command(**overrides)))
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and expected in problem


def test_identity_must_exist_and_be_verified() -> None:
    assert "does not exist" in str(campaign_mail.sendable_identity(None, "id-9"))
    unverified = Identity(id="id-1", from_email="x@acme.test", from_name="", verified=False)
    assert "is not verified" in str(campaign_mail.sendable_identity(unverified, "id-1"))
    assert campaign_mail.sendable_identity(IDENTITY, "id-1") is IDENTITY


def test_mail_carries_every_tracking_key() -> None:
    message = convert.new_message(command())

    mail = campaign_mail.build_mail(message, IDENTITY, signer=SIGNER, settings=MAIL)

    assert mail["from"] == {"email": "sales@acme.test", "name": "Acme Sales"}
    [personalization] = mail["personalizations"]
    assert personalization["to"] == [{"email": "Ada@Example.com", "name": "Ada"}]
    assert personalization["custom_args"] == {
        "tenant_id": "t-1",
        "campaign_id": "camp-1",
        "step_index": "2",
        "message_id": MESSAGE_ID,
    }
    assert "custom_args" not in mail, "SendGrid's schema types only the personalization's as an object"
    assert mail["categories"] == ["onboarding"]
    token = token_from_reply_address(mail["reply_to"]["email"])
    assert mail["reply_to"]["email"].endswith("@reply.test")
    assert token is not None and SIGNER.parse_reply_token(token) == MESSAGE_ID
    headers = mail["headers"]
    assert headers["Message-ID"] == f"<{MESSAGE_ID}@mid.test>"
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "In-Reply-To" not in headers and "References" not in headers
    url = headers["List-Unsubscribe"].strip("<>")
    assert url.startswith("https://u.test/u/")
    assert SIGNER.parse_unsubscribe_token(url.removeprefix("https://u.test/u/")) == (
        "t-1",
        MESSAGE_ID,
    )
    text, html = mail["content"]
    assert text["type"] == "text/plain" and text["value"].startswith("Hi Ada") and url in text["value"]
    assert html["type"] == "text/html" and html["value"].endswith("</body></html>")
    assert f'<a clicktracking="off" href="{url}">Unsubscribe</a>' in html["value"]


def test_every_email_is_multipart_with_html_rendered_from_its_text() -> None:
    body = (
        "Hi **Ada**,\n\nSee https://acme.test/demo or [the page](https://acme.test/p).\n<script>alert(1)</script>\nSam"
    )
    message = convert.new_message(command(body_text=body, body_html=""))

    text, html = campaign_mail.build_mail(message, IDENTITY, signer=SIGNER, settings=MAIL)["content"]

    assert text["value"].startswith(body), "the text part is what the step says, readable as it is"
    assert "<strong>Ada</strong>" in html["value"]
    assert '<a href="https://acme.test/demo" rel="noopener noreferrer">https://acme.test/demo</a>' in html["value"]
    assert '<a href="https://acme.test/p" rel="noopener noreferrer">the page</a>' in html["value"]
    assert "<script>" not in html["value"] and "&lt;script&gt;alert(1)&lt;/script&gt;" in html["value"]
    assert "<br>\nSam" in html["value"], "line breaks stay line breaks"


def test_rendering_keeps_lists_code_and_tags_as_written() -> None:
    body = "Three things:\n- one\n- two <b>bold?</b>\n\n```\nkeep  this\n```\n\nSee <https://acme.test/x>."

    html = rendering.html_body(body)

    assert "<p>Three things:</p>\n<ul>\n<li>one</li>\n<li>two &lt;b&gt;bold?&lt;/b&gt;</li>\n</ul>" in html
    # (A typed line break is two trailing spaces to Markdown: inside code they are invisible.)
    assert "<pre><code>keep  this" in html and "```" not in html
    assert '<a href="https://acme.test/x" rel="noopener noreferrer">https://acme.test/x</a>.' in html


def test_html_only_mail_gets_a_readable_text_part_and_is_cleaned() -> None:
    given = '<p onclick="x()">Hi <b>Ada</b></p><script>steal()</script><p><a href="javascript:x()">j</a></p>'
    message = convert.new_message(command(body_text="", body_html=given, categories=[]))

    mail = campaign_mail.build_mail(message, IDENTITY, signer=SIGNER, settings=MAIL)

    text, html = mail["content"]
    assert [text["type"], html["type"]] == ["text/plain", "text/html"]
    assert text["value"].startswith("Hi Ada\nj")
    assert "onclick" not in html["value"] and "steal" not in html["value"] and "javascript" not in html["value"]
    assert "<p>Hi <b>Ada</b></p>" in html["value"]
    assert "categories" not in mail


def test_tracking_is_set_explicitly_and_follows_the_tenant() -> None:
    tracked = campaign_mail.build_mail(convert.new_message(command()), IDENTITY, signer=SIGNER, settings=MAIL)
    assert tracked["tracking_settings"] == {
        "open_tracking": {"enable": True},
        "click_tracking": {"enable": True, "enable_text": False},
        "subscription_tracking": {"enable": False},
    }
    private = convert.new_message(command(tracking=messages_pb2.Tracking(opens=False, clicks=False)))
    settings = campaign_mail.MailSettings("reply.test", "mid.test", "https://u.test/u/", click_tracking_text=True)
    untracked = campaign_mail.build_mail(private, IDENTITY, signer=SIGNER, settings=settings)
    assert untracked["tracking_settings"]["open_tracking"] == {"enable": False}
    assert untracked["tracking_settings"]["click_tracking"] == {"enable": False, "enable_text": False}
    with_text = campaign_mail.build_mail(convert.new_message(command()), IDENTITY, signer=SIGNER, settings=settings)
    assert with_text["tracking_settings"]["click_tracking"] == {"enable": True, "enable_text": True}


def test_the_sent_outcome_says_why_opens_or_clicks_cannot_arrive() -> None:
    now = datetime(2026, 12, 2, tzinfo=UTC)
    sent = messages_pb2.OUTCOME_KIND_SENT
    tracked = outcomes.outcome(convert.new_message(command()), sent, occurred_at=now)
    assert (tracked.opens_untracked_reason, tracked.clicks_untracked_reason) == ("", "")
    private = convert.new_message(command(tracking=messages_pb2.Tracking(opens=False, clicks=True)))
    fact = outcomes.outcome(private, sent, occurred_at=now)
    assert fact.opens_untracked_reason == "open tracking is off for this tenant" and not fact.clicks_untracked_reason
    task = outcomes.outcome(convert.new_message(command(channel="call")), sent, occurred_at=now)
    assert task.opens_untracked_reason == "a call task has no opens"


def test_a_threaded_follow_up_points_at_the_earlier_emails() -> None:
    earlier = ["11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"]
    message = convert.new_message(command(subject="Re: Hello", thread_message_ids=earlier))

    headers = campaign_mail.build_mail(message, IDENTITY, signer=SIGNER, settings=MAIL)["headers"]

    assert headers["In-Reply-To"] == f"<{earlier[1]}@mid.test>"
    assert headers["References"] == f"<{earlier[0]}@mid.test> <{earlier[1]}@mid.test>"
    assert headers["Message-ID"] == f"<{MESSAGE_ID}@mid.test>"


def test_the_footer_carries_the_postal_address_and_real_sendgrid_requires_one() -> None:
    address = "Acme Inc.\n1 Main Street\nSpringfield, IL 62701, USA"
    message = convert.new_message(command(postal_address=address))
    text, html = campaign_mail.build_mail(message, IDENTITY, signer=SIGNER, settings=MAIL)["content"]
    assert address in text["value"]
    assert "Acme Inc.<br>1 Main Street<br>Springfield, IL 62701, USA" in html["value"]
    strict = campaign_mail.MailSettings("reply.test", "mid.test", "https://u.test/u/", require_postal_address=True)
    assert campaign_mail.mail_problem(message, strict) is None
    problem = campaign_mail.mail_problem(convert.new_message(command()), strict)
    assert problem is not None and "postal address" in problem and "UpdateTenantSettings" in problem
    assert campaign_mail.mail_problem(convert.new_message(command()), MAIL) is None, "a local fake needs none"
    assert campaign_mail.mail_problem(convert.new_message(command(channel="call")), strict) is None


def test_real_sendgrid_requires_a_postal_address_unless_told_otherwise(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("SENDGRID_API_KEY", raising=False)
    monkeypatch.delenv("DISPATCHER_REQUIRE_POSTAL_ADDRESS", raising=False)
    assert not settings().requires_postal_address
    assert settings(sendgrid_api_key="SG.real").requires_postal_address
    assert not settings(sendgrid_api_key="SG.real", require_postal_address=False).requires_postal_address


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (
            http_error(BadRequestsError, 400, {"errors": [{"message": "bad", "field": "subject"}]}),
            FailureKind.PERMANENT,
        ),
        (
            http_error(UnauthorizedError, 401, {"errors": [{"message": "no", "field": None}]}),
            FailureKind.PERMANENT,
        ),
        (http_error(HTTPError, 413, {"errors": []}), FailureKind.PERMANENT),
        (http_error(TooManyRequestsError, 429, {"errors": []}), FailureKind.RETRY),
        (http_error(ServiceUnavailableError, 503, {"errors": []}), FailureKind.RETRY),
        (http_error(HTTPError, 502, {"errors": []}), FailureKind.RETRY),
        (
            urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")),
            FailureKind.RETRY,
        ),
        (urllib.error.URLError(TimeoutError("timed out")), FailureKind.RETRY),
        (TimeoutError("timed out"), FailureKind.UNKNOWN),
        (ConnectionResetError(104, "reset by peer"), FailureKind.UNKNOWN),
    ],
)
def test_failures_are_judged_by_whether_the_request_may_have_been_accepted(
    exc: BaseException, kind: FailureKind
) -> None:
    assert failures.classify_failure(exc).kind == kind


def test_provider_reason_names_fields() -> None:
    body = {
        "errors": [
            {"message": "The subject is required.", "field": "subject"},
            {"message": "Bad Request", "field": None},
        ]
    }
    failure = failures.classify_failure(http_error(BadRequestsError, 400, body))
    assert failure.reason == "sendgrid 400: subject: The subject is required.; Bad Request"
    assert failures.provider_reason(b"<html>gateway</html>") == "<html>gateway</html>"


@pytest.mark.parametrize(
    ("event_type", "bounce_type", "reason"),
    [
        ("reply", "", None),
        ("unsubscribe", "", "unsubscribe"),
        ("group_unsubscribe", "", "group_unsubscribe"),
        ("spamreport", "", "spamreport"),
        ("bounce", "bounce", "bounce"),
        ("bounce", "blocked", None),
        ("open", "", None),
        ("delivered", "", None),
    ],
)
def test_only_lasting_refusals_suppress(event_type: str, bounce_type: str, reason: str | None) -> None:
    assert suppressions.suppression_reason(event_type, bounce_type) == reason


@pytest.mark.parametrize(
    ("reply_class", "reason"),
    [("unsubscribe_request", "unsubscribe_request"), ("not_interested", None), ("interested", None), ("", None)],
)
def test_a_reply_asking_off_the_list_suppresses(reply_class: str, reason: str | None) -> None:
    assert suppressions.suppression_reason("reply", "", reply_class) == reason
    # Only a reply carries a class; any other event keeps its own rule.
    assert suppressions.suppression_reason("open", "", reply_class) is None


def test_outcome_carries_what_the_planner_needs() -> None:
    message = convert.new_message(command())
    at = datetime(2030, 1, 1, tzinfo=UTC)

    fact = outcomes.outcome(
        message,
        messages_pb2.OUTCOME_KIND_SENT,
        occurred_at=at,
        provider_message_id="pm-1",
        rfc_message_id="<x@y>",
    )

    assert (fact.tenant_id, fact.message_id, fact.step_index, fact.provider) == (
        "t-1",
        MESSAGE_ID,
        2,
        "sendgrid",
    )
    assert (fact.to_email, fact.subject, fact.provider_message_id) == (
        "Ada@Example.com",
        "Hello",
        "pm-1",
    )
    assert fact.occurred_at.ToDatetime(tzinfo=UTC) == at


MAIL_URLS = {
    "reply_domain": "reply.dripiq-mail.com",
    "message_id_domain": "mail.dripiq-mail.com",
    "unsubscribe_base_url": "https://hooks.dripiq-mail.com/u/",
}


def settings(**env: str) -> DispatcherSettings:
    return DispatcherSettings(database_url="postgresql://x@h/db", token_secret="s" * 16, **{**MAIL_URLS, **env})  # type: ignore[arg-type]


def test_without_a_key_only_a_local_host_is_allowed() -> None:
    assert provider.api_key_for(settings(sendgrid_api_host="http://127.0.0.1:8025")) == provider.PLACEHOLDER_API_KEY
    assert provider.api_key_for(settings(sendgrid_api_key="SG.real")) == "SG.real"
    with pytest.raises(SystemExit, match="SENDGRID_API_KEY"):
        provider.api_key_for(settings())
    with pytest.raises(SystemExit):
        provider.api_key_for(settings(sendgrid_api_key="", sendgrid_api_host="https://api.eu.sendgrid.com"))


def test_settings_read_suite_wide_and_prefixed_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://x@h/db")
    monkeypatch.setenv("DRIPIQ_TOKEN_SECRET", "0123456789abcdef")
    monkeypatch.setenv("SENDGRID_API_HOST", "http://127.0.0.1:9")
    monkeypatch.setenv("DISPATCHER_REPLY_DOMAIN", "r.dripiq-mail.com")
    monkeypatch.setenv("DISPATCHER_MESSAGE_ID_DOMAIN", "m.dripiq-mail.com")
    monkeypatch.setenv("DISPATCHER_UNSUBSCRIBE_BASE_URL", "https://hooks.dripiq-mail.com/u/")
    monkeypatch.setenv("DISPATCHER_SEND_CONCURRENCY", "4")

    loaded = DispatcherSettings()  # type: ignore[call-arg]

    assert loaded.sendgrid_api_host == "http://127.0.0.1:9"
    assert loaded.sendgrid_api_key is None
    assert (loaded.reply_domain, loaded.send_concurrency, loaded.grpc_port) == (
        "r.dripiq-mail.com",
        4,
        50052,
    )
