"""How a failed provider call is judged (call again, never, or cannot know), and when a send
that failed for a passing reason comes back. No I/O."""

from __future__ import annotations

import json
import urllib.error
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from python_http_client.exceptions import HTTPError

from dripiq_dispatcher.budgets import jitter
from dripiq_dispatcher.domain import PROVIDER


class RetryLater(Exception):
    """A transient provider failure: the worker naks and JetStream redelivers after its backoff."""


# Longest provider error kept on a message row.
MAX_ERROR_LENGTH = 2000


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


# SendGrid's Mail Send 403 when the From is not (or no longer) a verified Sender Identity of
# the account: "The from address does not match a verified Sender Identity. Mail cannot be sent
# until this error is resolved. ..." (field "from").
SENDER_NOT_VERIFIED = "does not match a verified Sender Identity"


def sender_not_verified(failure: SendFailure) -> bool:
    """Whether SendGrid refused the From itself: the identity lapsed (its domain authentication
    or single sender went), which no message of it gets past until a person fixes it."""
    return failure.status == 403 and SENDER_NOT_VERIFIED in failure.reason


def failure_is_permanent(failure: SendFailure) -> bool:
    """Whether a PERMANENT provider failure is the message's own (its campaign ends) rather than
    ours (a bad API key, a sender identity that lapsed at SendGrid: the campaign waits for a
    person)."""
    return (
        failure.kind == FailureKind.PERMANENT
        and failure.status in _PERMANENT_STATUSES
        and not sender_not_verified(failure)
    )
