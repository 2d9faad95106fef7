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
from dripiq_dispatcher import domain, provider
from dripiq_dispatcher.domain import FailureKind, Identity
from dripiq_dispatcher.settings import DispatcherSettings

SIGNER = TokenSigner(b"unit-test-secret-0123456789")
MAIL = domain.MailSettings("reply.test", "mid.test", "https://u.test/u/")
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
        domain.new_message(command(message_id="campaign-1-step-2"))
    assert raised.value.field == "message_id"
    with pytest.raises(InvalidArgument) as raised:
        domain.new_message(command(tenant_id="no spaces"))
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
    ],
)
def test_content_problems_name_what_is_wrong(overrides: dict[str, object], expected: str | None) -> None:
    problem = domain.content_problem(domain.new_message(command(**overrides)))
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and expected in problem


def test_identity_must_exist_and_be_verified() -> None:
    assert "does not exist" in str(domain.sendable_identity(None, "id-9"))
    unverified = Identity(id="id-1", from_email="x@acme.test", from_name="", verified=False)
    assert "is not verified" in str(domain.sendable_identity(unverified, "id-1"))
    assert domain.sendable_identity(IDENTITY, "id-1") is IDENTITY


def test_mail_carries_every_tracking_key() -> None:
    message = domain.new_message(command())

    mail = domain.build_mail(message, IDENTITY, signer=SIGNER, settings=MAIL)

    assert mail["from"] == {"email": "sales@acme.test", "name": "Acme Sales"}
    assert mail["personalizations"] == [{"to": [{"email": "Ada@Example.com", "name": "Ada"}]}]
    assert mail["custom_args"] == {
        "tenant_id": "t-1",
        "campaign_id": "camp-1",
        "step_index": "2",
        "message_id": MESSAGE_ID,
    }
    assert mail["categories"] == ["onboarding"]
    token = token_from_reply_address(mail["reply_to"]["email"])
    assert mail["reply_to"]["email"].endswith("@reply.test")
    assert token is not None and SIGNER.parse_reply_token(token) == MESSAGE_ID
    headers = mail["headers"]
    assert headers["Message-ID"] == f"<{MESSAGE_ID}@mid.test>"
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = headers["List-Unsubscribe"].strip("<>")
    assert url.startswith("https://u.test/u/")
    assert SIGNER.parse_unsubscribe_token(url.removeprefix("https://u.test/u/")) == (
        "t-1",
        MESSAGE_ID,
    )
    text, html = mail["content"]
    assert text["type"] == "text/plain" and text["value"].startswith("Hi Ada") and url in text["value"]
    assert html["type"] == "text/html" and html["value"].endswith("</body></html>")
    assert f'href="{url}"' in html["value"]


def test_html_only_mail_has_no_text_part() -> None:
    message = domain.new_message(command(body_text="", body_html="<p>Hi</p>", categories=[]))

    mail = domain.build_mail(message, IDENTITY, signer=SIGNER, settings=MAIL)

    assert [c["type"] for c in mail["content"]] == ["text/html"]
    assert mail["content"][0]["value"].startswith("<p>Hi</p><p")
    assert "categories" not in mail


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
    assert domain.classify_failure(exc).kind == kind


def test_provider_reason_names_fields() -> None:
    body = {
        "errors": [
            {"message": "The subject is required.", "field": "subject"},
            {"message": "Bad Request", "field": None},
        ]
    }
    failure = domain.classify_failure(http_error(BadRequestsError, 400, body))
    assert failure.reason == "sendgrid 400: subject: The subject is required.; Bad Request"
    assert domain.provider_reason(b"<html>gateway</html>") == "<html>gateway</html>"


@pytest.mark.parametrize(
    ("event_type", "bounce_type", "reason"),
    [
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
    assert domain.suppression_reason(event_type, bounce_type) == reason


def test_outcome_carries_what_the_planner_needs() -> None:
    message = domain.new_message(command())
    at = datetime(2030, 1, 1, tzinfo=UTC)

    fact = domain.outcome(
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


def settings(**env: str) -> DispatcherSettings:
    return DispatcherSettings(database_url="postgresql://x@h/db", token_secret="s" * 16, **env)  # type: ignore[arg-type]


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
    monkeypatch.setenv("DISPATCHER_REPLY_DOMAIN", "r.example")
    monkeypatch.setenv("DISPATCHER_SEND_CONCURRENCY", "4")

    loaded = DispatcherSettings()  # type: ignore[call-arg]

    assert loaded.sendgrid_api_host == "http://127.0.0.1:9"
    assert loaded.sendgrid_api_key is None
    assert (loaded.reply_domain, loaded.send_concurrency, loaded.grpc_port) == (
        "r.example",
        4,
        50052,
    )
