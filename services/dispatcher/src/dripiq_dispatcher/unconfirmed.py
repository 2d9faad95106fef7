"""Sends whose call may have gone out (`unknown`, or `sending` left by a process that died):
settled by SendGrid's own events, sent again once its reports pass them without one, or failed
for review past the deadline (docs/decisions/0028)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.dispatcher.v1 import messages_pb2
from dripiq.events.v1 import messages_pb2 as events_pb2
from dripiq_common import engagement, validation
from dripiq_common.bus.contract import Subjects
from dripiq_common.clock import Clock
from dripiq_common.outbox import OutboxMessage, enqueue
from dripiq_dispatcher import domain, metrics, outcomes, repository
from dripiq_dispatcher.domain import Status
from dripiq_dispatcher.models import outbox
from dripiq_dispatcher.outcomes import enqueue_outcome

log = structlog.get_logger(__name__)


@dataclass
class UnconfirmedSends:
    engine: AsyncEngine
    clock: Clock
    # Wakes the outbox relay after a commit that wrote outcomes, instead of waiting its poll.
    on_outbox: Callable[[], None] = field(default=lambda: None)

    async def settle_unknown(self, data: bytes) -> None:
        await self.settle_unknown_events(engagement.read(data))

    async def settle_unknown_events(self, events: Sequence[events_pb2.EngagementEvent]) -> int:
        """EngagementEvent facts: any event for a message proves the provider took it: a send
        whose call may have gone out (`unknown`, or `sending` left by a process that died
        mid-call) becomes `sent`, and the planner hears so. One statement finds the batch's
        such messages (nearly always none). Delivery events also move the watermark that lets
        `resolve_unknown` resend what SendGrid never got."""
        wanted = {(e.tenant_id, e.message_id): e for e in events if e.message_id and validation.is_tenant(e.tenant_id)}
        reported = [
            e.occurred_at.ToDatetime(tzinfo=UTC)
            for e in events
            if e.event_type in outcomes.DELIVERY_EVENTS and e.HasField("occurred_at")
        ]
        if not wanted:
            return 0
        now = self.clock.now()
        async with self.engine.begin() as conn:
            if reported:
                # How far SendGrid's reports have reached: unconfirmed sends older than this by
                # a margin never reached it (resolve_unknown).
                await repository.messages.advance_watermark(conn, newest_event_at=min(max(reported), now))
            rows = await repository.messages.lock_unknown(conn, message_ids={m for _, m in wanted})
            settled = [row for row in rows if (row.tenant_id, row.message_id) in wanted]
            for row in settled:
                event = wanted[(row.tenant_id, row.message_id)]
                sent_at = event.occurred_at.ToDatetime(tzinfo=UTC) if event.HasField("occurred_at") else now
                provider_message_id = event.provider_message_id or row.provider_message_id or ""
                await repository.messages.set_status(
                    conn,
                    message_id=row.message_id,
                    expected=[Status.UNKNOWN, Status.SENDING],
                    status=Status.SENT,
                    now=now,
                    provider=domain.PROVIDER,
                    provider_message_id=provider_message_id or None,
                    sent_at=sent_at,
                    last_error=None,
                    unconfirmed_command=None,
                )
                fact = outcomes.outcome_for_row(
                    row, messages_pb2.OUTCOME_KIND_SENT, occurred_at=sent_at, provider_message_id=provider_message_id
                )
                await enqueue_outcome(conn, fact)
                log.info("send.unknown_settled_by_event", message_id=row.message_id, event_type=event.event_type)
        if settled:
            self.on_outbox()
        return len(settled)

    async def resolve_unknown(self, *, resend_after: timedelta, deadline: timedelta, limit: int = 1000) -> int:
        """Settle `unknown` sends no provider event has settled yet (how many moved).

        SendGrid posts `processed` for every message it accepts. Once its delivery events for
        messages it handled `resend_after` past the moment ours went unknown have reached us,
        and none for ours, ours never reached it: it is sent again, as it was (the same message
        id and command, through the send stream, so a stopped campaign withholds it). While
        SendGrid's reports lag that far (the edge down, events behind), nothing is resent; past
        `deadline` the send fails for a person to review (its campaign waits, it does not end).
        """
        now = self.clock.now()
        resent: list[Any] = []
        failed: list[Any] = []
        async with self.engine.begin() as conn:
            rows = await repository.messages.lock_unconfirmed(conn, older_than=now - resend_after, limit=limit)
            if not rows:
                return 0
            reported_until = await repository.messages.watermark(conn)
            for row in rows:
                resendable = row.unconfirmed_command is not None
                if resendable and reported_until is not None and reported_until >= row.updated_at + resend_after:
                    resent.append(row)
                elif now - row.updated_at >= deadline:
                    failed.append(row)
            resend_reason = (
                f"sent again: no provider event for it, while SendGrid reported messages it handled "
                f"{resend_after} after it"
            )
            await repository.messages.update_messages(
                conn,
                changes=[
                    (
                        r.message_id,
                        {"status": Status.QUEUED.value, "last_error": resend_reason, "unconfirmed_command": None},
                    )
                    for r in resent
                ],
            )
            # The command as the planner sent it, byte for byte.
            await enqueue(
                conn,
                outbox,
                [
                    OutboxMessage(
                        Subjects.dispatcher_send(r.tenant_id),
                        messages_pb2.SendMessageCommand.FromString(r.unconfirmed_command),
                    )
                    for r in resent
                ],
            )
            fail_reason = (
                f"no provider event proved this send within {deadline} while SendGrid's reports lagged; "
                "review before resending (RetryStep sends it again)"
            )
            await repository.messages.update_messages(
                conn,
                changes=[
                    (
                        r.message_id,
                        {"status": Status.FAILED.value, "last_error": fail_reason, "unconfirmed_command": None},
                    )
                    for r in failed
                ],
            )
            for row in failed:
                await enqueue_outcome(
                    conn,
                    outcomes.outcome_for_row(
                        row, messages_pb2.OUTCOME_KIND_FAILED, occurred_at=now, reason=fail_reason
                    ),
                )
        if resent or failed:
            self.on_outbox()
            log.warning("send.unknown_resolved", resent=len(resent), failed=len(failed))
            metrics.UNKNOWN_RESOLVED.labels(result="resent").inc(len(resent))
            metrics.UNKNOWN_RESOLVED.labels(result="failed").inc(len(failed))
        return len(resent) + len(failed)
