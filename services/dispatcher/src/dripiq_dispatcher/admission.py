"""Admission of send commands: recorded once, then, under their row locks, either moved to
`sending` for a provider call or settled without one (withheld, failed, suppressed, a task
opened) or deferred while a send budget is spent. Every change and outcome of a batch is
written by one transaction (Work)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from dripiq.dispatcher.v1 import messages_pb2
from dripiq.scheduler.v1 import commands_pb2 as scheduler_commands_pb2
from dripiq.scheduler.v1 import scheduler_service_pb2 as scheduler_pb2
from dripiq_common.bus.contract import Subjects
from dripiq_common.errors import PermanentMessageError
from dripiq_common.outbox import OutboxMessage, coalesce_timer_commands, enqueue
from dripiq_dispatcher import budgets, campaign_mail, domain, outcomes, repository, tasks
from dripiq_dispatcher.domain import NewMessage, Status
from dripiq_dispatcher.models import outbox

log = structlog.get_logger(__name__)


@dataclass
class Item:
    """One send command of a batch, followed from its bytes to its settlement."""

    index: int
    message: NewMessage
    command: bytes
    identity: campaign_mail.Identity | None = None
    attempt: int = 0
    rfc_message_id: str = ""
    # When the message was first recorded: retries stop at the policy's horizon from here.
    first_at: datetime | None = None

    @property
    def ids(self) -> dict[str, str]:
        m = self.message
        return {"tenant_id": m.tenant_id, "campaign_id": m.campaign_id, "message_id": m.message_id}


@dataclass
class Work:
    """The row changes and outbox messages of one transaction, written at its end."""

    now: datetime
    changes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    outbox: list[OutboxMessage] = field(default_factory=list)
    # (tenant_id, identity id, message_id): failed for an identity not verified (identity_holds).
    holds: list[tuple[str, str, str]] = field(default_factory=list)

    def change(self, item: Item, **values: Any) -> None:
        self.changes.append((item.message.message_id, {**values, "updated_at": self.now}))

    def outcome(self, fact: messages_pb2.MessageOutcome) -> None:
        self.outbox.append(OutboxMessage(Subjects.message_outcome(fact.tenant_id), fact))

    def hold(self, item: Item) -> None:
        """The message failed because its identity is not verified: released (its campaign goes
        on) once the identity is verified again."""
        m = item.message
        self.holds.append((m.tenant_id, m.sender_identity_id, m.message_id))

    async def flush(self, conn: AsyncConnection) -> None:
        await repository.messages.update_messages(conn, changes=self.changes)
        await repository.identities.hold_messages(conn, holds=self.holds, now=self.now)
        await enqueue(conn, outbox, coalesce_timer_commands(self.outbox))

    def come_back(self, item: Item, *, fire_at: datetime, reason: str) -> None:
        """A DEFERRED outcome, and a scheduler timer that delivers the send command again."""
        message = item.message
        self.outcome(outcomes.outcome(message, messages_pb2.OUTCOME_KIND_DEFERRED, occurred_at=self.now, reason=reason))
        timer = scheduler_pb2.Timer(
            tenant_id=message.tenant_id,
            key=f"{message.message_id}:deferred",
            # In the campaign's group (every send names one), so ending the campaign cancels it
            # with the campaign's other timers.
            group_key=f"campaign:{message.campaign_id}",
            kind="send_deferred",
            target=scheduler_pb2.TIMER_TARGET_DISPATCHER_SEND,
            payload=item.command,
        )
        timer.fire_at.FromDatetime(fire_at)
        self.outbox.append(
            OutboxMessage(
                Subjects.scheduler_command(message.tenant_id),
                scheduler_commands_pb2.TimerCommand(tenant_id=message.tenant_id, schedule=timer),
            )
        )


@dataclass(frozen=True)
class Admission:
    """Decides, per batch, which send commands call the provider."""

    mail_settings: campaign_mail.MailSettings

    async def admit(
        self, conn: AsyncConnection, items: list[Item], work: Work, results: list[Exception | None]
    ) -> list[Item]:
        """Record the commands and decide, under their row locks, which ones call the
        provider: those are moved to `sending` and returned. The others are settled (their
        outcomes outboxed), deferred, or were redeliveries with nothing left to do."""
        await repository.messages.insert_messages(conn, batch=[i.message for i in items], now=work.now)
        rows = await repository.messages.lock_messages(conn, message_ids=[i.message.message_id for i in items])
        queued: list[Item] = []
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
            item.rfc_message_id = campaign_mail.rfc_message_id(item.message, self.mail_settings)
            work.change(
                item,
                status=Status.SENDING.value,
                attempt_count=item.attempt,
                from_email=item.identity.from_email,
                rfc_message_id=item.rfc_message_id,
                last_error=None,
            )
        return admitted

    async def _sendable(self, conn: AsyncConnection, items: list[Item], work: Work) -> list[Item]:
        """The queued messages that may be sent now, each with its identity; the others are
        withheld (their campaign stopped), failed or suppressed, with their outcomes."""
        stopped = await repository.campaign_states.stopped_campaigns(
            conn, keys={(i.message.tenant_id, i.message.campaign_id) for i in items if i.message.campaign_id}
        )
        fine: list[Item] = []
        for item in items:
            state = stopped.get((item.message.tenant_id, item.message.campaign_id))
            if state is not None:
                self._withhold(item, state, work)
                continue
            # A bad message can never go out (its campaign ends); a tenant setting missing
            # (the postal address) is for a person to fix (its campaign waits).
            if (problem := domain.content_problem(item.message)) is not None:
                self._settle_unsent(item, Status.FAILED, problem, work, permanent=True)
            elif (problem := campaign_mail.mail_problem(item.message, self.mail_settings)) is not None:
                self._settle_unsent(item, Status.FAILED, problem, work)
            else:
                fine.append(item)
        address = {i.message.message_id: domain.normalize_address(i.message.to_email) for i in fine}
        suppressed = await repository.suppressions.suppression_reasons(
            conn, keys={(i.message.tenant_id, address[i.message.message_id]) for i in fine}
        )
        found = await repository.identities.identities(
            conn,
            keys={(i.message.tenant_id, i.message.sender_identity_id) for i in fine if not domain.is_task(i.message)},
        )
        sendable: list[Item] = []
        for item in fine:
            m = item.message
            reason = suppressed.get((m.tenant_id, address[m.message_id]))
            if reason is not None:
                self._settle_unsent(item, Status.SUPPRESSED, f"address suppressed: {reason}", work)
                continue
            if domain.is_task(m):
                self._open_task(item, work)
                continue
            identity = campaign_mail.sendable_identity(
                found.get((m.tenant_id, m.sender_identity_id)), m.sender_identity_id
            )
            if isinstance(identity, str):
                # An identity that does not exist is the message's own fault; one not (or no
                # longer) verified waits for a person to verify it, then RetryStep.
                missing = (m.tenant_id, m.sender_identity_id) not in found
                self._settle_unsent(item, Status.FAILED, identity, work, permanent=missing)
                if not missing:
                    work.hold(item)
                continue
            item.identity = identity
            sendable.append(item)
        return sendable

    async def _take_budgets(self, conn: AsyncConnection, items: list[Item], work: Work) -> list[Item]:
        """Take one send from every budget each message falls under, in batch order, or from
        none: a message that finds one of its budgets spent is deferred and takes nothing.
        The counters stay locked until the transaction ends, so replicas agree."""
        limits = await repository.rate_limits.rate_limits_for(
            conn, keys={(i.message.tenant_id, i.message.channel) for i in items}
        )
        needs = {
            item.message.message_id: [
                (budget, (budget.scope, budget.window, budgets.window_start(budget.window, work.now)))
                for budget in budgets.send_budgets(
                    tenant_id=item.message.tenant_id,
                    channel=item.message.channel,
                    tenant_limits=limits[(item.message.tenant_id, item.message.channel)],
                    identity=item.identity,  # type: ignore[arg-type]
                )
            ]
            for item in items
        }
        keys = {key for own in needs.values() for _, key in own}
        if not keys:
            return items
        used = await repository.rate_limits.lock_counters(conn, keys=keys)
        admitted: list[Item] = []
        for item in items:
            own = needs[item.message.message_id]
            full = next((budget for budget, key in own if used[key] >= budget.limit), None)
            if full is not None:
                self._defer(item, full, work)
                continue
            for _, key in own:
                used[key] += 1
            admitted.append(item)
        await repository.rate_limits.set_counters(conn, used=used)
        return admitted

    def _defer(self, item: Item, full: budgets.Budget, work: Work) -> None:
        """Leave the message `queued` and have the scheduler send its command again once the
        full window has passed: nothing waits in memory and the delivery is acked."""
        until = budgets.window_end(full.window, work.now)
        reason = f"deferred: {full.scope} {full.window} budget spent until {until.isoformat()}"
        work.change(item, status=Status.QUEUED.value, last_error=reason)
        fire_at = domain.in_window(item.message, budgets.defer_until(full.window, work.now, item.message.message_id))
        work.come_back(item, fire_at=fire_at, reason=reason)
        log.info("send.deferred", scope=full.scope, window=full.window, until=until.isoformat(), **item.ids)

    def _open_task(self, item: Item, work: Work) -> None:
        """A call or LinkedIn step: a task for a person, announced to the applications that
        show tasks. The step is done when CompleteTask reports it."""
        work.change(item, status=Status.TASK_OPEN.value, last_error=None)
        work.outbox.append(
            OutboxMessage(
                Subjects.dispatcher_task(item.message.tenant_id), tasks.task_created(item.message, now=work.now)
            )
        )
        log.info("task.opened", channel=item.message.channel, **item.ids)

    def _withhold(self, item: Item, state: tuple[str, str], work: Work) -> None:
        """Its campaign stopped: nothing goes out, and the planner hears so (a resumed campaign
        sends the same message id again, which finds this row and is admitted)."""
        status, why = state
        reason = f"campaign {status}" + (f": {why}" if why else "")
        work.change(item, status=Status.WITHHELD.value, last_error=reason)
        work.outcome(
            outcomes.outcome(item.message, messages_pb2.OUTCOME_KIND_WITHHELD, occurred_at=work.now, reason=reason)
        )
        log.info("send.withheld", campaign_status=status, **item.ids)

    def _settle_unsent(self, item: Item, status: Status, reason: str, work: Work, *, permanent: bool = False) -> None:
        """Fail or suppress a queued message before any provider call, with its outcome."""
        work.change(item, status=status.value, last_error=reason)
        kind = messages_pb2.OUTCOME_KIND_SUPPRESSED if status == Status.SUPPRESSED else messages_pb2.OUTCOME_KIND_FAILED
        work.outcome(outcomes.outcome(item.message, kind, occurred_at=work.now, reason=reason, permanent=permanent))
        log.info("send.settled_without_sending", status=str(status), reason=reason, **item.ids)
