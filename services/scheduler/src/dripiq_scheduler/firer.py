"""Fires due timers onto JetStream.

Each round locks a batch of due rows (SKIP LOCKED, so replicas share the work), publishes
them without waiting for each ack, waits for all acks, then marks the acked ones fired in the
same transaction. A cancel that commits first wins: it changed the row before we locked it.
A crash after publishing but before commit re-publishes the same `Nats-Msg-Id`, which
JetStream drops inside its duplicate window. A publish that gets no PubAck (NATS down, slow)
leaves its row active for a later round, never fired.

A timer that can never be published (a row from an older version or written by hand with a
bad tenant, subject, key or payload; a message JetStream refuses for good) must not hold the
others back: the firer takes the oldest due rows first, so one such row would fail every round.
It becomes a dead letter of consumer `scheduler-firer` with its reason, and its row is
canceled with that reason, in the same round that fires the rest.

Rows due for longer than the overdue limit go through the overdue policy first (see
domain.OverduePolicy): fired anyway, dropped (canceled with a reason) or delayed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from nats.errors import BadSubjectError, MaxPayloadError
from nats.js import JetStreamContext
from nats.js.errors import APIError
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq_common.bus.client import Outgoing
from dripiq_common.bus.contract import DEAD_LETTER_PREFIX, ERROR_HEADER, ORIGINAL_SUBJECT_HEADER, header_text
from dripiq_common.clock import Clock
from dripiq_common.loops import Poller
from dripiq_common.redaction import one_line
from dripiq_scheduler import domain, metrics, repository
from dripiq_scheduler.acks import AckedPublisher, Answer

log = structlog.get_logger(__name__)

DEAD_LETTER_CONSUMER = "scheduler-firer"
# The dead-letter convention's dripiq.dlq.<stream>.<consumer>, with the timers table standing
# in for a stream: `python -m dripiq_common.deadletters list --consumer scheduler-firer`.
DEAD_LETTER_SUBJECT = f"{DEAD_LETTER_PREFIX}.TIMERS.{DEAD_LETTER_CONSUMER}"
# PubAck errors that no retry changes: JSStreamMessageExceedsMaximumErr (the stream's
# max_msg_size). No responders is not among them: it is also what JetStream answers while it
# starts, and every target's stream is checked to take its subject before publishing.
MESSAGE_TOO_LARGE = 10054
PERMANENT_ACK_ERRORS = frozenset({MESSAGE_TOO_LARGE})


@dataclass
class Firer:
    engine: AsyncEngine
    js: JetStreamContext
    clock: Clock
    batch_size: int = 1000
    poll_seconds: float = 0.2
    publish_timeout: float = 10.0
    overdue: domain.Overdue = field(default_factory=domain.Overdue)
    # Rounds in flight at once, each its own transaction taking other rows (SKIP LOCKED), as
    # replicas do: while one round waits for PostgreSQL or its PubAcks, another uses the CPU.
    rounds_in_flight: int = 1

    def __post_init__(self) -> None:
        # The JetStream context's own connection: PubAcks come back on it.
        self._acks = AckedPublisher(self.js._nc, self.publish_timeout)
        self._pollers = [
            Poller(self.fire_once, full=self.batch_size, poll_seconds=self.poll_seconds, name="firer")
            for _ in range(max(1, self.rounds_in_flight))
        ]

    def wake(self) -> None:
        for poller in self._pollers:
            poller.wake()

    def stop(self) -> None:
        for poller in self._pollers:
            poller.stop()

    async def run(self) -> None:
        await asyncio.gather(*(poller.run() for poller in self._pollers))

    async def fire_once(self) -> int:
        """One round; returns how many due timers it settled (fired, dead-lettered, dropped or
        delayed)."""
        now = self.clock.now()
        async with self.engine.begin() as conn:
            due = await repository.lock_due(conn, now=now, limit=self.batch_size)
            if not due:
                return 0
            plan = domain.sort_due(due, now=now, overdue=self.overdue)
            await repository.cancel_overdue(
                conn, ids=[row.id for row in plan.drop], reason=self.overdue.drop_reason(), now=now
            )
            await repository.reschedule_overdue(conn, moves=[(row.id, at) for row, at in plan.delay], now=now)
            doomed: list[tuple[Row[Any], str]] = []
            fireable: list[Row[Any]] = []
            for row in plan.fire:
                if reason := domain.unfireable(row):
                    doomed.append((row, reason))
                else:
                    fireable.append(row)
            try:
                answers = await self._publish([_outgoing(row) for row in fireable])
            except Exception:
                # Nothing of this round commits; every row stays as it was for the next one.
                metrics.PUBLISH_FAILURES.inc(len(plan.fire))
                raise
            published_at = self.clock.now()
            fired = [row for row, answer in zip(fireable, answers, strict=True) if answer is None]
            refused = [
                (row, f"JetStream refused it for good: {answer}")
                for row, answer in zip(fireable, answers, strict=True)
                if _permanent(answer)
            ]
            dead = await self._dead_letter(doomed, refused)
            await repository.mark_fired(conn, ids=[row.id for row in fired], now=published_at)
            await repository.cancel_unfireable(
                conn, reasons=[(row.id, reason) for row, reason in dead], now=published_at
            )
        self._record(plan, fired, dead, published_at)
        return len(fired) + len(dead) + len(plan.drop) + len(plan.delay)

    async def _publish(self, items: Sequence[Outgoing]) -> list[Answer]:
        """Publish without waiting for each ack in turn, then wait for all: None where acked,
        else the error (a TimeoutError where no ack came in time)."""
        return await self._acks.publish(items)

    async def _dead_letter(
        self, doomed: Sequence[tuple[Row[Any], str]], refused: Sequence[tuple[Row[Any], str]]
    ) -> list[tuple[Row[Any], str]]:
        """Dead letters for timers that can never go out; returns those JetStream holds now.
        The others stay active and are tried again next round, as a timer without PubAck is.
        A refused timer's dead letter names its subject, so it can be replayed once the
        refusal is fixed; a doomed one's does not, since publishing it as it is would be wrong."""
        letters = [(row, reason, "") for row, reason in doomed] + [
            (row, reason, row.target_subject) for row, reason in refused
        ]
        if not letters:
            return []
        answers = await self._publish([_letter(row, reason, subject) for row, reason, subject in letters])
        # A payload the bus refused as too large is too large for a dead letter too: the letter
        # goes without it (and so cannot be replayed), rather than the timer retrying for ever.
        too_large = [i for i, answer in enumerate(answers) if _size_refusal(answer)]
        if too_large:
            retried = await self._publish([_letter(*letters[i], keep_payload=False) for i in too_large])
            for i, answer in zip(too_large, retried, strict=True):
                answers[i] = answer
        held: list[tuple[Row[Any], str]] = []
        for (row, reason, _), answer in zip(letters, answers, strict=True):
            if answer is None:
                held.append((row, reason))
                log.error(
                    "firer.dead_lettered",
                    timer_id=row.id,
                    tenant_id=header_text(row.tenant_id),
                    key=header_text(row.key),
                    reason=reason,
                    dlq=DEAD_LETTER_SUBJECT,
                )
            else:
                log.warning("firer.dead_letter_failed", timer_id=row.id, error=repr(answer))
        return held

    def _record(
        self,
        plan: domain.Round[Row[Any]],
        fired: Sequence[Row[Any]],
        dead: Sequence[tuple[Row[Any], str]],
        published_at: datetime,
    ) -> None:
        """Metrics and logs, once the round has committed."""
        failed = len(plan.fire) - len(fired) - len(dead)
        metrics.TIMERS_FIRED.inc(len(fired))
        metrics.TIMERS_DEAD_LETTERED.inc(len(dead))
        for row in fired:
            metrics.FIRE_LATENESS.observe(max(0.0, (published_at - row.scheduled_for).total_seconds()))
        if failed:
            metrics.PUBLISH_FAILURES.inc(failed)
            log.warning("firer.publish_failed", failed=failed, fired=len(fired))
        if plan.drop:
            metrics.TIMERS_DROPPED.inc(len(plan.drop))
            log.warning("firer.overdue_dropped", count=len(plan.drop), overdue_limit_seconds=self.overdue.limit_seconds)
        if plan.delay:
            metrics.TIMERS_DELAYED.inc(len(plan.delay))
            log.warning(
                "firer.overdue_delayed",
                count=len(plan.delay),
                overdue_limit_seconds=self.overdue.limit_seconds,
                spread_seconds=self.overdue.spread_seconds,
            )
        if plan.late:
            log.warning("firer.overdue_fired", count=plan.late, overdue_limit_seconds=self.overdue.limit_seconds)
        log.debug("firer.fired", count=len(fired))


