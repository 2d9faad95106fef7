"""Send budgets: which limits a send counts against, the fixed windows they count in, and
when a message deferred by a spent budget comes back. No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from dripiq_common.seeded import seeded_fraction
from dripiq_dispatcher.campaign_mail import Identity

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


def send_budgets(*, tenant_id: str, channel: str, tenant_limits: dict[str, int], identity: Identity) -> list[Budget]:
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
