"""Dispatcher operations shared by the gRPC API and the JetStream consumers.

Sending exactly once: SendGrid has no idempotency key, so the row is the guard. It is locked
and moved to `sending` in one committed transaction before the provider call; a delivery
that finds `sending` knows a call may have gone out and parks the message as `unknown`
instead of calling again. Outcomes go to the outbox in the transaction that settles the row.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as pb
from dripiq.dispatcher.v1 import messages_pb2
from dripiq.scheduler.v1 import commands_pb2 as scheduler_commands_pb2
from dripiq.scheduler.v1 import scheduler_service_pb2 as scheduler_pb2
from dripiq_common import engagement, paging, validation
from dripiq_common.bus.contract import Subjects, decode
from dripiq_common.clock import Clock
from dripiq_common.errors import FailedPrecondition, InvalidArgument, NotFound, PermanentMessageError
from dripiq_common.outbox import OutboxMessage, coalesce_timer_commands, enqueue
from dripiq_common.tokens import TokenSigner
from dripiq_dispatcher import domain, metrics, repository
from dripiq_dispatcher.breaker import ProviderBreaker
from dripiq_dispatcher.domain import FailureKind, NewMessage, SendFailure, Status
from dripiq_dispatcher.models import outbox
from dripiq_dispatcher.outcomes import enqueue_outcome
from dripiq_dispatcher.provider import MailSender
from dripiq_dispatcher.rate_limits import RateLimitsMixin
from dripiq_dispatcher.unconfirmed import UnconfirmedSendsMixin

log = structlog.get_logger(__name__)


class RetryLater(Exception):
    """A transient provider failure: the worker naks and JetStream redelivers after its backoff."""


@dataclass
class _Item:
    """One send command of a batch, followed from its bytes to its settlement."""

    index: int
    message: NewMessage
    command: bytes
    identity: domain.Identity | None = None
    attempt: int = 0
    rfc_message_id: str = ""
    # When the message was first recorded: retries stop at the policy's horizon from here.
    first_at: datetime | None = None

    @property
    def ids(self) -> dict[str, str]:
        m = self.message
        return {"tenant_id": m.tenant_id, "campaign_id": m.campaign_id, "message_id": m.message_id}


@dataclass(frozen=True)
class _Answer:
    """What one provider call came to: the provider's message id, or how it failed."""

    provider_message_id: str | None = None
    failure: SendFailure | None = None


@dataclass
class _Work:
    """The row changes and outbox messages of one transaction, written at its end."""

    now: datetime
    changes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    outbox: list[OutboxMessage] = field(default_factory=list)

    def change(self, item: _Item, **values: Any) -> None:
        self.changes.append((item.message.message_id, {**values, "updated_at": self.now}))

    def outcome(self, fact: messages_pb2.MessageOutcome) -> None:
        self.outbox.append(OutboxMessage(Subjects.message_outcome(fact.tenant_id), fact))

    async def flush(self, conn: AsyncConnection) -> None:
        await repository.update_messages(conn, changes=self.changes)
        await enqueue(conn, outbox, coalesce_timer_commands(self.outbox))


