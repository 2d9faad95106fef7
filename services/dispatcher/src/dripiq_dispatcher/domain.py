"""A message to send, without I/O: what a send command must hold, the statuses its row moves
through, and the contact's send window it must land in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as pb
from dripiq_common import calendars, validation, windows
from dripiq_common.errors import InvalidArgument

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
    # The campaign's holiday calendars ("US-CA"): local days a deferred send skips.
    holiday_calendars: tuple[str, ...] = ()
    # What the message is counted under in the tenant's analytics.
    product_id: str = ""
    strategist: str = ""
    variant: str = ""


@dataclass(frozen=True)
class ContactWindow:
    window: windows.SendWindow
    time_zone: str


def in_window(message: NewMessage, due: datetime) -> datetime:
    """`due`, or the first moment after it the contact's send window allows on a local day
    none of the campaign's holiday calendars closes (with the same spread at an opening the
    planner gives, fixed by the message id)."""
    if message.window is None:
        return due
    return windows.place(
        due,
        message.window.window,
        ZoneInfo(message.window.time_zone),
        seed=message.message_id,
        spread=0,
        closed=calendars.closed_days(message.holiday_calendars),
    )


def is_task(message: NewMessage) -> bool:
    return message.channel in TASK_CHANNELS


# What a message is counted under in the tenant's analytics: part of the rollups' keys, so
# bounded like an id.
ANALYTICS_FIELDS = ("product_id", "strategist", "variant")
MAX_ANALYTICS_VALUE = 255


def content_problem(message: NewMessage) -> str | None:
    """Why this message can never be sent (or its task opened) as commanded, or None."""
    for name in ANALYTICS_FIELDS:
        if len(getattr(message, name)) > MAX_ANALYTICS_VALUE:
            return f"invalid send command: {name} must be at most {MAX_ANALYTICS_VALUE} characters"
    if len(message.holiday_calendars) > calendars.MAX_CALENDARS:
        return f"invalid send command: at most {calendars.MAX_CALENDARS} holiday_calendars"
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


# TaskOutcome as stored (engagement.TASK_ENGAGEMENT: the ones that are engagement).
TASK_OUTCOMES: dict[int, str] = {
    pb.TASK_OUTCOME_DONE: "done",
    pb.TASK_OUTCOME_NO_ANSWER: "no_answer",
    pb.TASK_OUTCOME_REPLIED: "replied",
    pb.TASK_OUTCOME_DECLINED: "declined",
    pb.TASK_OUTCOME_SKIPPED: "skipped",
}


def normalize_address(address: str) -> str:
    return address.strip().lower()


def optional_address(value: str, field: str) -> str:
    """A mailbox to forward replies to (kept as written, less outer spaces), or empty for none;
    INVALID_ARGUMENT naming the field for anything else."""
    address = value.strip()
    return validation.email(address, field) if address else ""
