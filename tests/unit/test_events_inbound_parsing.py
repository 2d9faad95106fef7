"""Inbound Parse posts taken apart, and automatic replies told from people's replies."""

from __future__ import annotations

import pytest

from dripiq_common.errors import PermanentMessageError
from dripiq_events.inbound import InboundMail, auto_reply_reason, parse_inbound


def multipart(fields: dict[str, bytes]) -> tuple[bytes, str]:
    body = b"".join(
        f'--BOUND\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value + b"\r\n"
        for name, value in fields.items()
    )
    return body + b"--BOUND--\r\n", "multipart/form-data; boundary=BOUND"


def mail(subject: str = "Re: Hello", **headers: str) -> InboundMail:
    return InboundMail("ada@example.com", "x@y.test", (), subject, "", tuple(headers.items()))


def test_default_mode_fields_are_decoded_per_their_charset():
    body, content_type = multipart(
        {
            "headers": b"From: Ada <ada@example.com>\r\nIn-Reply-To: <a@x>\r\nReferences: <b@x>\r\n <c@x>\r\n",
            "from": b"Ada <ada@example.com>",
            "to": b"Sales <reply+tok@mail.test>, other@example.com",
            "subject": "Réponse".encode(),
            "text": "Très bien".encode("iso-8859-1"),
            "charsets": b'{"subject": "UTF-8", "text": "iso-8859-1"}',
            "attachment1": b"\x00\x01",
        }
    )
    parsed = parse_inbound(body, content_type)
    assert (parsed.from_email, parsed.subject, parsed.text) == ("ada@example.com", "Réponse", "Très bien")
    assert parsed.recipient_addresses == ["reply+tok@mail.test", "other@example.com"]
    assert parsed.referenced_message_ids == ["<a@x>", "<c@x>", "<b@x>"]


def test_envelope_recipients_win_and_unknown_charsets_do_not_fail():
    body, content_type = multipart(
        {
            "to": b"someone@example.com",
            "envelope": b'{"to": ["reply+tok@mail.test"], "from": "ada@example.com"}',
            "text": b"caf\xe9",
            "charsets": b'{"text": "no-such-charset"}',
        }
    )
    parsed = parse_inbound(body, content_type)
    assert parsed.recipient_addresses == ["reply+tok@mail.test"]
    assert parsed.text == "caf\ufffd"


def test_raw_mode_reads_the_mime_message():
    mime = (
        b"From: Bob <bob@example.com>\r\nSubject: =?utf-8?q?R=C3=A9?=\r\nIn-Reply-To: <m@x>\r\n"
        b"Content-Type: multipart/alternative; boundary=AA\r\n\r\n"
        b"--AA\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n"
        b"--AA\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n--AA--\r\n"
    )
    parsed = parse_inbound(*multipart({"email": mime}))
    assert (parsed.from_email, parsed.subject, parsed.text.strip()) == ("bob@example.com", "Ré", "hello")
    assert parsed.header("in-reply-to") == "<m@x>"


def test_a_body_that_is_not_multipart_is_permanent():
    with pytest.raises(PermanentMessageError):
        parse_inbound(b"hello", "text/plain")


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (mail(**{"Auto-Submitted": "auto-replied"}), "auto-submitted: auto-replied"),
        (mail(**{"X-Autoreply": "yes"}), "x-autoreply"),
        (mail(**{"X-Autorespond": "1"}), "x-autorespond"),
        (mail(Precedence="bulk"), "precedence: bulk"),
        (mail("Out of Office: back Monday"), "subject"),
        (mail("Automatic reply: Hello"), "subject"),
        (mail("Autoreply"), "subject"),
    ],
)
def test_automatic_replies_are_recognised(message, reason):
    assert auto_reply_reason(message) == reason


@pytest.mark.parametrize(
    "message",
    [mail(), mail(**{"Auto-Submitted": "no"}), mail("Re: out of office plans for next week?"), mail(Precedence="list")],
)
def test_people_replies_are_not_auto_replies(message):
    assert auto_reply_reason(message) is None
