"""Sending rules without I/O: what a send command must hold, what the mail looks like, how a
provider failure is judged, and which engagement makes an address unsendable."""

from __future__ import annotations

import html
import json
import re
import urllib.error
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from python_http_client.exceptions import HTTPError

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as pb
from dripiq.dispatcher.v1 import messages_pb2
from dripiq.events.v1 import messages_pb2 as events_pb2
from dripiq_common import engagement, tokens, validation, windows
from dripiq_common.errors import InvalidArgument
from dripiq_common.seeded import seeded_fraction
from dripiq_common.tokens import TokenSigner
from dripiq_dispatcher import rendering

PROVIDER = "sendgrid"
EMAIL = "email"
# Channels whose steps a person performs: the dispatcher opens a task instead of sending.
TASK_CHANNELS = frozenset({"call", "linkedin"})
# Channels with send budgets (SetRateLimit).
SUPPORTED_CHANNELS = frozenset({EMAIL})
MAX_TASK_NOTES = 4000
# SendGrid accepts at most 10 categories of at most 255 characters each.
MAX_CATEGORIES = 10
MAX_CATEGORY_LENGTH = 255
MAX_ERROR_LENGTH = 2000
# Reason of a suppression added through the API without one.
MANUAL_REASON = "manual"
MAX_CHECK_ADDRESSES = 1000


