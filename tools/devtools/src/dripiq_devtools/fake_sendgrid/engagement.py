"""An engagement profile: what a mix of recipients does with the mail the fake accepted.

With a profile set, every recipient of an accepted message gets a chain of what happens to it,
drawn from an RNG seeded by the profile's seed, the recipient and how many messages the fake
accepted for them before (so a run repeats: the same contact's second email gets the same fate
whatever order concurrent senders deliver mail in), and posted in SendGrid's order, each link a
delay after the previous one was taken by its receiver:

    processed -> [deferred ->] delivered | bounce -> [machine open] -> [open] -> [click]
              -> [unsubscribe] -> [reply | out-of-office auto-reply]

The rates are shares of delivered messages, drawn independently, except that a reply and an
out-of-office reply exclude each other. Nothing is more generous than SendGrid:

- a bounce ends the chain: nothing follows it;
- an open (human or `sg_machine_open: true`) only where SendGrid could track one, a click only
  on a link it rewrote (`events.build_reportable_event` decides, as for a single event);
- an unsubscribe as the message allows it: `group_unsubscribe` for a message with an ASM
  group, `unsubscribe` with subscription tracking on, else the RFC 8058 one-click POST a mailbox
  provider makes to the message's `List-Unsubscribe` URL (SendGrid sees none of that), else none;
- a reply and an auto-reply arrive as Inbound Parse posts (signed with the Parse policy's key)
  to the reply-to address, threaded with In-Reply-To; only with an `inbound_url`.

Drawn but impossible links (an open of untracked mail, ...) are counted as `withheld`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import math
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from dripiq_devtools.fake_sendgrid.events import build_event, build_reportable_event
from dripiq_devtools.fake_sendgrid.messages import AcceptedMessage
from dripiq_devtools.fake_sendgrid.outbox import MAX_EVENTS_PER_POST, MAX_RETRY_WAIT_SECONDS, is_2xx

# The environment variable `python -m dripiq_devtools.fake_sendgrid` reads a profile from (JSON).
PROFILE_ENV = "FAKE_SENDGRID_ENGAGEMENT"
TICK_SECONDS = 0.1
# Inbound Parse and one-click posts in flight at once.
MAX_INBOUND_IN_FLIGHT = 16
POST_TIMEOUT_SECONDS = 10.0

PROCESSED = "processed"
DEFERRED = "deferred"
DELIVERED = "delivered"
BOUNCE = "bounce"
MACHINE_OPEN = "machine_open"
OPEN = "open"
CLICK = "click"
UNSUBSCRIBE = "unsubscribe"
REPLY = "reply"
OUT_OF_OFFICE = "out_of_office"
KINDS = (PROCESSED, DEFERRED, DELIVERED, BOUNCE, MACHINE_OPEN, OPEN, CLICK, UNSUBSCRIBE, REPLY, OUT_OF_OFFICE)
# Posted to the Event Webhook; the others are mail or a click on the List-Unsubscribe URL.
_WEBHOOK_KINDS = frozenset({PROCESSED, DEFERRED, DELIVERED, BOUNCE, MACHINE_OPEN, OPEN, CLICK})

# Seconds after the previous link of the chain (after the send, for `processed`).
DEFAULT_DELAYS: dict[str, float] = {
    PROCESSED: 0.2,
    DEFERRED: 1.0,
    DELIVERED: 0.5,
    BOUNCE: 0.5,
    MACHINE_OPEN: 0.2,
    OPEN: 1.0,
    CLICK: 1.0,
    UNSUBSCRIBE: 1.0,
    REPLY: 1.0,
    OUT_OF_OFFICE: 1.0,
}
_RATES = ("delivered", "deferred", "open", "machine_open", "click", "reply", "out_of_office", "unsubscribe")
MAX_DELAY_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class EngagementProfile:
    """Rates (0..1) are shares of delivered messages, except `delivered` (of all; the rest
    bounce) and `deferred` (of delivered: a deferral first)."""

    webhook_url: str
    inbound_url: str | None = None
    seed: int = 1
    delivered: float = 0.97
    deferred: float = 0.0
    open: float = 0.45
    machine_open: float = 0.10
    click: float = 0.08
    reply: float = 0.03
    out_of_office: float = 0.02
    unsubscribe: float = 0.01
    # Days until the out-of-office reply says its writer is back.
    away_days: int = 7
    delays: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_DELAYS))

    @classmethod
    def from_json(cls, spec: Mapping[str, Any], *, webhook_url: str | None = None) -> EngagementProfile:
        """A profile from its JSON form; ValueError naming the field that is wrong."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(spec) - known)
        if unknown:
            raise ValueError(f"unknown field {unknown[0]!r} (known: {', '.join(sorted(known))})")
        url = spec.get("webhook_url", webhook_url)
        if not (isinstance(url, str) and url.startswith(("http://", "https://"))):
            raise ValueError("webhook_url: an http(s) URL is required (the fake has none configured)")
        inbound = spec.get("inbound_url")
        if inbound is not None and not (isinstance(inbound, str) and inbound.startswith(("http://", "https://"))):
            raise ValueError("inbound_url: an http(s) URL")
        values: dict[str, Any] = {"webhook_url": url, "inbound_url": inbound}
        for name in _RATES:
            if name in spec:
                rate = spec[name]
                if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
                    raise ValueError(f"{name}: a rate between 0 and 1")
                values[name] = float(rate)
        if "seed" in spec:
            if isinstance(spec["seed"], bool) or not isinstance(spec["seed"], int):
                raise ValueError("seed: an integer")
            values["seed"] = spec["seed"]
        if "away_days" in spec:
            days = spec["away_days"]
            if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 90:
                raise ValueError("away_days: an integer from 1 to 90")
            values["away_days"] = days
        delays = dict(DEFAULT_DELAYS)
        given = spec.get("delays", {})
        if not isinstance(given, dict):
            raise ValueError("delays: an object of seconds by kind")
        for kind, seconds in given.items():
            if kind not in DEFAULT_DELAYS:
                raise ValueError(f"delays.{kind}: unknown kind (known: {', '.join(KINDS)})")
            if (
                isinstance(seconds, bool)
                or not isinstance(seconds, int | float)
                or not 0 <= seconds <= MAX_DELAY_SECONDS
            ):
                raise ValueError(f"delays.{kind}: seconds between 0 and {MAX_DELAY_SECONDS:g}")
            delays[kind] = float(seconds)
        values["delays"] = delays
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "delays": dict(self.delays)}


