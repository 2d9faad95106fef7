"""Events operations: the JetStream consumers' work (ingest) and the gRPC queries.

Each handler commits its rows and their engagement facts in one transaction, and is safe to
redeliver: natural keys make a second run store and publish nothing.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import prometheus_client
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dripiq.dispatcher.v1 import messages_pb2 as dispatcher_pb
from dripiq.events.v1 import events_service_pb2 as api_pb
from dripiq.events.v1 import messages_pb2
from dripiq_common import engagement, outbox, paging, validation
from dripiq_common.bus.contract import Subjects, decode
from dripiq_common.clock import Clock
from dripiq_common.errors import InvalidArgument, NotFound, PermanentMessageError
from dripiq_common.outbox import OutboxMessage
from dripiq_common.tokens import TokenSigner, token_from_reply_address
from dripiq_events import autoreply_dates, domain, inbound, reply_text, repository
from dripiq_events.classification import ReplyClassifier, RuleClassifier
from dripiq_events.domain import NewEvent, Outbound
from dripiq_events.models import outbox as outbox_table

log = structlog.get_logger(__name__)

RawWebhook = messages_pb2.RawWebhook


class AwaitingOutcome(Exception):
    """A reply names one of our messages whose SENT outcome has not reached us yet."""


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


@dataclass(frozen=True)
class IngestResult:
    """What one webhook delivery did; a replay shows stored == published == 0."""

    received: int = 0
    stored: int = 0
    published: int = 0
    unmatched: int = 0
    rejected: int = 0


@dataclass
class EventIngest:
    engine: AsyncEngine
    clock: Clock
    signer: TokenSigner
    classifier: ReplyClassifier = field(default_factory=RuleClassifier)
    # Wakes the outbox relay after a commit that wrote engagement facts.
    on_outboxed: Callable[[], None] = field(default=lambda: None)

    async def record_outcome(self, data: bytes) -> bool:
        """Keep our copy of a sent message; other outcomes are not ours to track. True if kept."""
        return await self.record_outcomes([data]) == 1

    async def record_outcomes(self, batch: Sequence[bytes]) -> int:
        """Keep our copies of the sent messages among the outcomes, in one statement; how many.
        A completed task reported as replied or declined is also stored as that message's event
        and counted (its fact was published by the dispatcher). An undecodable or incomplete
        outcome raises PermanentMessageError (a batch that raises is split until that outcome
        is alone, so only that one is dead-lettered)."""
        now = self.clock.now()
        sent = []
        task_events = []
        for data in batch:
            outcome = decode(dispatcher_pb.MessageOutcome, data)
            if outcome.kind == dispatcher_pb.OUTCOME_KIND_SENT:
                message = domain.sent_message(outcome, now=now)
                sent.append(message)
                if (event := domain.task_event(outcome, message)) is not None:
                    task_events.append(event)
        if sent:
            async with self.engine.begin() as conn:
                first_time = await repository.upsert_outbound(conn, sent=sent)
                increments: Counter[repository.RollupKey] = Counter(
                    (s.outbound.tenant_id, s.outbound.campaign_id, s.outbound.step_index, domain.SENT_METRIC)
                    for s in first_time
                )
                await repository.add_to_rollups(conn, increments=increments)
                if task_events:
                    new_ids = await repository.insert_events(conn, events=task_events, received_at=now)
                    await self._roll_up(conn, [e for e in task_events if e.key in new_ids])
        return len(sent)

    async def handle_webhook(self, data: bytes, *, last_attempt: bool = True) -> IngestResult:
        """Store what one edge delivery carried. Before its `last_attempt`, a reply to a
        message we have not heard was sent raises AwaitingOutcome, to be tried again later."""
        raw = decode(RawWebhook, data)
        received_at = raw.received_at.ToDatetime(tzinfo=UTC) if raw.HasField("received_at") else self.clock.now()
        if raw.kind == RawWebhook.KIND_SENDGRID_EVENTS:
            result = await self._sendgrid_events(raw.body, received_at)
        elif raw.kind == RawWebhook.KIND_SENDGRID_INBOUND:
            result = await self._inbound(raw.body, raw.content_type, received_at, last_attempt=last_attempt)
        elif raw.kind == RawWebhook.KIND_UNSUBSCRIBE:
            result = await self._unsubscribe(dict(raw.fields), received_at)
        else:
            raise PermanentMessageError(f"RawWebhook of unknown kind {raw.kind}")
        if result.published:
            self.on_outboxed()
        count_events(result)
        return result

    async def _sendgrid_events(self, body: bytes, received_at: datetime) -> IngestResult:
        events = domain.parse_event_batch(body, received_at=received_at)
        async with self.engine.begin() as conn:
            by_message_id = await repository.outbound_by_message_ids(
                conn, message_ids=[e.message_id for e in events if e.message_id]
            )
            # SendGrid's id is only asked for where our own message_id did not find the message.
            by_provider_id = await repository.outbound_by_provider_ids(
                conn,
                provider_message_ids=[
                    e.provider_message_id
                    for e in events
                    if e.provider_message_id and (e.message_id is None or e.message_id not in by_message_id)
                ],
            )
            rows = [domain.correlate(e, by_message_id=by_message_id, by_provider_id=by_provider_id) for e in events]
            stored = await self._store(conn, rows, received_at)
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

    async def _inbound(
        self, body: bytes, content_type: str, received_at: datetime, *, last_attempt: bool
    ) -> IngestResult:
        """One reply: matched to the message it answers, read (classified, or its return date
        found), stored once, published, and, from a person, forwarded to one.

        The match is read in a first short transaction and the reply is classified outside any
        (an AI call takes seconds); the second transaction stores it, its engagement fact and the
        forward command together. A redelivery finds the stored reply and does nothing."""
        mail = inbound.parse_inbound(body, content_type)
        auto_reason = inbound.auto_reply_reason(mail)
        dedupe_key = "sha256:" + hashlib.sha256(body).hexdigest()
        token_message_id = self._reply_token_message_id(mail.recipient_addresses)
        async with self.engine.connect() as conn:
            if await repository.inbound_stored(conn, dedupe_key=dedupe_key):
                return IngestResult(received=1)
            outbound = await self._replied_message(conn, token_message_id, mail.referenced_message_ids)
        if outbound is None and token_message_id and not last_attempt:
            # Our signed reply address proves the message was sent; its SENT outcome can
            # reach us after a quick reply does.
            raise AwaitingOutcome(f"reply to message {token_message_id} before its sent outcome")
        reading = await self._read(mail, outbound, auto_reason, received_at)
        row = domain.inbound_row(
            mail,
            outbound=outbound,
            message_id=outbound.message_id if outbound else token_message_id,
            auto_reason=auto_reason,
            reading=reading,
            received_at=received_at,
            dedupe_key=dedupe_key,
        )
        async with self.engine.begin() as conn:
            inbound_id = await repository.insert_inbound(conn, values=row)
            if inbound_id is None:
                return IngestResult(received=1)
            if outbound is None:
                # Only a signed reply address names a message; a person's reply to it still
                # reaches someone: the dispatcher knows whose message it is.
                forwarded = token_message_id is not None and auto_reason is None
                if forwarded and token_message_id is not None:
                    forward = domain.forward_command(
                        None, message_id=token_message_id, inbound_id=inbound_id, row=row, received_at=received_at
                    )
                    await outbox.enqueue(
                        conn, outbox_table, [OutboxMessage(Subjects.DISPATCHER_FORWARD_BY_MESSAGE, forward)]
                    )
                log.info(
                    "events.inbound_unmatched",
                    inbound_id=inbound_id,
                    token_valid=token_message_id is not None,
                    forwarded=forwarded,
                )
                return IngestResult(received=1, stored=1, unmatched=1)
            await repository.insert_generations(
                conn,
                rows=[{**g, "tenant_id": outbound.tenant_id, "inbound_id": inbound_id} for g in reading.generations],
            )
            event = domain.reply_event(
                outbound=outbound,
                dedupe_key=dedupe_key,
                occurred_at=received_at,
                auto_reason=auto_reason,
                raw_event={"inbound_email_id": inbound_id, "from": mail.from_email, "subject": mail.subject},
                reply=domain.ReplyFacts(
                    inbound_id=inbound_id,
                    snippet=row["snippet"],
                    reply_class=row["classification"] or "",
                    return_date=row["return_date"],
                ),
            )
            stored = await self._store(conn, [event], received_at)
            if auto_reason is None:
                forward = domain.forward_command(
                    outbound, message_id=outbound.message_id, inbound_id=inbound_id, row=row, received_at=received_at
                )
                await outbox.enqueue(
                    conn, outbox_table, [OutboxMessage(Subjects.dispatcher_forward(outbound.tenant_id), forward)]
                )
        log.info(
            "events.reply_stored",
            tenant_id=outbound.tenant_id,
            message_id=outbound.message_id,
            event_type=event.event_type,
            reply_class=row["classification"],
            return_date=str(row["return_date"] or ""),
        )
        return IngestResult(received=1, stored=1, published=stored.published)

    async def _read(
        self, mail: inbound.InboundMail, outbound: Outbound | None, auto_reason: str | None, received_at: datetime
    ) -> domain.ReplyReading:
        """What the reply says: an auto-reply's return date, a person's reply's class."""
        if auto_reason is not None:
            sent_at = mail.sent_at(received_at=received_at)
            return domain.ReplyReading(return_date=autoreply_dates.return_date(mail.text, received_at=sent_at))
        if outbound is None:
            return domain.ReplyReading()
        text = mail.text or reply_text.plain_text(mail.html)
        classified = await self.classifier.classify(tenant_id=outbound.tenant_id, subject=mail.subject, text=text)
        return domain.ReplyReading(classification=classified)

    def _reply_token_message_id(self, addresses: Sequence[str]) -> str | None:
        for address in addresses:
            token = token_from_reply_address(address)
            message_id = self.signer.parse_reply_token(token) if token else None
            if message_id:
                return message_id
        return None

    async def _replied_message(
        self, conn: AsyncConnection, token_message_id: str | None, referenced: Sequence[str]
    ) -> Outbound | None:
        """The message a reply answers: the signed reply address first (it survives clients
        that drop threading headers), else the first of our Message-IDs it references."""
        if token_message_id:
            found = await repository.outbound_by_message_ids(conn, message_ids=[token_message_id])
            if token_message_id in found:
                return found[token_message_id]
        by_rfc = await repository.outbound_by_rfc_ids(conn, rfc_message_ids=referenced)
        return next((by_rfc[ref] for ref in referenced if ref in by_rfc), None)

    async def _unsubscribe(self, fields: dict[str, str], received_at: datetime) -> IngestResult:
        """A one-click unsubscribe the edge took (its signed token named tenant and message):
        stored once, published, and the address suppressed. Without our record of the message,
        the same transaction asks the dispatcher, which keeps every message's address, to
        suppress it: the request is honoured whatever we still know."""
        try:
            tenant_id, message_id = domain.unsubscribe_request(
                fields.get("tenant_id", ""), fields.get("message_id", "")
            )
        except InvalidArgument as exc:
            raise PermanentMessageError(f"invalid unsubscribe: {exc}") from exc
        event_id = domain.unsubscribe_event_id(message_id)
        async with self.engine.begin() as conn:
            # Each click has its own time, so the partitioned unique key would not catch a
            # second one: look for the first under a lock instead.
            await repository.lock(conn, key=f"{tenant_id}:{event_id}")
            if await repository.event_recorded(
                conn,
                tenant_id=tenant_id,
                message_id=message_id,
                provider=domain.PROVIDER_DRIPIQ,
                provider_event_id=event_id,
            ):
                return IngestResult(received=1)
            known = (await repository.outbound_by_message_ids(conn, message_ids=[message_id])).get(message_id)
            outbound = known if known and known.tenant_id == tenant_id else None
            event = domain.unsubscribe_event(
                tenant_id=tenant_id, message_id=message_id, occurred_at=received_at, outbound=outbound
            )
            stored = await self._store(conn, [event], received_at)
            by_message = domain.needs_address(outbound)
            if by_message:
                command = domain.suppress_by_message(
                    tenant_id=tenant_id, message_id=message_id, occurred_at=received_at
                )
                await outbox.enqueue(
                    conn, outbox_table, [OutboxMessage(Subjects.dispatcher_suppress(tenant_id), command)]
                )
        log.info("events.unsubscribe_stored", tenant_id=tenant_id, message_id=message_id, by_message=by_message)
        # `published` counts the command too: it wakes the relay.
        return IngestResult(received=1, stored=stored.stored, published=stored.published + by_message)

    async def _store(self, conn: AsyncConnection, rows: Sequence[NewEvent], received_at: datetime) -> IngestResult:
        """Insert what is new and outbox one engagement fact per new matched row, together
        (batched by tenant and type, docs/decisions/0014)."""
        new_ids = await repository.insert_events(conn, events=rows, received_at=received_at)
        new_rows = [(row, new_ids[row.key]) for row in rows if row.key in new_ids]
        facts = [domain.engagement(row, event_id=row_id) for row, row_id in new_rows if row.matched]
        await outbox.enqueue(conn, outbox_table, engagement.outbox_messages(facts))
        await self._roll_up(conn, [row for row, _ in new_rows if row.matched])
        return IngestResult(
            received=len(rows),
            stored=len(new_rows),
            published=len(facts),
            unmatched=sum(1 for row, _ in new_rows if not row.matched),
        )

    async def _roll_up(self, conn: AsyncConnection, rows: Sequence[NewEvent]) -> None:
        """Count newly stored events into their steps' rollups, each once-per-message metric
        only the first time its message reaches it (tracked in outbound_messages.seen)."""
        increments: Counter[repository.RollupKey] = Counter()
        wanted: dict[str, int] = {}
        step_of: dict[str, tuple[str, str, int]] = {}
        for row in rows:
            if not (row.tenant_id and row.campaign_id and row.message_id and row.step_index is not None):
                continue
            step = (row.tenant_id, row.campaign_id, row.step_index)
            unique, per_event = domain.rollup_metrics(row.event_type, row.machine_open)
            for metric in per_event:
                increments[(*step, metric)] += 1
            if unique:
                bits = wanted.get(row.message_id, 0)
                for metric in unique:
                    bits |= domain.UNIQUE_METRICS[metric]
                wanted[row.message_id] = bits
                step_of[row.message_id] = step
        added = await repository.add_seen(conn, wanted=wanted)
        for message_id, new in added.items():
            for metric, bit in domain.UNIQUE_METRICS.items():
                if new & bit:
                    increments[(*step_of[message_id], metric)] += 1
        await repository.add_to_rollups(conn, increments=increments)


