"""Events ingest: what the events worker does with each JetStream delivery.

Outcomes (MESSAGE_OUTCOMES) keep our copies of sent messages; raw webhooks (EDGE_WEBHOOKS) are
routed by kind: SendGrid event batches are handled here, replies by replies.py and one-click
unsubscribes by unsubscribes.py. Each handler commits its rows and their engagement facts in one
transaction, and is safe to redeliver: natural keys make a second run store and publish nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import prometheus_client
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.dispatcher.v1 import messages_pb2 as dispatcher_pb
from dripiq.events.v1 import messages_pb2
from dripiq_common.bus.contract import decode
from dripiq_common.clock import Clock
from dripiq_common.errors import PermanentMessageError
from dripiq_common.tokens import TokenSigner
from dripiq_events import convert, correlation, domain, repository, rollups, sendgrid_events
from dripiq_events.classification import ReplyClassifier, RuleClassifier
from dripiq_events.replies import Replies
from dripiq_events.storing import IngestResult, store_events
from dripiq_events.unsubscribes import Unsubscribes

log = structlog.get_logger(__name__)

RawWebhook = messages_pb2.RawWebhook


EVENTS = prometheus_client.Counter(
    "dripiq_events_received",
    "Events from webhook deliveries by what became of them: stored (new, tied to one of our "
    "messages), unmatched (new, tied to none), duplicate (stored before); rejected (malformed, "
    "stored as such) counts again those of the others that were malformed",
    ["result"],
)


def count_events(result: IngestResult) -> None:
    for name, value in (
        ("stored", result.stored - result.unmatched),
        ("unmatched", result.unmatched),
        ("duplicate", result.received - result.stored),
        ("rejected", result.rejected),
    ):
        if value > 0:
            EVENTS.labels(result=name).inc(value)


@dataclass
class EventIngest:
    engine: AsyncEngine
    clock: Clock
    signer: TokenSigner
    classifier: ReplyClassifier = field(default_factory=RuleClassifier)
    # Wakes the outbox relay after a commit that wrote engagement facts.
    on_outboxed: Callable[[], None] = field(default=lambda: None)
    replies: Replies = field(init=False)
    unsubscribes: Unsubscribes = field(init=False)

    def __post_init__(self) -> None:
        self.replies = Replies(self.engine, self.signer, self.classifier)
        self.unsubscribes = Unsubscribes(self.engine)

    async def record_outcome(self, data: bytes) -> bool:
        """Keep our copy of a sent message; other outcomes are not ours to track. True if kept."""
        return await self.record_outcomes([data]) == 1

    async def record_outcomes(self, batch: Sequence[bytes]) -> int:
        """Keep our copies of the sent messages among the outcomes, in one statement; how many.
        A completed task reported as replied or declined is also stored as that message's event
        and counted (its fact was published by the dispatcher). An undecodable or incomplete
        outcome raises PermanentMessageError (a batch that raises is retried one outcome at a
        time, so only that one is dead-lettered)."""
        now = self.clock.now()
        sent = []
        task_events = []
        for data in batch:
            outcome = decode(dispatcher_pb.MessageOutcome, data)
            if outcome.kind == dispatcher_pb.OUTCOME_KIND_SENT:
                message = convert.sent_message(outcome, now=now)
                sent.append(message)
                event = domain.task_event(message, channel=outcome.channel, task_outcome=outcome.task_outcome)
                if event is not None:
                    task_events.append(event)
        if sent:
            async with self.engine.begin() as conn:
                first_time = await repository.upsert_outbound(conn, sent=sent)
                await rollups.count_sent(conn, first_time)
                if task_events:
                    new_ids = await repository.insert_events(conn, events=task_events, received_at=now)
                    await rollups.roll_up(conn, [e for e in task_events if e.key in new_ids])
        return len(sent)

    async def handle_webhook(self, data: bytes, *, last_attempt: bool = True) -> IngestResult:
        """Store what one edge delivery carried. Before its `last_attempt`, a reply to a
        message we have not heard was sent raises AwaitingOutcome, to be tried again later."""
        raw = decode(RawWebhook, data)
        received_at = convert.received_at(raw, now=self.clock.now())
        if raw.kind == RawWebhook.KIND_SENDGRID_EVENTS:
            result = await self._sendgrid_events(raw.body, received_at)
        elif raw.kind == RawWebhook.KIND_SENDGRID_INBOUND:
            result = await self.replies.handle(raw.body, raw.content_type, received_at, last_attempt=last_attempt)
        elif raw.kind == RawWebhook.KIND_UNSUBSCRIBE:
            result = await self.unsubscribes.handle(dict(raw.fields), received_at)
        else:
            raise PermanentMessageError(f"RawWebhook of unknown kind {raw.kind}")
        if result.published:
            self.on_outboxed()
        count_events(result)
        return result

    async def _sendgrid_events(self, body: bytes, received_at: datetime) -> IngestResult:
        events = sendgrid_events.parse_event_batch(body, received_at=received_at)
        async with self.engine.begin() as conn:
            rows = await correlation.correlate_batch(conn, events)
            stored = await store_events(conn, rows, received_at)
        rejected = sum(1 for row in rows if row.event_type == domain.REJECTED)
        result = IngestResult(
            received=len(rows),
            stored=stored.stored,
            published=stored.published,
            unmatched=stored.unmatched,
            rejected=rejected,
        )
        if rejected:
            log.warning("events.rejected_events", rejected=rejected, received=len(rows))
        log.info(
            "events.batch_stored",
            received=result.received,
            stored=result.stored,
            published=result.published,
            unmatched=result.unmatched,
        )
        return result