@dataclass
class Dispatcher(RateLimitsMixin, UnconfirmedSendsMixin):
    engine: AsyncEngine
    clock: Clock
    sender: MailSender
    signer: TokenSigner
    mail_settings: domain.MailSettings
    # How a send that failed for a passing reason comes back, and for how long.
    retry: domain.RetryPolicy
    # Wakes the outbox relay after a commit that wrote outcomes, instead of waiting its poll.
    on_outbox: Callable[[], None] = field(default=lambda: None)
    # Told what every batch's provider calls came to; it holds the send worker while SendGrid is down.
    breaker: ProviderBreaker | None = None

    async def handle_send(self, data: bytes) -> None:
        """One SendMessageCommand from the planner. Safe to redeliver at any point."""
        [error] = await self.handle_sends([data])
        if error is not None:
            raise error

    async def handle_sends(self, batch: Sequence[bytes]) -> list[Exception | None]:
        """SendMessageCommands, each safe to redeliver at any point: admitted in one
        transaction, sent side by side, settled in one transaction.

        One entry per command: None when its delivery is done (ack), else the error it fails
        with: RetryLater to come back after JetStream's backoff, PermanentMessageError for a
        command that cannot even be recorded.
        """
        results: list[Exception | None] = [None] * len(batch)
        items: dict[tuple[str, str], _Item] = {}
        for index, data in enumerate(batch):
            try:
                message = domain.new_message(decode(messages_pb2.SendMessageCommand, data))
            except InvalidArgument as exc:
                results[index] = PermanentMessageError(f"unrecordable SendMessageCommand: {exc}")
                continue
            except PermanentMessageError as exc:
                results[index] = exc
                continue
            # One command twice in a batch is one send: the copy is acked with the first. The
            # same id from another tenant stays apart, to be refused once the row is found.
            items.setdefault((message.tenant_id, message.message_id), _Item(index, message, data))
        if not items:
            return results
        started = time.perf_counter()
        admission = _Work(self.clock.now())
        async with self.engine.begin() as conn:
            calls = await self._admit(conn, list(items.values()), admission, results)
            await admission.flush(conn)
        metrics.count_outcomes(admission.outbox)
        admitted = time.perf_counter()
        outboxed = bool(admission.outbox)
        called = admitted
        if calls:
            if self.breaker is not None:
                self.breaker.calling()
            answers = await asyncio.gather(*(self._call(item) for item in calls))
            called = time.perf_counter()
            if self.breaker is not None:
                passing = sum(1 for a in answers if a.failure is not None and a.failure.kind in domain.PASSING_FAILURES)
                self.breaker.record(answered=len(answers) - passing, failed=passing)
            settlement = _Work(self.clock.now())
            async with self.engine.begin() as conn:
                await self._settle_calls(conn, calls, answers, settlement, results)
                await settlement.flush(conn)
            metrics.count_outcomes(settlement.outbox)
            outboxed = outboxed or bool(settlement.outbox)
        if outboxed:
            self.on_outbox()
        log.debug(
            "send.batch",
            commands=len(batch),
            calls=len(calls),
            admit_ms=round((admitted - started) * 1000, 1),
            calls_ms=round((called - admitted) * 1000, 1),
            settle_ms=round((time.perf_counter() - called) * 1000, 1),
        )
        return results

    async def get_message(self, tenant_id: str, message_id: str) -> pb.Message:
        tenant = validation.tenant_id(tenant_id)
        validation.required(message_id, "message_id")
        async with self.engine.connect() as conn:
            row = await repository.get_message(conn, tenant_id=tenant, message_id=message_id)
        if row is None:
            raise NotFound(f"message {message_id!r} not found")
        return domain.message_to_proto(row)

    async def list_messages(self, request: pb.ListMessagesRequest) -> pb.ListMessagesResponse:
        tenant = validation.tenant_id(request.tenant_id)
        size = paging.page_size(request.page_size)
        after = paging.decode_token(request.page_token, datetime, str)
        status = domain.status_from_proto(request.status) if request.status else None
        async with self.engine.connect() as conn:
            rows = await repository.list_messages(
                conn,
                tenant_id=tenant,
                campaign_id=request.campaign_id,
                contact_id=request.contact_id,
                status=status,
                after=after,
                limit=size + 1,
            )
        page = rows[:size]
        token = paging.encode_token(page[-1].created_at.isoformat(), page[-1].message_id) if len(rows) > size else ""
        return pb.ListMessagesResponse(messages=[domain.message_to_proto(r) for r in page], next_page_token=token)

    async def _admit(
        self, conn: AsyncConnection, items: list[_Item], work: _Work, results: list[Exception | None]
    ) -> list[_Item]:
        """Record the commands and decide, under their row locks, which ones call the
        provider: those are moved to `sending` and returned. The others are settled (their
        outcomes outboxed), deferred, or were redeliveries with nothing left to do."""
        await repository.insert_messages(conn, batch=[i.message for i in items], now=work.now)
        rows = await repository.lock_messages(conn, message_ids=[i.message.message_id for i in items])
        queued: list[_Item] = []
        for item in items:
            row = rows[item.message.message_id]
            status = Status(row["status"])
            if row["tenant_id"] != item.message.tenant_id:
                results[item.index] = PermanentMessageError("message id is already used by another tenant")
            elif status in domain.SETTLED:
                log.info("send.redelivered_settled", status=str(status), **item.ids)
            elif status == Status.SENDING:
                # A delivery crashed or timed out during the provider call: it may have gone out.
                work.change(
                    item,
                    status=Status.UNKNOWN.value,
                    last_error="redelivered while a provider call was under way; a webhook settles it",
                    unconfirmed_command=item.command,
                )
                log.warning("send.found_sending_marked_unknown", attempt_count=row["attempt_count"], **item.ids)
            else:
                item.attempt = row["attempt_count"]
                item.first_at = row["created_at"]
                queued.append(item)
        candidates = await self._sendable(conn, queued, work)
        admitted = await self._take_budgets(conn, candidates, work)
        for item in admitted:
            assert item.identity is not None
            item.attempt += 1
            item.rfc_message_id = domain.rfc_message_id(item.message, self.mail_settings)
            work.change(
                item,
                status=Status.SENDING.value,
                attempt_count=item.attempt,
                from_email=item.identity.from_email,
                rfc_message_id=item.rfc_message_id,
                last_error=None,
            )
        return admitted

    async def _sendable(self, conn: AsyncConnection, items: list[_Item], work: _Work) -> list[_Item]:
        """The queued messages that may be sent now, each with its identity; the others are
        withheld (their campaign stopped), failed or suppressed, with their outcomes."""
        stopped = await repository.stopped_campaigns(
            conn, keys={(i.message.tenant_id, i.message.campaign_id) for i in items if i.message.campaign_id}
        )
        fine: list[_Item] = []
        for item in items:
            state = stopped.get((item.message.tenant_id, item.message.campaign_id))
            if state is not None:
                self._withhold(item, state, work)
                continue
            # A bad message can never go out (its campaign ends); a tenant setting missing
            # (the postal address) is for a person to fix (its campaign waits).
            if (problem := domain.content_problem(item.message)) is not None:
                self._settle(item, Status.FAILED, problem, work, permanent=True)
            elif (problem := domain.mail_problem(item.message, self.mail_settings)) is not None:
                self._settle(item, Status.FAILED, problem, work)
            else:
                fine.append(item)
        address = {i.message.message_id: domain.normalize_address(i.message.to_email) for i in fine}
        suppressed = await repository.suppression_reasons(
            conn, keys={(i.message.tenant_id, address[i.message.message_id]) for i in fine}
        )
        found = await repository.identities(
            conn,
            keys={(i.message.tenant_id, i.message.sender_identity_id) for i in fine if not domain.is_task(i.message)},
        )
        sendable: list[_Item] = []
        for item in fine:
            m = item.message
            reason = suppressed.get((m.tenant_id, address[m.message_id]))
            if reason is not None:
                self._settle(item, Status.SUPPRESSED, f"address suppressed: {reason}", work)
                continue
            if domain.is_task(m):
                self._open_task(item, work)
                continue
            identity = domain.sendable_identity(found.get((m.tenant_id, m.sender_identity_id)), m.sender_identity_id)
            if isinstance(identity, str):
                self._settle(item, Status.FAILED, identity, work, permanent=True)
                continue
            item.identity = identity
            sendable.append(item)
        return sendable

    async def _take_budgets(self, conn: AsyncConnection, items: list[_Item], work: _Work) -> list[_Item]:
        """Take one send from every budget each message falls under, in batch order, or from
        none: a message that finds one of its budgets spent is deferred and takes nothing.
        The counters stay locked until the transaction ends, so replicas agree."""
        limits = await repository.rate_limits_for(conn, keys={(i.message.tenant_id, i.message.channel) for i in items})
        needs = {
            item.message.message_id: [
                (budget, (budget.scope, budget.window, domain.window_start(budget.window, work.now)))
                for budget in domain.budgets(
                    tenant_id=item.message.tenant_id,
                    channel=item.message.channel,
                    tenant_limits=limits[(item.message.tenant_id, item.message.channel)],
                    identity=item.identity,  # type: ignore[arg-type]
                )
            ]
            for item in items
        }
        keys = {key for budgets in needs.values() for _, key in budgets}
        if not keys:
            return items
        used = await repository.lock_counters(conn, keys=keys)
        admitted: list[_Item] = []
        for item in items:
            budgets = needs[item.message.message_id]
            full = next((budget for budget, key in budgets if used[key] >= budget.limit), None)
            if full is not None:
                self._defer(item, full, work)
                continue
            for _, key in budgets:
                used[key] += 1
            admitted.append(item)
        await repository.set_counters(conn, used=used)
        return admitted

    def _defer(self, item: _Item, full: domain.Budget, work: _Work) -> None:
        """Leave the message `queued` and have the scheduler send its command again once the
        full window has passed: nothing waits in memory and the delivery is acked."""
        until = domain.window_end(full.window, work.now)
        reason = f"deferred: {full.scope} {full.window} budget spent until {until.isoformat()}"
        work.change(item, status=Status.QUEUED.value, last_error=reason)
        fire_at = domain.in_window(item.message, domain.defer_until(full.window, work.now, item.message.message_id))
        self._come_back(item, fire_at=fire_at, reason=reason, work=work)
        log.info("send.deferred", scope=full.scope, window=full.window, until=until.isoformat(), **item.ids)

    def _come_back(self, item: _Item, *, fire_at: datetime, reason: str, work: _Work) -> None:
        """A DEFERRED outcome, and a scheduler timer that delivers the send command again."""
        message = item.message
        work.outcome(domain.outcome(message, messages_pb2.OUTCOME_KIND_DEFERRED, occurred_at=work.now, reason=reason))
        timer = scheduler_pb2.Timer(
            tenant_id=message.tenant_id,
            key=f"{message.message_id}:deferred",
            # In the campaign's group (every send names one), so ending the campaign cancels it
            # with the campaign's other timers.
            group_key=f"campaign:{message.campaign_id}",
            kind="send_deferred",
            target_subject=Subjects.dispatcher_send(message.tenant_id),
            payload=item.command,
        )
        timer.fire_at.FromDatetime(fire_at)
        work.outbox.append(
            OutboxMessage(
                Subjects.scheduler_command(message.tenant_id),
                scheduler_commands_pb2.TimerCommand(tenant_id=message.tenant_id, schedule=timer),
            )
        )

    def _open_task(self, item: _Item, work: _Work) -> None:
        """A call or LinkedIn step: a task for a person, announced to the applications that
        show tasks. The step is done when CompleteTask reports it."""
        work.change(item, status=Status.TASK_OPEN.value, last_error=None)
        work.outbox.append(
            OutboxMessage(
                Subjects.dispatcher_task(item.message.tenant_id), domain.task_created(item.message, now=work.now)
            )
        )
        log.info("task.opened", channel=item.message.channel, **item.ids)

    async def complete_task(self, request: pb.CompleteTaskRequest) -> pb.Message:
        """Record a task's outcome: the step counts as done (a SENT outcome at completed_at),
        and a reply or a decline is published as engagement for the campaign's rules."""
        tenant = validation.tenant_id(request.tenant_id)
        message_id = validation.required(request.message_id, "message_id")
        outcome_name = domain.task_outcome(request.outcome)
        notes = validation.optional(request.notes, "notes", max_length=domain.MAX_TASK_NOTES)
        now = self.clock.now()
        completed_at = request.completed_at.ToDatetime(tzinfo=UTC) if request.HasField("completed_at") else now
        if completed_at > now + COMPLETED_AT_SKEW:
            raise InvalidArgument("completed_at", "must not be in the future")
        async with self.engine.begin() as conn:
            row = await repository.get_message(conn, tenant_id=tenant, message_id=message_id, lock=True)
            if row is None:
                raise NotFound(f"message {message_id!r} not found")
            if row.status == Status.TASK_DONE and row.task_outcome == outcome_name:
                return domain.message_to_proto(row)
            if row.status == Status.TASK_DONE:
                raise FailedPrecondition(f"task {message_id!r} was already completed as {row.task_outcome!r}")
            if row.status != Status.TASK_OPEN:
                raise FailedPrecondition(f"message {message_id!r} is not an open task (it is {row.status!r})")
            await repository.set_status(
                conn,
                message_id=message_id,
                expected=[Status.TASK_OPEN],
                status=Status.TASK_DONE,
                now=now,
                task_outcome=outcome_name,
                task_notes=notes or None,
                sent_at=completed_at,
            )
            await enqueue_outcome(
                conn,
                domain.outcome_for_row(
                    row,
                    messages_pb2.OUTCOME_KIND_SENT,
                    occurred_at=completed_at,
                    reason=f"task {outcome_name}",
                    task_outcome=outcome_name,
                ),
            )
            fact = domain.task_engagement(row, outcome_name, occurred_at=completed_at)
            if fact is not None:
                await enqueue(conn, outbox, engagement.outbox_messages([fact]))
            updated = await repository.get_message(conn, tenant_id=tenant, message_id=message_id)
        self.on_outbox()
        log.info("task.completed", tenant_id=tenant, message_id=message_id, outcome=outcome_name)
        return domain.message_to_proto(updated)

    def _withhold(self, item: _Item, state: tuple[str, str], work: _Work) -> None:
        """Its campaign stopped: nothing goes out, and the planner hears so (a resumed campaign
        sends the same message id again, which finds this row and is admitted)."""
        status, why = state
        reason = f"campaign {status}" + (f": {why}" if why else "")
        work.change(item, status=Status.WITHHELD.value, last_error=reason)
        work.outcome(
            domain.outcome(item.message, messages_pb2.OUTCOME_KIND_WITHHELD, occurred_at=work.now, reason=reason)
        )
        log.info("send.withheld", campaign_status=status, **item.ids)

    def _settle(self, item: _Item, status: Status, reason: str, work: _Work, *, permanent: bool = False) -> None:
        """Fail or suppress a queued message before any provider call, with its outcome."""
        work.change(item, status=status.value, last_error=reason)
        kind = messages_pb2.OUTCOME_KIND_SUPPRESSED if status == Status.SUPPRESSED else messages_pb2.OUTCOME_KIND_FAILED
        work.outcome(domain.outcome(item.message, kind, occurred_at=work.now, reason=reason, permanent=permanent))
        log.info("send.settled_without_sending", status=str(status), reason=reason, **item.ids)

    async def _call(self, item: _Item) -> _Answer:
        assert item.identity is not None
        mail = domain.build_mail(item.message, item.identity, signer=self.signer, settings=self.mail_settings)
        started = time.perf_counter()
        try:
            answer = _Answer(provider_message_id=await self.sender.send(mail))
        except Exception as exc:
            answer = _Answer(failure=domain.classify_failure(exc))
        result = "accepted" if answer.failure is None else answer.failure.kind.value
        metrics.PROVIDER_CALL_SECONDS.labels(result=result).observe(time.perf_counter() - started)
        return answer

    async def _settle_calls(
        self,
        conn: AsyncConnection,
        calls: list[_Item],
        answers: Sequence[_Answer],
        work: _Work,
        results: list[Exception | None],
    ) -> None:
        """Record what each provider call came to, under the rows' locks again: a row a
        redelivery moved on while the call ran is only settled where the answer still applies."""
        rows = await repository.lock_messages(conn, message_ids=[i.message.message_id for i in calls])
        for item, answer in zip(calls, answers, strict=True):
            status = Status(rows[item.message.message_id]["status"])
            if answer.failure is None:
                if status == Status.SENT:
                    # SendGrid's own event for it came first (settle_unknown_events).
                    log.info(
                        "send.accepted_after_its_event", provider_message_id=answer.provider_message_id, **item.ids
                    )
                    continue
                if status not in domain.IN_FLIGHT:
                    log.error(
                        "send.accepted_but_row_moved_on", provider_message_id=answer.provider_message_id, **item.ids
                    )
                    continue
                work.change(
                    item,
                    status=Status.SENT.value,
                    provider=domain.PROVIDER,
                    provider_message_id=answer.provider_message_id,
                    sent_at=work.now,
                    last_error=None,
                )
                work.outcome(
                    domain.outcome(
                        item.message,
                        messages_pb2.OUTCOME_KIND_SENT,
                        occurred_at=work.now,
                        provider_message_id=answer.provider_message_id or "",
                        rfc_message_id=item.rfc_message_id,
                    )
                )
                continue
            results[item.index] = self._settle_failure(item, answer.failure, status, work)

    def _settle_failure(self, item: _Item, failure: SendFailure, status: Status, work: _Work) -> Exception | None:
        """Record a failed call. A passing failure (5xx, 429, a connection that never opened)
        comes back through a scheduler timer with a growing backoff until the retry horizon;
        nothing waits on JetStream's redelivery. Returns no error: the delivery is done."""
        if failure.kind == FailureKind.UNKNOWN:
            if status == Status.SENDING:
                work.change(
                    item, status=Status.UNKNOWN.value, last_error=failure.reason, unconfirmed_command=item.command
                )
                log.error("send.outcome_unknown", reason=failure.reason, attempt=item.attempt, **item.ids)
            return None
        if status != Status.SENDING and not (failure.kind == FailureKind.PERMANENT and status in domain.IN_FLIGHT):
            # A row a redelivery parked as `unknown` keeps waiting there for a provider event.
            log.warning("send.failure_after_row_moved_on", reason=failure.reason, **item.ids)
            return None
        if failure.kind == FailureKind.RETRY:
            come_back = self.retry.next_attempt(
                attempt=item.attempt,
                first_at=item.first_at or work.now,
                now=work.now,
                message_id=item.message.message_id,
                not_before=failure.retry_at,
            )
            if come_back is not None:
                come_back = domain.in_window(item.message, come_back)
                work.change(item, status=Status.QUEUED.value, last_error=failure.reason)
                reason = (
                    f"deferred: provider rate limit until {failure.retry_at.isoformat()}"
                    if failure.retry_at is not None and failure.retry_at > work.now
                    else f"deferred: retrying at {come_back.isoformat()} after {failure.reason}"
                )
                self._come_back(item, fire_at=come_back, reason=reason, work=work)
                log.warning(
                    "send.retrying", reason=failure.reason, attempt=item.attempt, at=come_back.isoformat(), **item.ids
                )
                return None
        reason = failure.reason
        if failure.kind == FailureKind.RETRY:
            reason = domain.truncate(
                f"gave up after {item.attempt} attempts over {self.retry.horizon} (DISPATCHER_RETRY_HORIZON_SECONDS): "
                f"{reason}"
            )
        permanent = domain.failure_is_permanent(failure)
        work.change(item, status=Status.FAILED.value, last_error=reason)
        work.outcome(
            domain.outcome(
                item.message, messages_pb2.OUTCOME_KIND_FAILED, occurred_at=work.now, reason=reason, permanent=permanent
            )
        )
        log.warning("send.failed", reason=failure.reason, attempt=item.attempt, permanent=permanent, **item.ids)
        return None


# A completion time may run this far ahead of our clock (the reporting device's clock).
COMPLETED_AT_SKEW = timedelta(minutes=5)
