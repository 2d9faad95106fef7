"""A reply to forward to the person behind a sender identity: where it goes, and the Mail
Send body that carries it. No I/O (forwarding.py does the sending)."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from dripiq_common import validation
from dripiq_common.errors import InvalidArgument
from dripiq_dispatcher import rendering
from dripiq_dispatcher.campaign_mail import Identity, address
from dripiq_dispatcher.domain import normalize_address


class ForwardStatus(StrEnum):
    # Not attempted yet, or waiting for JetStream to redeliver it after a transient failure.
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    # A call may have gone out (a redelivery found `sending`, or no answer came): never repeated.
    UNKNOWN = "unknown"
    # Nowhere to forward it (no forward_to, no catch-all, no usable identity): nothing was sent.
    UNROUTABLE = "unroutable"


# A forward in one of these states is done: a redelivered command leaves it alone. Nothing
# settles an `unknown` forward later (its SendGrid events carry no message_id, so they reach
# no one): it stays for a person to look at, as an `unknown` send does after its deadline.
FORWARD_SETTLED = frozenset({ForwardStatus.SENT, ForwardStatus.FAILED, ForwardStatus.UNKNOWN, ForwardStatus.UNROUTABLE})


# Where a definite answer to a forward's call may find its row (see IN_FLIGHT).
FORWARD_IN_FLIGHT = frozenset({ForwardStatus.SENDING, ForwardStatus.UNKNOWN})


# custom_args `kind` and category of a forwarded reply: no campaign_id or message_id rides
# along, so the events service never takes its events for a campaign step's.
FORWARD_KIND = "reply_forward"


FORWARD_CATEGORY = "reply-forward"


MAX_SUBJECT_LENGTH = 998


_FORWARDED_ALREADY = re.compile(r"^(?:fwd?|fw)\s*:", re.IGNORECASE)


_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Reply:
    """A person's reply the events service stored, to be forwarded once."""

    tenant_id: str
    inbound_id: str
    message_id: str
    from_email: str
    subject: str
    text: str
    html: str
    received_at: datetime | None
    reply_class: str


def reply_problem(reply: Reply) -> str | None:
    """Why this reply can never be forwarded as commanded, or None."""
    try:
        validation.email(reply.from_email, "from_email")
    except InvalidArgument as exc:
        return f"invalid forward command: {exc}"
    return None


@dataclass(frozen=True)
class AnsweredMessage:
    """Our email a reply answers, as the forward describes it."""

    message_id: str
    campaign_id: str
    step_index: int
    subject: str
    to_email: str
    to_name: str
    sender_identity_id: str


@dataclass(frozen=True)
class ForwardRoute:
    """Who the forward comes from (the answered identity, verified) and where it goes."""

    identity: Identity
    to_email: str


def forward_route(
    *, message_id: str, message: AnsweredMessage | None, identity: Identity | None, catch_all: str
) -> ForwardRoute | str:
    """The identity's forward_to, else the tenant's catch-all; or why there is nowhere to go.
    The message and the identity are the command tenant's own (another tenant's are None)."""
    if message is None:
        return f"message {message_id!r} does not exist for this tenant"
    if identity is None:
        return (
            f"sender identity {message.sender_identity_id!r} of message {message_id!r} does not exist "
            "for this tenant: there is no verified address to forward from"
        )
    if not identity.verified:
        return f"sender identity {identity.id!r} ({identity.from_email}) is not verified"
    to_email = identity.forward_to or catch_all
    if not to_email:
        return (
            f"sender identity {identity.id!r} ({identity.from_email}) has no forward_to and the tenant "
            "has no catch-all (DispatcherService/SetReplyForwarding)"
        )
    return ForwardRoute(identity, to_email)


def forward_subject(subject: str) -> str:
    """`Fwd: <subject>` on one line, never `Fwd: Fwd: ...`, within SendGrid's subject length."""
    line = _WHITESPACE.sub(" ", subject).strip() or "(no subject)"
    forwarded = line if _FORWARDED_ALREADY.match(line) else f"Fwd: {line}"
    return forwarded[:MAX_SUBJECT_LENGTH]


def forward_summary(reply: Reply, message: AnsweredMessage) -> tuple[str, str]:
    """The header block's two lines: what the reply is, and how to answer it."""
    contact = reply.from_email
    if message.to_name and normalize_address(reply.from_email) == normalize_address(message.to_email):
        contact = f"{message.to_name} <{reply.from_email}>"
    step = f'step {message.step_index} of campaign {message.campaign_id} ("{_WHITESPACE.sub(" ", message.subject)}")'
    parts = [f"Reply from {contact} to {step}"]
    parts.append(f"classified {reply.reply_class}" if reply.reply_class else "not classified")
    if reply.received_at is not None:
        parts.append(f"received {reply.received_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC")
    return ", ".join(parts) + ".", f"Answer this email to write to {reply.from_email} directly."


def build_forward(reply: Reply, message: AnsweredMessage, route: ForwardRoute) -> dict[str, Any]:
    """The Mail Send body of a reply forwarded to the person behind the identity: from the
    identity (verified), to its forward_to or the catch-all, Reply-To the contact. It is our
    own mail to our own user, so nothing is tracked and it has no unsubscribe footer."""
    summary, how_to_answer = forward_summary(reply, message)
    text = reply.text or rendering.plain_text(reply.html)
    quoted_text = rendering.quote_text(text) if text.strip() else "> (the reply has no text)"
    cleaned = rendering.clean_html(reply.html).strip() if reply.html.strip() else ""
    quoted_html = cleaned or rendering.text_as_html(text) or "(the reply has no text)"
    header_html = f"<p>{html.escape(summary)}<br>{html.escape(how_to_answer)}</p>"
    contact_name = message.to_name if normalize_address(reply.from_email) == normalize_address(message.to_email) else ""
    return {
        "personalizations": [
            {
                "to": [{"email": route.to_email}],
                "custom_args": {"tenant_id": reply.tenant_id, "inbound_id": reply.inbound_id, "kind": FORWARD_KIND},
            }
        ],
        "from": address(route.identity.from_email, route.identity.from_name),
        "reply_to": address(reply.from_email, contact_name),
        "subject": forward_subject(reply.subject),
        "content": [
            {"type": "text/plain", "value": f"{summary}\n{how_to_answer}\n\n{quoted_text}\n"},
            {"type": "text/html", "value": rendering.document(f"{header_html}<blockquote>{quoted_html}</blockquote>")},
        ],
        "headers": {
            # RFC 3834: mail a machine forwarded. Mailboxes do not answer it with an
            # autoreply, and our own Inbound Parse treats it as automatic if it comes back.
            "Auto-Submitted": "auto-forwarded",
            # Exchange and Outlook honour this instead (no out-of-office answers to it).
            "X-Auto-Response-Suppress": "All",
        },
        "categories": [FORWARD_CATEGORY],
        "tracking_settings": {
            "open_tracking": {"enable": False},
            "click_tracking": {"enable": False, "enable_text": False},
            "subscription_tracking": {"enable": False},
        },
    }
