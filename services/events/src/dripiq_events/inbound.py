"""SendGrid Inbound Parse posts: the multipart body taken apart, and what kind of reply it is.

Parsing happens here rather than at the edge so that a parsing bug never loses mail: the raw
post waits on JetStream (or in the dead-letter stream) until fixed code reads it again.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser, Parser
from email.utils import getaddresses, parseaddr, parsedate_to_datetime

from dripiq_common.errors import PermanentMessageError
from dripiq_events.storable import scrub

# The form fields we use; attachments (attachment1..N) and spam reports are not kept.
_FIELDS = {"headers", "text", "html", "from", "to", "subject", "envelope", "charsets", "email"}
_MESSAGE_ID = re.compile(r"<[^<>\s]+>")
_AUTO_SUBJECT = re.compile(
    r"^\s*(?:out of (?:the )?office|automatic reply|auto(?:matic)?[- ]?(?:reply|response)|autorespon)",
    re.IGNORECASE,
)
# RFC 3834 and the de-facto markers Exchange, Gmail and most ticketing tools set.
_AUTO_PRECEDENCE = {"auto_reply", "bulk", "junk"}
_AUTO_FLAG_HEADERS = ("X-Autoreply", "X-Autorespond")
# A Date header further than this from the arrival is a wrong clock, not a slow delivery.
_DATE_TRUST = timedelta(days=3)


@dataclass(frozen=True)
class InboundMail:
    from_email: str
    to: str
    # The addresses SendGrid received the mail for: where a reply token sits.
    envelope_to: tuple[str, ...]
    subject: str
    text: str
    headers: tuple[tuple[str, str], ...]
    # The HTML part as sent: never shown before reply_text.sanitized_html has cleaned it.
    html: str = ""

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)

    @property
    def recipient_addresses(self) -> list[str]:
        if self.envelope_to:
            return list(self.envelope_to)
        return [address for _, address in getaddresses([self.to]) if address]

    def sent_at(self, *, received_at: datetime) -> datetime:
        """When its author sent it, in their own UTC offset (its Date header), or received_at
        when the header is missing, unreadable or implausibly far from when it arrived."""
        try:
            sent = parsedate_to_datetime(self.header("Date") or "")
        except (TypeError, ValueError, IndexError):
            return received_at
        if sent.tzinfo is None or abs(sent - received_at) > _DATE_TRUST:
            return received_at
        return sent

    @property
    def referenced_message_ids(self) -> list[str]:
        """In-Reply-To first, then References newest first: the likeliest parent leads."""
        in_reply_to = _MESSAGE_ID.findall(self.header("In-Reply-To") or "")
        references = _MESSAGE_ID.findall(self.header("References") or "")
        return list(dict.fromkeys([*in_reply_to, *reversed(references)]))


def parse_inbound(body: bytes, content_type: str) -> InboundMail:
    """One Inbound Parse post, default or raw ("Send Raw") mode."""
    fields = _form_fields(body, content_type)
    charsets = _json_object(fields.get("charsets", b""))

    def field(name: str) -> str:
        return _decode(fields.get(name, b""), str(charsets.get(name) or "utf-8"))

    envelope = _json_object(fields.get("envelope", b""))
    listed = envelope.get("to")
    envelope_to = tuple(scrub(str(a)) for a in listed) if isinstance(listed, list) else ()
    if "email" in fields:
        message = BytesParser(policy=policy.default).parsebytes(fields["email"])
        headers = _header_pairs(message)
        text = _body(message, "plain")
        html = _body(message, "html")
        subject = field("subject") or str(message.get("Subject", ""))
        sender = field("from") or str(message.get("From", ""))
        to = field("to") or str(message.get("To", ""))
    else:
        headers = _header_pairs(Parser(policy=policy.default).parsestr(field("headers"), headersonly=True))
        text, subject, sender, to = field("text"), field("subject"), field("from"), field("to")
        html = field("html")
    return InboundMail(
        from_email=scrub(parseaddr(sender)[1] or sender),
        to=scrub(to),
        envelope_to=envelope_to,
        subject=scrub(subject),
        text=scrub(text),
        headers=tuple((scrub(name), scrub(value)) for name, value in headers),
        html=scrub(html),
    )


def auto_reply_reason(mail: InboundMail) -> str | None:
    """Why this looks like an automatic reply (out of office, autoresponder), or None."""
    submitted = mail.header("Auto-Submitted")
    if submitted is not None and submitted.split(";")[0].strip().lower() != "no":
        return f"auto-submitted: {submitted.strip()}"
    for name in _AUTO_FLAG_HEADERS:
        if mail.header(name) is not None:
            return name.lower()
    precedence = (mail.header("Precedence") or "").strip().lower()
    if precedence in _AUTO_PRECEDENCE:
        return f"precedence: {precedence}"
    if _AUTO_SUBJECT.search(mail.subject):
        return "subject"
    return None


def _form_fields(body: bytes, content_type: str) -> dict[str, bytes]:
    # multipart/form-data is MIME: the email parser reads it once given its Content-Type.
    form = BytesParser(policy=policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n" + body
    )
    if not form.is_multipart():
        raise PermanentMessageError(f"inbound post is not multipart: {content_type!r}")
    fields: dict[str, bytes] = {}
    for part in form.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and name in _FIELDS and isinstance(payload, bytes):
            fields.setdefault(name, payload)
    return fields


def _decode(raw: bytes, charset: str) -> str:
    """The field in its declared charset; UTF-8 when that charset is unknown or cannot decode
    (a name SendGrid passes on from the sender's mail may be anything)."""
    try:
        return raw.decode(charset, errors="replace")
    except (LookupError, UnicodeError, ValueError):
        return raw.decode("utf-8", errors="replace")


def _json_object(raw: bytes) -> dict:
    try:
        value = json.loads(raw.decode("utf-8", errors="replace")) if raw else {}
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _header_pairs(message: EmailMessage) -> tuple[tuple[str, str], ...]:
    pairs = []
    for name, raw in message.raw_items():
        try:
            # Decodes RFC 2047 words ("=?utf-8?q?...?=") for people reading the stored mail.
            value = str(message.policy.header_fetch_parse(name, raw))
        except Exception:
            # The stdlib header parser still trips on some malformed headers; keep them raw.
            value = str(raw)
        pairs.append((name, _unfold(value)))
    return tuple(pairs)


def _unfold(value: str) -> str:
    return re.sub(r"\r?\n[ \t]+", " ", value).strip()


def _body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    if part is None:
        return ""
    try:
        return str(part.get_content())
    except (LookupError, UnicodeError):
        raw = part.get_payload(decode=True)
        return _decode(raw, "utf-8") if isinstance(raw, bytes) else ""