def draw(profile: EngagementProfile, rng: random.Random) -> list[str]:
    """What happens to one recipient, in SendGrid's order, before checking what the message allows.

    Every draw is made whatever the earlier ones gave, so changing one rate changes only the
    outcomes that rate decides: every other outcome keeps its draw.
    """
    delivered, deferred = rng.random() < profile.delivered, rng.random() < profile.deferred
    machine, opened, clicked = (rng.random() < r for r in (profile.machine_open, profile.open, profile.click))
    answer, unsubscribed = rng.random(), rng.random() < profile.unsubscribe
    if not delivered:
        return [PROCESSED, BOUNCE]
    chain = [PROCESSED, *([DEFERRED] if deferred else []), DELIVERED]
    chain += [kind for kind, drawn in ((MACHINE_OPEN, machine), (OPEN, opened), (CLICK, clicked)) if drawn]
    if unsubscribed:
        chain.append(UNSUBSCRIBE)
    if answer < profile.reply:
        chain.append(REPLY)
    elif answer < profile.reply + profile.out_of_office:
        chain.append(OUT_OF_OFFICE)
    return chain


def one_click_url(message: AcceptedMessage) -> str | None:
    """The URL a mailbox provider POSTs to for RFC 8058 one-click unsubscribe, if the message offers it."""
    headers = {k.lower(): v for k, v in message.headers.items()}
    if headers.get("list-unsubscribe-post", "").replace(" ", "").lower() != "list-unsubscribe=one-click":
        return None
    for part in headers.get("list-unsubscribe", "").split(","):
        url = part.strip().removeprefix("<").removesuffix(">")
        if url.startswith("https://") or url.startswith("http://"):
            return url
    return None


def _unsubscribe_event(message: AcceptedMessage) -> str | None:
    """The event SendGrid itself could report for an unsubscribe, if any."""
    asm = message.payload.get("asm")
    if isinstance(asm, dict) and "group_id" in asm:
        return "group_unsubscribe"
    subscription = (message.payload.get("tracking_settings") or {}).get("subscription_tracking") or {}
    return "unsubscribe" if subscription.get("enable") is True else None


@dataclass(frozen=True, slots=True)
class Posted:
    """One link of a chain its receiver took (2xx), with the wall-clock time it did."""

    kind: str
    x_message_id: str
    email: str
    custom_args: dict[str, str]
    at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "x_message_id": self.x_message_id,
            "email": self.email,
            "custom_args": self.custom_args,
            "at": self.at,
        }


