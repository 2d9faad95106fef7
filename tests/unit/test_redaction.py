"""What reaches logs and dead letters: no contact's address, no copy, no secret."""

from __future__ import annotations

import io
import json
import logging

import structlog

from dripiq_common.logging import RedactingFilter, configure_logging
from dripiq_common.redaction import error_text, one_line, redact, redact_event


def test_email_addresses_keep_their_domain_only() -> None:
    assert redact("bounce for jane.doe+x@acme.example.com today") == "bounce for ***@acme.example.com today"
    assert redact("Key (email)=(ceo@tenant-b.com) already exists.") == "Key (email)=(***@tenant-b.com) already exists."


def test_secrets_are_masked_wherever_they_appear() -> None:
    jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    text = (
        f"auth Bearer abcdefghijklmnop, token {jwt}, key SG.aaaaaaaaaaaaaaaaaaaaaa.bbbbbbbbbbbbbbbbbbbbbbbbbb, "
        "openai sk-proj-aaaaaaaaaaaaaaaaaaaa, url postgresql://app:hunter2@db:5432/x, "
        "link https://edge.example/u/AbCdEfGhIjKlMnOpQrStUv"
    )
    out = redact(text)
    for secret in ("abcdefghijklmnop", jwt, "SG.aaaa", "sk-proj", "hunter2", "AbCdEfGhIjKlMnOpQrStUv"):
        assert secret not in out, secret
    assert "postgresql://[redacted]@db:5432/x" in out


def test_fields_that_hold_copy_or_secrets_are_dropped_whole() -> None:
    event = redact_event(
        None,
        "info",
        {
            "event": "sent to bob@x.io",
            "body": "Hi Bob, your account ...",
            "mail_subject": "Quick question",
            "token": "anything",
            "to": "bob@x.io",
            "nested": {"html": "<p>hi</p>", "emails": ["a@b.co", "c@d.co"]},
            "count": 3,
        },
    )
    assert event == {
        "event": "sent to ***@x.io",
        "body": "[24 chars]",
        "mail_subject": "[14 chars]",
        "token": "[redacted]",
        "to": "***@x.io",
        "nested": {"html": "[9 chars]", "emails": ["***@b.co", "***@d.co"]},
        "count": 3,
    }


def test_an_error_is_one_redacted_line_with_its_class() -> None:
    error = ValueError("bad address\r\nx@y.co\nDripiq-Forged: 1")
    text = error_text(error)
    assert text == "ValueError: bad address ***@y.co Dripiq-Forged: 1"
    assert "\n" not in text and "\r" not in text
    assert error_text(RuntimeError()) == "RuntimeError"
    assert len(error_text(ValueError("x" * 5000))) == 1000
    assert one_line("tenant 'acme\\n'\n bad") == "tenant 'acme\\n' bad"


def test_log_lines_are_redacted_in_json_and_standard_logging(capsys) -> None:  # type: ignore[no-untyped-def]
    configure_logging("test", log_format="json")
    try:
        structlog.get_logger("t").warning(
            "send.failed", to="jane@acme.io", body="secret copy", error="for jane@acme.io"
        )
        try:
            raise RuntimeError("password for jane@acme.io")
        except RuntimeError:
            structlog.get_logger("t").exception("boom")
        line, exception_line = capsys.readouterr().err.strip().splitlines()[-2:]
        record = json.loads(line)
        assert record["to"] == "***@acme.io" and record["body"] == "[11 chars]" and "jane" not in line
        assert "jane" not in exception_line and "***@acme.io" in exception_line

        # Every handler of the standard logging module redacts too.
        handlers = logging.getLogger().handlers
        assert handlers and all(any(isinstance(f, RedactingFilter) for f in h.filters) for h in handlers)
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.addFilter(RedactingFilter())
        library = logging.getLogger("test.library")
        library.addHandler(handler)
        try:
            library.warning("row for %s failed", "jane@acme.io")
        finally:
            library.removeHandler(handler)
        assert "jane" not in stream.getvalue() and "row for ***@acme.io failed" in stream.getvalue()
    finally:
        structlog.reset_defaults()
        for h in logging.getLogger().handlers:
            for f in [f for f in h.filters if isinstance(f, RedactingFilter)]:
                h.removeFilter(f)