async def prune_unmatched_inbound(engine: AsyncEngine, *, before: datetime, limit: int) -> int:
    """Delete up to `limit` of the oldest unmatched inbound mails received before `before`:
    mail nobody could tie to a tenant is kept only for operators to look at, and not forever."""
    async with engine.begin() as conn:
        return await repository.delete_unmatched_inbound(conn, received_before=before, limit=limit)


@dataclass
class EventQuery:
    engine: AsyncEngine

    async def step_funnel(self, tenant_id: str, campaign_id: str) -> api_pb.GetStepFunnelResponse:
        tenant = validation.tenant_id(tenant_id)
        campaign = validation.required(campaign_id, "campaign_id")
        async with self.engine.connect() as conn:
            steps = await repository.rollups(conn, tenant_id=tenant, campaign_id=campaign)
        return api_pb.GetStepFunnelResponse(
            campaign_id=campaign,
            steps=[
                api_pb.StepCounts(step_index=index, counts=domain.counts_to_proto(values))
                for index, values in sorted(steps.items())
            ],
        )

    async def campaign_stats(self, tenant_id: str, campaign_id: str) -> api_pb.GetCampaignStatsResponse:
        tenant = validation.tenant_id(tenant_id)
        campaign = validation.required(campaign_id, "campaign_id")
        async with self.engine.connect() as conn:
            steps = await repository.rollups(conn, tenant_id=tenant, campaign_id=campaign)
        totals: Counter[str] = Counter()
        for values in steps.values():
            totals.update(values)
        return api_pb.GetCampaignStatsResponse(campaign_id=campaign, totals=domain.counts_to_proto(totals))

    async def list_message_events(self, request: api_pb.ListMessageEventsRequest) -> api_pb.ListMessageEventsResponse:
        tenant_id = validation.tenant_id(request.tenant_id)
        if request.message_id and request.campaign_id:
            raise InvalidArgument("campaign_id", "give at most one of message_id or campaign_id")
        occurred_after = _bound(request, "occurred_after")
        occurred_before = _bound(request, "occurred_before")
        if not (request.message_id or request.campaign_id):
            # A whole tenant is only listed over a time range: it may hold hundreds of millions.
            for name, bound in (("occurred_after", occurred_after), ("occurred_before", occurred_before)):
                if bound is None:
                    raise InvalidArgument(name, "required when neither message_id nor campaign_id is given")
        if occurred_after is not None and occurred_before is not None and occurred_before <= occurred_after:
            raise InvalidArgument("occurred_before", "must be later than occurred_after")
        size = paging.page_size(request.page_size)
        after = paging.decode_token(request.page_token, int)
        after_id = after[0] if after else 0
        async with self.engine.connect() as conn:
            rows = await repository.list_events(
                conn,
                tenant_id=tenant_id,
                message_id=request.message_id,
                campaign_id=request.campaign_id,
                occurred_after=occurred_after,
                occurred_before=occurred_before,
                after_id=after_id,
                limit=size + 1,
            )
        page = rows[:size]
        return api_pb.ListMessageEventsResponse(
            events=[domain.to_proto(row) for row in page],
            next_page_token=paging.encode_token(page[-1].id) if len(rows) > size else "",
        )

    async def list_inbound_messages(
        self, request: api_pb.ListInboundMessagesRequest
    ) -> api_pb.ListInboundMessagesResponse:
        tenant_id = validation.tenant_id(request.tenant_id)
        size = paging.page_size(request.page_size)
        before = paging.decode_token(request.page_token, int)
        async with self.engine.connect() as conn:
            rows = await repository.list_inbound(
                conn,
                tenant_id=tenant_id,
                campaign_id=request.campaign_id,
                before_id=before[0] if before else None,
                limit=size + 1,
            )
        page = rows[:size]
        return api_pb.ListInboundMessagesResponse(
            messages=[domain.inbound_to_proto(row) for row in page],
            next_page_token=paging.encode_token(page[-1].id) if len(rows) > size else "",
        )

    async def get_inbound(self, tenant_id: str, inbound_id: str) -> api_pb.InboundMessage:
        tenant = validation.tenant_id(tenant_id)
        try:
            wanted = int(validation.required(inbound_id, "inbound_id"))
        except ValueError:
            raise InvalidArgument("inbound_id", f"must be a number, got {inbound_id!r}") from None
        async with self.engine.connect() as conn:
            row = await repository.get_inbound(conn, tenant_id=tenant, inbound_id=wanted)
        if row is None:
            raise NotFound(f"inbound message {inbound_id!r} not found")
        return domain.inbound_to_proto(row)


def _bound(request: api_pb.ListMessageEventsRequest, name: str) -> datetime | None:
    """A time bound of the request, if set; INVALID_ARGUMENT naming it if it cannot be one."""
    if not request.HasField(name):
        return None
    try:
        return getattr(request, name).ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise InvalidArgument(name, f"not a valid time: {exc}") from None