@dataclass(slots=True)
class _Chain:
    message: AcceptedMessage
    email: str
    kinds: list[str]
    next: int = 0
    failures: int = 0

    @property
    def kind(self) -> str:
        return self.kinds[self.next]

    @property
    def remaining(self) -> int:
        return len(self.kinds) - self.next


Poster = Callable[[str, list[dict[str, Any]]], Awaitable[int]]
InboundPoster = Callable[[str, dict[str, str | bytes]], Awaitable[int]]


class Engagement:
    """The chains of every accepted message under one profile, posted on a short tick.

    A webhook batch or an inbound post the receiver refuses stays due and is tried again after
    a wait that doubles up to MAX_RETRY_WAIT_SECONDS; the next link of a chain is only queued
    once the previous one was taken, so links never overtake each other.
    """

    def __init__(self, profile: EngagementProfile, *, post_events: Poster, post_inbound: InboundPoster) -> None:
        self.profile = profile
        # Messages accepted per recipient so far: the n-th to an address draws its own fate.
        self._received: Counter[str] = Counter()
        self._post_events = post_events
        self._post_inbound = post_inbound
        self._due: list[tuple[float, int, _Chain]] = []
        self._order = itertools.count()
        self._inbound_slots = asyncio.Semaphore(MAX_INBOUND_IN_FLIGHT)
        self.posted: list[Posted] = []
        # Links drawn and kept, and drawn but not possible for their message (SendGrid could not).
        self.planned: Counter[str] = Counter()
        self.withheld: Counter[str] = Counter()
        self.failed_posts = 0
        # Links of the chains being posted now: out of the queue, not yet taken.
        self._in_flight = 0

    @property
    def pending(self) -> int:
        """Links not yet taken, counting those still to follow a queued one."""
        return self._in_flight + sum(chain.remaining for _, _, chain in self._due)

    def accept(self, message: AcceptedMessage) -> None:
        now = asyncio.get_running_loop().time()
        for email in message.recipient_emails:
            address = email.lower()
            rng = random.Random(f"{self.profile.seed}|{address}|{self._received[address]}")
            self._received[address] += 1
            kinds = [kind for kind in draw(self.profile, rng) if self._possible(message, kind)]
            self.planned.update(kinds)
            chain = _Chain(message, email, kinds)
            self._queue(chain, now + self.profile.delays[PROCESSED])

    def _possible(self, message: AcceptedMessage, kind: str) -> bool:
        if kind in (OPEN, MACHINE_OPEN):
            possible = message.open_untracked_reason() is None
        elif kind == CLICK:
            possible = bool(message.tracked_links())
        elif kind == UNSUBSCRIBE:
            possible = _unsubscribe_event(message) is not None or one_click_url(message) is not None
        elif kind in (REPLY, OUT_OF_OFFICE):
            possible = self.profile.inbound_url is not None
        else:
            possible = True
        if not possible:
            self.withheld[kind] += 1
        return possible

    def _queue(self, chain: _Chain, at: float) -> None:
        heapq.heappush(self._due, (at, next(self._order), chain))

    async def flush(self) -> None:
        """Post every link due now: webhook events in batches, mail and clicks one by one."""
        now = asyncio.get_running_loop().time()
        due: list[_Chain] = []
        while self._due and self._due[0][0] <= now:
            due.append(heapq.heappop(self._due)[2])
        self._in_flight += sum(chain.remaining for chain in due)
        webhook = [chain for chain in due if self._is_webhook(chain)]
        others = [chain for chain in due if not self._is_webhook(chain)]
        posts = [
            self._post_batch(webhook[i : i + MAX_EVENTS_PER_POST]) for i in range(0, len(webhook), MAX_EVENTS_PER_POST)
        ]
        await asyncio.gather(*posts, *(self._post_one(chain) for chain in others))

    def _is_webhook(self, chain: _Chain) -> bool:
        return chain.kind in _WEBHOOK_KINDS or (
            chain.kind == UNSUBSCRIBE and _unsubscribe_event(chain.message) is not None
        )

    async def _post_batch(self, chains: list[_Chain]) -> None:
        events = [self._event(chain) for chain in chains]
        try:
            taken = is_2xx(await self._post_events(self.profile.webhook_url, events))
        except (aiohttp.ClientError, OSError, TimeoutError):
            taken = False
        for chain in chains:
            self._settle(chain, taken)

    async def _post_one(self, chain: _Chain) -> None:
        async with self._inbound_slots:
            try:
                if chain.kind == UNSUBSCRIBE:
                    status = await _one_click(one_click_url(chain.message) or "")
                else:
                    status = await self._post_inbound(self.profile.inbound_url or "", self._mail(chain))
                taken = is_2xx(status)
            except (aiohttp.ClientError, OSError, TimeoutError):
                taken = False
        self._settle(chain, taken)

    def _settle(self, chain: _Chain, taken: bool) -> None:
        now = asyncio.get_running_loop().time()
        self._in_flight -= chain.remaining
        if not taken:
            self.failed_posts += 1
            chain.failures += 1
            self._queue(chain, now + min(TICK_SECONDS * 2 ** min(chain.failures, 16), MAX_RETRY_WAIT_SECONDS))
            return
        message = chain.message
        self.posted.append(
            Posted(chain.kind, message.x_message_id, chain.email, message.custom_args_for(chain.email), time.time())
        )
        chain.failures = 0
        chain.next += 1
        if chain.next < len(chain.kinds):
            self._queue(chain, now + self.profile.delays[chain.kind])

    def _event(self, chain: _Chain) -> dict[str, Any]:
        message, kind, email = chain.message, chain.kind, chain.email
        if kind == MACHINE_OPEN:
            # SendGrid's field for an open an email security or privacy service made (Apple MPP).
            return build_reportable_event(message, OPEN, email=email, sg_machine_open=True)
        if kind == UNSUBSCRIBE:
            return build_event(message, _unsubscribe_event(message) or UNSUBSCRIBE, email=email)
        # Whether SendGrid could report it was checked when drawn; the message has not changed.
        return build_reportable_event(message, kind, email=email)

    def _mail(self, chain: _Chain) -> dict[str, str | bytes]:
        """An Inbound Parse post of the recipient's answer, threaded to the message."""
        message, email = chain.message, chain.email
        to = message.reply_to or message.from_email
        original = message.subject or ""
        thread = message.headers.get("Message-ID", "")
        if chain.kind == OUT_OF_OFFICE:
            back = (datetime.now(UTC) + timedelta(days=self.profile.away_days)).date()
            subject = f"Automatic reply: {original}"
            text = (
                f"Thank you for your email. I am out of the office and will be back on {back:%B} {back.day}, "
                f"{back.year}, with limited access to email until then."
            )
            extra = "Auto-Submitted: auto-replied\nX-Autoreply: yes\n"
        else:
            subject = f"Re: {original}"
            text = f"Thanks, this looks interesting. Could you tell me more?\n\nOn {message.received_at:%a}, {message.from_email} wrote:\n> {original}"
            extra = ""
        threading = f"In-Reply-To: {thread}\nReferences: {thread}\n" if thread else ""
        return {
            "to": to,
            "from": email,
            "subject": subject,
            "text": text,
            "envelope": json.dumps({"to": [to], "from": email}),
            "headers": f"From: {email}\nTo: {to}\nSubject: {subject}\n{threading}{extra}",
            "charsets": json.dumps({"to": "UTF-8", "text": "UTF-8", "subject": "UTF-8", "from": "UTF-8"}),
        }

    def report(self) -> dict[str, Any]:
        return {
            "profile": self.profile.to_json(),
            "planned": dict(self.planned),
            "withheld": dict(self.withheld),
            "posted": dict(Counter(p.kind for p in self.posted)),
            "pending": self.pending,
            "failed_posts": self.failed_posts,
        }


async def _one_click(url: str) -> int:
    """RFC 8058: what Gmail or Yahoo post when the recipient presses Unsubscribe."""
    timeout = aiohttp.ClientTimeout(total=POST_TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.post(
            url,
            data=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ) as response:
            await response.read()
            return response.status


def rates_of(posted: list[Posted]) -> dict[str, float]:
    """Observed shares as the profile states them, from what was posted (for tests and reports)."""
    by_kind = Counter(p.kind for p in posted)
    sent = by_kind[PROCESSED]
    delivered = by_kind[DELIVERED]
    shares = {"delivered": delivered / sent if sent else math.nan}
    for kind in (DEFERRED, OPEN, MACHINE_OPEN, CLICK, REPLY, OUT_OF_OFFICE, UNSUBSCRIBE):
        shares[kind] = by_kind[kind] / delivered if delivered else math.nan
    return shares