def _headers(row: Row[Any]) -> dict[str, str]:
    return {
        "Dripiq-Timer-Key": row.key,
        "Dripiq-Timer-Kind": row.kind,
        "Dripiq-Timer-Version": str(row.version),
        "Dripiq-Fire-At": row.scheduled_for.isoformat(),
    }


def _outgoing(row: Row[Any]) -> Outgoing:
    """A checked row (domain.unfireable): its subject, key and kind are safe on the wire."""
    return Outgoing(
        row.target_subject, row.payload, domain.dedupe_id(row.tenant_id, row.key, row.version), _headers(row)
    )


def _letter(row: Row[Any], reason: str, subject: str, *, keep_payload: bool = True) -> Outgoing:
    """A dead letter for a timer row, every value escaped: the row may hold anything. Without
    its payload it names no subject to replay onto, and says how large the payload was."""
    if not keep_payload:
        reason = f"{reason} (the {len(row.payload)}-byte payload is not kept: the bus refuses it)"
    headers = {name: header_text(value) for name, value in _headers(row).items()}
    headers |= {
        "Dripiq-Timer-Tenant": header_text(row.tenant_id),
        ERROR_HEADER: header_text(one_line(reason))[:1000],
    }
    if subject and keep_payload:
        headers[ORIGINAL_SUBJECT_HEADER] = subject
    payload = row.payload if keep_payload else b""
    return Outgoing(DEAD_LETTER_SUBJECT, payload, f"timer-dead:{row.id}:{row.version}", headers)


def _size_refusal(answer: Answer) -> bool:
    return isinstance(answer, MaxPayloadError) or (
        isinstance(answer, APIError) and answer.err_code == MESSAGE_TOO_LARGE
    )


def _permanent(answer: Answer) -> bool:
    if isinstance(answer, BadSubjectError | MaxPayloadError):
        return True
    return isinstance(answer, APIError) and answer.err_code in PERMANENT_ACK_ERRORS