class Status(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    UNKNOWN = "unknown"
    TASK_OPEN = "task_open"
    TASK_DONE = "task_done"
    # Not sent: its campaign had stopped. Not settled: a later command (resumed) sends it.
    WITHHELD = "withheld"


# A message in one of these states is settled for the send pipeline: a redelivered command
# leaves it alone. `unknown` is settled too: only a webhook (or a person) may move it on, as
# only CompleteTask moves an open task on.
SETTLED = frozenset({Status.SENT, Status.FAILED, Status.SUPPRESSED, Status.UNKNOWN, Status.TASK_OPEN, Status.TASK_DONE})
# Where a definite answer (accepted, or refused for good) may find its row. Only a `queued`
# row starts an attempt, so an `unknown` row seen when the answer comes is this attempt's,
# parked by a redelivery that came while the call was running: the answer settles it.
IN_FLIGHT = frozenset({Status.SENDING, Status.UNKNOWN})


@dataclass(frozen=True)
class NewMessage:
    """A send command that names a tenant and a message id, so it can be recorded."""

    message_id: str
    tenant_id: str
    campaign_id: str
    step_index: int
    contact_id: str
    channel: str
    to_email: str
    to_name: str
    sender_identity_id: str
    subject: str
    body_text: str
    body_html: str
    categories: tuple[str, ...]
    postal_address: str = ""
    track_opens: bool = True
    track_clicks: bool = True
    # Our ids of the earlier emails of this thread, oldest first.
    thread_message_ids: tuple[str, ...] = ()
    # When the contact may be mailed, in their zone; None: whenever.
    window: ContactWindow | None = None


@dataclass(frozen=True)
class ContactWindow:
    window: windows.SendWindow
    time_zone: str


def contact_window(given: messages_pb2.ContactWindow) -> ContactWindow | None:
    """The command's window, or None when it gives none or one that cannot be placed in (a
    deferred send then comes back whenever, as before windows travelled)."""
    if not given.weekdays or not 0 <= given.start_hour < given.end_hour <= 24:
        return None
    if not set(given.weekdays) <= set(range(1, 8)):
        return None
    try:
        ZoneInfo(given.time_zone or "UTC")
    except (ValueError, ZoneInfoNotFoundError):
        return None
    return ContactWindow(
        windows.SendWindow(frozenset(given.weekdays), given.start_hour, given.end_hour), given.time_zone or "UTC"
    )


def in_window(message: NewMessage, due: datetime) -> datetime:
    """`due`, or the first moment after it the contact's send window allows (with the same
    spread at an opening the planner gives, fixed by the message id)."""
    if message.window is None:
        return due
    return windows.place(
        due, message.window.window, ZoneInfo(message.window.time_zone), seed=message.message_id, spread=0
    )


def new_message(command: messages_pb2.SendMessageCommand) -> NewMessage:
    """Raises InvalidArgument only for what makes the command unrecordable (tenant, id).

    Everything else is judged by `content_problem` once the row exists, so the planner hears
    of a bad command as a FAILED outcome instead of it vanishing into the dead-letter stream.
    """
    tenant = validation.tenant_id(command.tenant_id)
    try:
        # Reply tokens carry the id's 16 bytes, so it has to be a UUID.
        message_id = str(uuid.UUID(command.message_id))
    except ValueError:
        raise InvalidArgument("message_id", f"must be a UUID, got {command.message_id!r}") from None
    return NewMessage(
        message_id=message_id,
        tenant_id=tenant,
        campaign_id=command.campaign_id,
        step_index=command.step_index,
        contact_id=command.contact_id,
        channel=(command.channel or "email").lower(),
        to_email=command.to_email.strip(),
        to_name=command.to_name,
        sender_identity_id=command.sender_identity_id,
        subject=command.subject,
        body_text=command.body_text,
        body_html=command.body_html,
        categories=tuple(dict.fromkeys(command.categories)),
        postal_address=command.postal_address.strip(),
        track_opens=command.tracking.opens if command.HasField("tracking") else True,
        track_clicks=command.tracking.clicks if command.HasField("tracking") else True,
        thread_message_ids=tuple(command.thread_message_ids),
        window=contact_window(command.send_window) if command.HasField("send_window") else None,
    )


def is_task(message: NewMessage) -> bool:
    return message.channel in TASK_CHANNELS


def content_problem(message: NewMessage) -> str | None:
    """Why this message can never be sent (or its task opened) as commanded, or None."""
    if is_task(message):
        return _task_problem(message)
    if message.channel != EMAIL:
        handled = ", ".join(sorted({EMAIL, *TASK_CHANNELS}))
        return f"invalid send command: channel {message.channel!r} is not one the dispatcher handles ({handled})"
    checks = (
        lambda: validation.required(message.campaign_id, "campaign_id"),
        lambda: validation.email(message.to_email, "to_email"),
        lambda: validation.required(message.sender_identity_id, "sender_identity_id"),
        lambda: validation.required(message.subject, "subject", max_length=998),
    )
    for check in checks:
        try:
            check()
        except InvalidArgument as exc:
            return f"invalid send command: {exc}"
    if not message.body_text and not message.body_html:
        return "invalid send command: body_text or body_html is required"
    if len(message.categories) > MAX_CATEGORIES:
        return f"invalid send command: at most {MAX_CATEGORIES} categories"
    if any(not c or len(c) > MAX_CATEGORY_LENGTH for c in message.categories):
        return f"invalid send command: categories must be 1-{MAX_CATEGORY_LENGTH} characters"
    return None


def _task_problem(message: NewMessage) -> str | None:
    try:
        validation.required(message.campaign_id, "campaign_id")
        validation.email(message.to_email, "to_email")
        validation.required(message.subject or message.body_text, "subject", max_length=998)
    except InvalidArgument as exc:
        return f"invalid task command: {exc}"
    return None


def task_created(message: NewMessage, *, now: datetime) -> messages_pb2.TaskCreated:
    fact = messages_pb2.TaskCreated(
        tenant_id=message.tenant_id,
        message_id=message.message_id,
        campaign_id=message.campaign_id,
        step_index=message.step_index,
        contact_id=message.contact_id,
        channel=message.channel,
        to_email=message.to_email,
        to_name=message.to_name,
        title=message.subject,
        instructions=message.body_text,
    )
    fact.created_at.FromDatetime(now)
    return fact


# TaskOutcome as stored (engagement.TASK_ENGAGEMENT: the ones that are engagement).
TASK_OUTCOMES: dict[int, str] = {
    pb.TASK_OUTCOME_DONE: "done",
    pb.TASK_OUTCOME_NO_ANSWER: "no_answer",
    pb.TASK_OUTCOME_REPLIED: "replied",
    pb.TASK_OUTCOME_DECLINED: "declined",
    pb.TASK_OUTCOME_SKIPPED: "skipped",
}


def task_outcome(value: int) -> str:
    """The stored name of a CompleteTask outcome; INVALID_ARGUMENT for none or an unknown one."""
    if value not in TASK_OUTCOMES:
        names = ", ".join(pb.TaskOutcome.Name(v) for v in TASK_OUTCOMES)
        raise InvalidArgument("outcome", f"must be one of {names}")
    return TASK_OUTCOMES[value]


def task_engagement(row: Any, outcome_name: str, *, occurred_at: datetime) -> events_pb2.EngagementEvent | None:
    """The engagement fact a completed task stands for (a reply or an unsubscribe), or None."""
    event_type = engagement.TASK_ENGAGEMENT.get(outcome_name)
    if event_type is None:
        return None
    event = events_pb2.EngagementEvent(
        tenant_id=row.tenant_id,
        # One completion per task: the id is stable, so the fact is published once.
        event_id=engagement.task_event_id(row.message_id),
        message_id=row.message_id,
        campaign_id=row.campaign_id,
        step_index=row.step_index,
        contact_id=row.contact_id,
        event_type=event_type,
        email=row.to_email,
        reason=f"{row.channel} task: {outcome_name}",
    )
    event.occurred_at.FromDatetime(occurred_at)
    return event


@dataclass(frozen=True)
class Identity:
    id: str
    from_email: str
    from_name: str
    verified: bool
    per_minute: int = 0
    per_day: int = 0
    # Where replies to its emails are forwarded; empty: the tenant's catch-all.
    forward_to: str = ""


def sendable_identity(identity: Identity | None, sender_identity_id: str) -> Identity | str:
    """The identity when it may send, else why it may not."""
    if identity is None:
        return f"sender identity {sender_identity_id!r} does not exist for this tenant"
    if not identity.verified:
        return f"sender identity {identity.id!r} ({identity.from_email}) is not verified"
    return identity


@dataclass(frozen=True)
class MailSettings:
    reply_domain: str
    message_id_domain: str
    unsubscribe_base_url: str
    # SendGrid rewrites links in the text part too (they then look like tracking links).
    click_tracking_text: bool = False
    # CAN-SPAM: mail to the real SendGrid must carry the sender's postal address.
    require_postal_address: bool = False


def unsubscribe_url(signer: TokenSigner, settings: MailSettings, message: NewMessage) -> str:
    return settings.unsubscribe_base_url + signer.unsubscribe_token(message.tenant_id, message.message_id)


def mail_problem(message: NewMessage, settings: MailSettings) -> str | None:
    """Why this email may not go out through this dispatcher's SendGrid, or None."""
    if settings.require_postal_address and not message.postal_address and not is_task(message):
        return (
            "the tenant has no postal address, which every commercial email must carry (CAN-SPAM): "
            "set it with CampaignService/UpdateTenantSettings (postal_address)"
        )
    return None


def opens_untracked_reason(message: NewMessage | Any) -> str:
    """Why SendGrid cannot report this message's opens; empty when it can (every email has HTML)."""
    if message.channel != EMAIL:
        return f"a {message.channel} task has no opens"
    return "" if message.track_opens else "open tracking is off for this tenant"


def clicks_untracked_reason(message: NewMessage | Any) -> str:
    if message.channel != EMAIL:
        return f"a {message.channel} task has no clicks"
    return "" if message.track_clicks else "click tracking is off for this tenant"


def _address(email: str, name: str) -> dict[str, str]:
    return {"email": email, "name": name} if name else {"email": email}


def build_mail(
    message: NewMessage, identity: Identity, *, signer: TokenSigner, settings: MailSettings
) -> dict[str, Any]:
    """The Mail Send body: multipart/alternative with tracking set explicitly. Every tracking
    key rides along so webhooks find their message: custom_args for SendGrid's events (on the
    personalization, where SendGrid's published schema types them as an object), our
    Message-ID and reply-to token for replies."""
    url = unsubscribe_url(signer, settings, message)
    footer = rendering.Footer(unsubscribe_url=url, postal_address=message.postal_address)
    text = message.body_text or rendering.plain_text(message.body_html)
    body = rendering.clean_html(message.body_html) if message.body_html else rendering.html_body(message.body_text)
    headers = {
        "Message-ID": rfc_message_id(message, settings),
        "List-Unsubscribe": f"<{url}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    if message.thread_message_ids:
        thread = [tokens.rfc_message_id(m, settings.message_id_domain) for m in message.thread_message_ids]
        headers["In-Reply-To"] = thread[-1]
        headers["References"] = " ".join(thread)
    mail: dict[str, Any] = {
        "personalizations": [
            {
                "to": [_address(message.to_email, message.to_name)],
                "custom_args": {
                    "tenant_id": message.tenant_id,
                    "campaign_id": message.campaign_id,
                    "step_index": str(message.step_index),
                    "message_id": message.message_id,
                },
            }
        ],
        "from": _address(identity.from_email, identity.from_name),
        # Named like the sender, so replies look addressed to them.
        "reply_to": _address(
            tokens.reply_address(signer, message.message_id, settings.reply_domain), identity.from_name
        ),
        "subject": message.subject,
        "content": [
            {"type": "text/plain", "value": rendering.text_part(text, footer)},
            {"type": "text/html", "value": rendering.html_part(body, footer)},
        ],
        "headers": headers,
        "tracking_settings": {
            "open_tracking": {"enable": message.track_opens},
            "click_tracking": {
                "enable": message.track_clicks,
                "enable_text": message.track_clicks and settings.click_tracking_text,
            },
            # Unsubscribes are ours (List-Unsubscribe, the footer link): SendGrid adds no link of its own.
            "subscription_tracking": {"enable": False},
        },
    }
    if message.categories:
        mail["categories"] = list(message.categories)
    return mail


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


def reply_to_forward(command: messages_pb2.ForwardReplyCommand) -> Reply:
    """Raises InvalidArgument only for what makes the command unrecordable (tenant, inbound
    and message ids); everything else is judged by `reply_problem` once the row exists."""
    return Reply(
        tenant_id=validation.tenant_id(command.tenant_id),
        inbound_id=validation.required(command.inbound_id, "inbound_id"),
        message_id=validation.required(command.message_id, "message_id"),
        from_email=command.from_email.strip(),
        subject=command.subject,
        text=command.text,
        html=command.html,
        received_at=command.received_at.ToDatetime(tzinfo=UTC) if command.HasField("received_at") else None,
        reply_class=command.reply_class.strip(),
    )


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
        "from": _address(route.identity.from_email, route.identity.from_name),
        "reply_to": _address(reply.from_email, contact_name),
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


def rfc_message_id(message: NewMessage, settings: MailSettings) -> str:
    return tokens.rfc_message_id(message.message_id, settings.message_id_domain)


class FailureKind(StrEnum):
    # The request never reached SendGrid or it refused for now: safe to call again.
    RETRY = "retry"
    # SendGrid refused the request as it is: calling again gives the same answer.
    PERMANENT = "permanent"
    # The request left and no answer came back: it may have been accepted, so never call again.
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class SendFailure:
    kind: FailureKind
    reason: str
    # When the provider said to come back (429 with X-RateLimit-Reset); None: use the backoff.
    retry_at: datetime | None = None
    # The provider's HTTP status, when it answered.
    status: int | None = None


# Failures that say SendGrid is not answering (it may be down), not that it refused the message.
PASSING_FAILURES = frozenset({FailureKind.RETRY, FailureKind.UNKNOWN})


def classify_failure(exc: BaseException) -> SendFailure:
    """How a failed provider call leaves the message.

    urllib wraps errors raised while connecting and writing the request in URLError; errors
    while waiting for or reading the answer (timeouts, resets) come through unwrapped.
    python_http_client turns every HTTP error answer into its own HTTPError, which is not a
    URLError, so the order of the checks below does not hide one case behind another.
    """
    if isinstance(exc, HTTPError):
        status = int(exc.status_code)
        reason = truncate(f"{PROVIDER} {status}: {provider_reason(exc.body)}")
        transient = status in (408, 429) or status >= 500
        retry_at = rate_limit_reset(exc.headers) if status == 429 else None
        return SendFailure(FailureKind.RETRY if transient else FailureKind.PERMANENT, reason, retry_at, status)
    if isinstance(exc, urllib.error.URLError):
        return SendFailure(FailureKind.RETRY, truncate(f"{PROVIDER} unreachable: {exc.reason}"))
    return SendFailure(
        FailureKind.UNKNOWN,
        truncate(f"no answer from {PROVIDER} after the request was sent: {exc!r}"),
    )


def rate_limit_reset(headers: Any) -> datetime | None:
    """SendGrid's X-RateLimit-Reset (unix seconds) as a time, from either sender's headers."""
    found = None
    for name, value in headers.items() if headers is not None else ():
        if str(name).lower() == "x-ratelimit-reset":
            found = value
    try:
        return datetime.fromtimestamp(int(str(found).strip()), UTC) if found is not None else None
    except (ValueError, OverflowError, OSError):
        return None


def provider_reason(body: bytes | str | None) -> str:
    """SendGrid's `errors` array as one line ("field: message; ..."), or the raw body."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    try:
        errors = json.loads(text)["errors"]
        parts = [f"{e['field']}: {e['message']}" if e.get("field") else str(e["message"]) for e in errors]
    except (ValueError, KeyError, TypeError):
        return text.strip() or "no error body"
    return "; ".join(parts) or "no error message"


def truncate(text: str) -> str:
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"


def retries_left(attempt_count: int, max_attempts: int) -> bool:
    return attempt_count < max_attempts


@dataclass(frozen=True)
class RetryPolicy:
    """How a send that failed for a passing reason (5xx, 429, a connection that never opened)
    comes back: through a scheduler timer, after a backoff that doubles from `base` up to
    `cap`, until the message is `horizon` old. An outage of minutes or hours ends no campaign."""

    horizon: timedelta = timedelta(hours=6)
    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(minutes=30)

    def next_attempt(
        self, *, attempt: int, first_at: datetime, now: datetime, message_id: str, not_before: datetime | None = None
    ) -> datetime | None:
        """When attempt `attempt + 1` is made, jittered by the message id; None past the horizon.
        `not_before` is what the provider asked for (a 429's reset time)."""
        backoff = min(self.cap, self.base * 2 ** max(0, attempt - 1))
        at = max(now + backoff, not_before or now) + jitter(message_id, backoff / 4)
        return at if at - first_at <= self.horizon else None


# A provider refusal the message cannot get past: a bad request (address, content) or a sender
# SendGrid will not send for. A 401 is our account's key, not the message's.
_PERMANENT_STATUSES = frozenset({400, 403, 413})


def failure_is_permanent(failure: SendFailure) -> bool:
    """Whether a PERMANENT provider failure is the message's own (its campaign ends) rather than
    ours (a bad API key: the campaign waits for a person)."""
    return failure.kind == FailureKind.PERMANENT and failure.status in _PERMANENT_STATUSES


# SendGrid's delivery events: it posts `processed` for every message it accepts, then one of the
# others. Their times say how far SendGrid's reports have reached.
DELIVERY_EVENTS = frozenset({"processed", "delivered", "deferred", "bounce", "dropped"})


def outcome_for_row(
    row: Any,
    kind: messages_pb2.OutcomeKind,
    *,
    occurred_at: datetime,
    reason: str = "",
    provider_message_id: str = "",
    task_outcome: str = "",
) -> messages_pb2.MessageOutcome:
    """The outcome of a stored message (settled later than its send command)."""
    fact = outcome(
        row,
        kind,
        occurred_at=occurred_at,
        reason=reason,
        provider_message_id=provider_message_id,
        rfc_message_id=row.rfc_message_id or "",
    )
    fact.task_outcome = task_outcome
    return fact


def outcome(
    message: NewMessage | Any,
    kind: messages_pb2.OutcomeKind,
    *,
    occurred_at: datetime,
    reason: str = "",
    provider_message_id: str = "",
    rfc_message_id: str = "",
    permanent: bool = False,
) -> messages_pb2.MessageOutcome:
    fact = messages_pb2.MessageOutcome(
        permanent=permanent,
        tenant_id=message.tenant_id,
        message_id=message.message_id,
        campaign_id=message.campaign_id,
        step_index=message.step_index,
        contact_id=message.contact_id,
        channel=message.channel,
        kind=kind,
        provider=PROVIDER if kind == messages_pb2.OUTCOME_KIND_SENT and message.channel == EMAIL else "",
        provider_message_id=provider_message_id,
        rfc_message_id=rfc_message_id,
        reason=reason,
        to_email=message.to_email,
        subject=message.subject,
    )
    if kind == messages_pb2.OUTCOME_KIND_SENT:
        fact.opens_untracked_reason = opens_untracked_reason(message)
        fact.clicks_untracked_reason = clicks_untracked_reason(message)
    fact.occurred_at.FromDatetime(occurred_at)
    return fact


# Engagement that means "never mail this address again" for the tenant.
SUPPRESSING_EVENTS = frozenset({"unsubscribe", "group_unsubscribe", "spamreport", "bounce"})
# Engagement that takes back an earlier one: a contact who resubscribes to the SendGrid
# unsubscribe group lifts the suppression its group unsubscribe made (no other).
LIFTING_EVENTS = {"group_resubscribe": "group_unsubscribe"}
# A person's reply that asks, in words, to be taken off the list ("please remove me"): the
# events service classifies it and the address is suppressed as for a link unsubscribe.
UNSUBSCRIBE_REPLY_CLASS = "unsubscribe_request"


def suppression_reason(event_type: str, bounce_type: str, reply_class: str = "") -> str | None:
    """The suppression reason an engagement event calls for, or None.

    The events service puts SendGrid's bounce `type` in `reason`: a `blocked` bounce is a
    receiving server refusing for now (reputation, content), not a dead address. A reply
    classified as an unsubscribe request suppresses with reason `unsubscribe_request`.
    """
    if event_type == "reply" and reply_class == UNSUBSCRIBE_REPLY_CLASS:
        return UNSUBSCRIBE_REPLY_CLASS
    if event_type not in SUPPRESSING_EVENTS:
        return None
    if event_type == "bounce" and bounce_type != "bounce":
        return None
    return event_type


def normalize_address(address: str) -> str:
    return address.strip().lower()


def optional_address(value: str, field: str) -> str:
    """A mailbox to forward replies to (kept as written, less outer spaces), or empty for none;
    INVALID_ARGUMENT naming the field for anything else."""
    address = value.strip()
    return validation.email(address, field) if address else ""


_STATUS = {
    Status.QUEUED: pb.MESSAGE_STATUS_QUEUED,
    Status.SENDING: pb.MESSAGE_STATUS_SENDING,
    Status.SENT: pb.MESSAGE_STATUS_SENT,
    Status.FAILED: pb.MESSAGE_STATUS_FAILED,
    Status.SUPPRESSED: pb.MESSAGE_STATUS_SUPPRESSED,
    Status.UNKNOWN: pb.MESSAGE_STATUS_UNKNOWN,
    Status.TASK_OPEN: pb.MESSAGE_STATUS_TASK_OPEN,
    Status.TASK_DONE: pb.MESSAGE_STATUS_TASK_DONE,
    Status.WITHHELD: pb.MESSAGE_STATUS_WITHHELD,
}
# Stored outcome -> the enum value's name, which the message constructor takes as the value.
_TASK_OUTCOME_NAMES = {name: pb.TaskOutcome.Name(value) for value, name in TASK_OUTCOMES.items()}


def status_from_proto(value: int) -> Status:
    """The status a List filter names; INVALID_ARGUMENT for a value this version does not know."""
    for status, proto in _STATUS.items():
        if proto == value:
            return status
    raise InvalidArgument("status", f"unknown message status {value}")


def message_to_proto(row: Any) -> pb.Message:
    message = pb.Message(
        message_id=row.message_id,
        tenant_id=row.tenant_id,
        campaign_id=row.campaign_id,
        step_index=row.step_index,
        contact_id=row.contact_id,
        channel=row.channel,
        status=_STATUS[Status(row.status)],
        to_email=row.to_email,
        from_email=row.from_email or "",
        subject=row.subject,
        provider=row.provider or "",
        provider_message_id=row.provider_message_id or "",
        attempt_count=row.attempt_count,
        last_error=row.last_error or "",
        task_outcome=_TASK_OUTCOME_NAMES.get(row.task_outcome or "", "TASK_OUTCOME_UNSPECIFIED"),
        task_notes=row.task_notes or "",
    )
    message.created_at.FromDatetime(row.created_at)
    if row.sent_at is not None:
        message.sent_at.FromDatetime(row.sent_at)
    return message


def identity_to_proto(row: Any) -> pb.SenderIdentity:
    identity = pb.SenderIdentity(
        sender_identity_id=row.id,
        tenant_id=row.tenant_id,
        from_email=row.from_email,
        from_name=row.from_name,
        verified=row.verified,
        provider_config_id=row.provider_config_id,
        per_minute=row.per_minute,
        per_day=row.per_day,
        forward_to=row.forward_to,
    )
    identity.created_at.FromDatetime(row.created_at)
    return identity


def suppression_to_proto(row: Any, address: str | None = None) -> pb.Suppression:
    suppression = pb.Suppression(tenant_id=row.tenant_id, address=address or row.address, reason=row.reason)
    suppression.created_at.FromDatetime(row.created_at)
    return suppression


# Fixed windows a budget counts in, by name.
WINDOWS: dict[str, timedelta] = {
    "minute": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
}
# A deferred message returns after its window ends plus up to this share of the window
# (at most MAX_DEFER_JITTER), spread by message id so a deferred burst does not return at once.
DEFER_JITTER_SHARE = 0.1
MAX_DEFER_JITTER = timedelta(minutes=1)
# Counters are kept this long after their window started: past the longest window, so no
# admission can still be counting in them.
COUNTER_RETENTION = timedelta(days=2)


@dataclass(frozen=True)
class Budget:
    """One window's limit on one scope."""

    scope: str
    window: str
    limit: int


def tenant_scope(tenant_id: str, channel: str) -> str:
    return f"tenant:{tenant_id}:{channel}"


def identity_scope(identity_id: str) -> str:
    return f"identity:{identity_id}"


def budgets(*, tenant_id: str, channel: str, tenant_limits: dict[str, int], identity: Identity) -> list[Budget]:
    """The budgets a send must fit in (a limit of 0 is none), longest windows first, so a
    deferral waits for the window that is really the bottleneck."""
    found = [Budget(tenant_scope(tenant_id, channel), w, n) for w, n in tenant_limits.items() if n > 0]
    found += [
        Budget(identity_scope(identity.id), w, n)
        for w, n in (("minute", identity.per_minute), ("day", identity.per_day))
        if n > 0
    ]
    return sorted(found, key=lambda b: WINDOWS[b.window], reverse=True)


def window_start(window: str, now: datetime) -> datetime:
    if window == "minute":
        return now.replace(second=0, microsecond=0)
    if window == "hour":
        return now.replace(minute=0, second=0, microsecond=0)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def window_end(window: str, now: datetime) -> datetime:
    return window_start(window, now) + WINDOWS[window]


def defer_until(window: str, now: datetime, message_id: str) -> datetime:
    """When a message deferred by a full window comes back: the window's end plus a jitter
    fixed by the message id."""
    return window_end(window, now) + jitter(message_id, min(WINDOWS[window] * DEFER_JITTER_SHARE, MAX_DEFER_JITTER))


def jitter(message_id: str, span: timedelta) -> timedelta:
    """A share of `span` fixed by the message id, so a deferred burst does not return at once."""
    return timedelta(milliseconds=int(span.total_seconds() * 1000 * seeded_fraction(message_id)))
