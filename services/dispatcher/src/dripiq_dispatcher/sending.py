"""The send path: SendMessageCommands from the planner, each sent through SendGrid at most once.

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

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dripiq.dispatcher.v1 import messages_pb2
from dripiq_common.bus.contract import decode
from dripiq_common.clock import Clock
from dripiq_common.errors import InvalidArgument, PermanentMessageError
from dripiq_common.tokens import TokenSigner
from dripiq_dispatcher import campaign_mail, convert, domain, failures, metrics, outcomes, repository
from dripiq_dispatcher.accounts import AccountUnusable, ProviderAccounts
from dripiq_dispatcher.admission import Admission, Item, Work
from dripiq_dispatcher.breaker import ProviderBreaker
from dripiq_dispatcher.domain import Status
from dripiq_dispatcher.failures import FailureKind, SendFailure
from dripiq_dispatcher.provider import MailSender

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Answer:
    """What one provider call came to: the provider's message id, or how it failed."""

    provider_message_id: str | None = None
    failure: SendFailure | None = None


@dataclass
class Sends:
    """The send path: a batch of SendMessageCommands admitted, called side by side, settled."""

    engine: AsyncEngine
    clock: Clock
    sender: MailSender
    signer: TokenSigner
    mail_settings: campaign_mail.MailSettings
    # How a send that failed for a passing reason comes back, and for how long.
    retry: failures.RetryPolicy
    # Wakes the outbox relay after a commit that wrote outcomes, instead of waiting its poll.
    on_outbox: Callable[[], None] = field(default=lambda: None)
    # Told what every batch's provider calls came to; it holds the send worker while SendGrid is down.
    breaker: ProviderBreaker | None = None
    # Whose SendGrid account each identity sends through (its provider_config_id).
    accounts: ProviderAccounts = field(default_factory=ProviderAccounts)

    def __post_init__(self) -> None:
        self.admission = Admission(self.mail_settings)

    async def handle_send(self, data: bytes) -> None:
        """One SendMessageCommand from the planner. Safe to redeliver at any point."""
        [error] = await self.handle_sends([data])
        if error is not None:
            raise error

    async def handle_sends(self, batch: Sequence[bytes]) -> list[Exception | None]:
        """SendMessageCommands, each safe to redeliver at any point: admitted in one
        transaction, sent side by side, settled in one transaction.

        One entry per command: None when its delivery is done (ack), else the error it fails
        with: PermanentMessageError for a command that cannot even be recorded.
        """
        results: list[Exception | None] = [None] * len(batch)
        items: dict[tuple[str, str], Item] = {}
        for index, data in enumerate(batch):
            try:
                message = convert.new_message(decode(messages_pb2.SendMessageCommand, data))
            except InvalidArgument as exc:
                results[index] = PermanentMessageError(f"unrecordable SendMessageCommand: {exc}")
                continue
            except PermanentMessageError as exc:
                results[index] = exc
                continue
            # One command twice in a batch is one send: the copy is acked with the first. The
            # same id from another tenant stays apart, to be refused once the row is found.
            items.setdefault((message.tenant_id, message.message_id), Item(index, message, data))
        if not items:
            return results
        started = time.perf_counter()
        admission = Work(self.clock.now())
        async with self.engine.begin() as conn:
            calls = await self.admission.admit(conn, list(items.values()), admission, results)
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
                passing = sum(
                    1 for a in answers if a.failure is not None and a.failure.kind in failures.PASSING_FAILURES
                )
                self.breaker.record(answered=len(answers) - passing, failed=passing)
            settlement = Work(self.clock.now())
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

    async def _call(self, item: Item) -> Answer:
        assert item.identity is not None
        mail = campaign_mail.build_mail(item.message, item.identity, signer=self.signer, settings=self.mail_settings)
        started = time.perf_counter()
        try:
            account = self.accounts.account(item.message.tenant_id, item.identity.provider_config_id)
        except AccountUnusable as exc:
            # Ours to fix, not the message's: it fails without a status, so its campaign waits.
            return Answer(failure=SendFailure(FailureKind.PERMANENT, failures.truncate(str(exc))))
        try:
            answer = Answer(provider_message_id=await self.sender.send(mail, account))
        except Exception as exc:
            answer = Answer(failure=failures.classify_failure(exc))
        result = "accepted" if answer.failure is None else answer.failure.kind.value
        metrics.PROVIDER_CALL_SECONDS.labels(result=result).observe(time.perf_counter() - started)
        return answer

    async def _settle_calls(
        self,
        conn: AsyncConnection,
        calls: list[Item],
        answers: Sequence[Answer],
        work: Work,
        results: list[Exception | None],
    ) -> None:
        """Record what each provider call came to, under the rows' locks again: a row a
        redelivery moved on while the call ran is only settled where the answer still applies."""
        rows = await repository.messages.lock_messages(conn, message_ids=[i.message.message_id for i in calls])
        # Identities already marked unverified in this batch: their other refusals change nothing more.
        unverified: set[tuple[str, str]] = set()
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
                    outcomes.outcome(
                        item.message,
                        messages_pb2.OUTCOME_KIND_SENT,
                        occurred_at=work.now,
                        provider_message_id=answer.provider_message_id or "",
                        rfc_message_id=item.rfc_message_id,
                    )
                )
                continue
            results[item.index] = self._settle_failure(item, answer.failure, status, work)
            identity = (item.message.tenant_id, item.message.sender_identity_id)
            if failures.sender_not_verified(answer.failure) and identity not in unverified:
                unverified.add(identity)
                await self._unverify(conn, item, answer.failure, work)

    async def _unverify(self, conn: AsyncConnection, item: Item, failure: SendFailure, work: Work) -> None:
        """SendGrid no longer sends as this identity: it stops being verified, so its queued
        messages wait instead of each being refused in turn, until it is verified again (the
        message itself, if _settle_failure failed it, is held to be released then)."""
        assert item.identity is not None
        changed = await repository.identities.mark_refused(
            conn,
            tenant_id=item.message.tenant_id,
            identity_id=item.identity.id,
            provider_config_id=item.identity.provider_config_id,
            reason=failure.reason,
            now=work.now,
        )
        if changed:
            log.error(
                "identity.refused_by_provider",
                identity_id=item.identity.id,
                reason=failure.reason,
                **item.ids,
            )

    def _settle_failure(self, item: Item, failure: SendFailure, status: Status, work: Work) -> Exception | None:
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
                work.come_back(item, fire_at=come_back, reason=reason)
                log.warning(
                    "send.retrying", reason=failure.reason, attempt=item.attempt, at=come_back.isoformat(), **item.ids
                )
                return None
        reason = failure.reason
        if failure.kind == FailureKind.RETRY:
            reason = failures.truncate(
                f"gave up after {item.attempt} attempts over {self.retry.horizon} (DISPATCHER_RETRY_HORIZON_SECONDS): "
                f"{reason}"
            )
        permanent = failures.failure_is_permanent(failure)
        work.change(item, status=Status.FAILED.value, last_error=reason)
        if failures.sender_not_verified(failure):
            work.hold(item)
        work.outcome(
            outcomes.outcome(
                item.message, messages_pb2.OUTCOME_KIND_FAILED, occurred_at=work.now, reason=reason, permanent=permanent
            )
        )
        log.warning("send.failed", reason=failure.reason, attempt=item.attempt, permanent=permanent, **item.ids)
        return None
