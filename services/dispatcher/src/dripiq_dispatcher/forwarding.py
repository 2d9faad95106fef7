"""Replies that reach a person: a contact's reply to one of our emails is forwarded, once, to
the mailbox behind the identity that sent the email (its forward_to), else to the tenant's
catch-all; with neither it is recorded as unroutable and nothing is sent.

Exactly once, as for sends (sending.py): SendGrid has no idempotency key, so the
`reply_forwards` row, one per (tenant, inbound reply), is the guard. It is locked and moved to
`sending` in a committed transaction before the provider call; a delivery that finds `sending`
knows a call may have gone out and parks the forward as `unknown` instead of calling again.
A transient failure puts the row back to `queued` and raises RetryLater, so JetStream
redelivers the command after its backoff (up to `max_attempts` calls, then `failed`); a
permanent one is `failed` with SendGrid's reason. A forward publishes no fact, so it needs no
outbox; it takes no send budget (one mail per human reply, to our own user).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as pb
from dripiq.dispatcher.v1 import messages_pb2
from dripiq_common import validation
from dripiq_common.bus.contract import Subjects, decode
from dripiq_common.clock import Clock
from dripiq_common.errors import InvalidArgument, PermanentMessageError
from dripiq_dispatcher import convert, domain, failures, forward_mail, metrics, repository
from dripiq_dispatcher.accounts import AccountUnusable, ProviderAccount, ProviderAccounts
from dripiq_dispatcher.failures import FailureKind, RetryLater, SendFailure
from dripiq_dispatcher.forward_mail import ForwardStatus, Reply
from dripiq_dispatcher.provider import MailSender

log = structlog.get_logger(__name__)


@dataclass
class ReplyForwardingSettings:
    """The tenant's catch-all: where replies go when the answered identity has no forward_to."""

    engine: AsyncEngine
    clock: Clock

    async def set(self, given: pb.ReplyForwarding) -> pb.ReplyForwarding:
        """An empty catch_all clears it."""
        tenant = validation.tenant_id(given.tenant_id, "reply_forwarding.tenant_id")
        catch_all = domain.optional_address(given.catch_all, "reply_forwarding.catch_all")
        async with self.engine.begin() as conn:
            await repository.forwards.set_catch_all(conn, tenant_id=tenant, catch_all=catch_all, now=self.clock.now())
        log.info("reply_forwarding.set", tenant_id=tenant, has_catch_all=bool(catch_all))
        return pb.ReplyForwarding(tenant_id=tenant, catch_all=catch_all)

    async def get(self, tenant_id: str) -> pb.ReplyForwarding:
        """A tenant that never set one reads as an empty catch_all."""
        tenant = validation.tenant_id(tenant_id)
        async with self.engine.connect() as conn:
            catch_all = await repository.forwards.get_catch_all(conn, tenant_id=tenant)
        return pb.ReplyForwarding(tenant_id=tenant, catch_all=catch_all)


@dataclass(frozen=True)
class _Call:
    """A forward admitted to one provider call."""

    attempt: int
    mail: dict[str, Any]
    # The identity's own SendGrid account: the forward comes from its address.
    account: ProviderAccount | None = None


@dataclass
class ReplyForwarder:
    engine: AsyncEngine
    clock: Clock
    sender: MailSender
    # Provider calls per forward (transient failures only) before it is failed; below the
    # consumer's max_deliver, so the row is settled before JetStream dead-letters the command.
    max_attempts: int
    accounts: ProviderAccounts = field(default_factory=ProviderAccounts)

    async def handle(self, data: bytes, *, subject: str | None = None) -> None:
        """One ForwardReplyCommand from the events service. Safe to redeliver at any point.

        `subject` is the one it was delivered on: a payload whose tenant is not the subject's
        is never trusted (dead-lettered). A command without a tenant, on the by-message subject,
        takes the tenant of the message it names; naming a message of no tenant, it is dropped
        (there is nowhere to record it). Raises RetryLater after a transient failure.
        """
        reply = await self._read(data, subject)
        if reply is None:
            return
        ids = {"tenant_id": reply.tenant_id, "inbound_id": reply.inbound_id, "message_id": reply.message_id}
        call = await self._admit(reply, ids)
        if call is None:
            return
        started = time.perf_counter()
        provider_message_id: str | None = None
        failure: SendFailure | None = None
        try:
            provider_message_id = await self.sender.send(call.mail, call.account)
        except Exception as exc:
            failure = failures.classify_failure(exc)
        result = "accepted" if failure is None else failure.kind.value
        metrics.PROVIDER_CALL_SECONDS.labels(result=result).observe(time.perf_counter() - started)
        await self._settle(reply, call, provider_message_id, failure, ids)

    async def _admit(self, reply: Reply, ids: dict[str, str]) -> _Call | None:
        """Record the command and decide, under the row's lock, whether it calls the provider:
        then the row is `sending` when this commits. Otherwise it is settled here or was a
        redelivery with nothing left to do."""
        now = self.clock.now()
        key = {"tenant_id": reply.tenant_id, "inbound_id": reply.inbound_id}
        result: str | None = None
        call: _Call | None = None
        async with self.engine.begin() as conn:
            await repository.forwards.insert_forward(conn, **key, message_id=reply.message_id, now=now)
            row = await repository.forwards.lock_forward(conn, **key)
            status = ForwardStatus(row.status)
            if status in forward_mail.FORWARD_SETTLED:
                log.info("forward.redelivered_settled", status=str(status), **ids)
                return None
            if status == ForwardStatus.SENDING:
                # A delivery crashed or timed out during the provider call: it may have gone out.
                reason = "redelivered while a provider call was under way; it may have been forwarded"
                await repository.forwards.update_forward(
                    conn, **key, now=now, status=ForwardStatus.UNKNOWN.value, last_error=reason
                )
                log.warning("forward.found_sending_marked_unknown", attempt_count=row.attempt_count, **ids)
                result = "unknown"
            elif (problem := forward_mail.reply_problem(reply)) is not None:
                await repository.forwards.update_forward(
                    conn, **key, now=now, status=ForwardStatus.FAILED.value, last_error=problem
                )
                log.warning("forward.invalid", reason=problem, **ids)
                result = "failed"
            else:
                message, identity, catch_all = await repository.forwards.forward_parts(
                    conn, tenant_id=reply.tenant_id, message_id=reply.message_id
                )
                route = forward_mail.forward_route(
                    message_id=reply.message_id, message=message, identity=identity, catch_all=catch_all
                )
                account = self._account(reply, route) if not isinstance(route, str) else None
                if isinstance(route, str):
                    await repository.forwards.update_forward(
                        conn, **key, now=now, status=ForwardStatus.UNROUTABLE.value, last_error=route
                    )
                    log.info("forward.unroutable", reason=route, **ids)
                    result = "unroutable"
                elif isinstance(account, str):
                    # Ours to fix (the identity's provider account), not the reply's.
                    await repository.forwards.update_forward(
                        conn, **key, now=now, status=ForwardStatus.FAILED.value, last_error=account
                    )
                    log.warning("forward.account_unusable", reason=account, **ids)
                    result = "failed"
                else:
                    assert message is not None
                    call = _Call(row.attempt_count + 1, forward_mail.build_forward(reply, message, route), account)
                    await repository.forwards.update_forward(
                        conn,
                        **key,
                        now=now,
                        status=ForwardStatus.SENDING.value,
                        attempt_count=call.attempt,
                        sender_identity_id=route.identity.id,
                        from_email=route.identity.from_email,
                        to_email=route.to_email,
                        last_error=None,
                    )
        if result is not None:
            metrics.REPLY_FORWARDS.labels(result=result).inc()
        return call

    def _account(self, reply: Reply, route: forward_mail.ForwardRoute) -> ProviderAccount | str:
        """The identity's SendGrid account, or why it cannot be used."""
        try:
            return self.accounts.account(reply.tenant_id, route.identity.provider_config_id)
        except AccountUnusable as exc:
            return failures.truncate(str(exc))

    async def _settle(
        self,
        reply: Reply,
        call: _Call,
        provider_message_id: str | None,
        failure: SendFailure | None,
        ids: dict[str, str],
    ) -> None:
        """Record what the call came to, under the row's lock again: a row a redelivery moved on
        while the call ran is settled only where the answer still applies."""
        now = self.clock.now()
        key = {"tenant_id": reply.tenant_id, "inbound_id": reply.inbound_id}
        result: str | None = None
        retry: RetryLater | None = None
        async with self.engine.begin() as conn:
            status = ForwardStatus((await repository.forwards.lock_forward(conn, **key)).status)
            values: dict[str, Any] = {}
            if failure is None:
                if status in forward_mail.FORWARD_IN_FLIGHT:
                    values = {
                        "status": ForwardStatus.SENT.value,
                        "provider": domain.PROVIDER,
                        "provider_message_id": provider_message_id,
                        "sent_at": now,
                        "last_error": None,
                    }
                    result = "sent"
                    log.info("forward.sent", provider_message_id=provider_message_id, attempt=call.attempt, **ids)
                else:
                    log.error("forward.accepted_but_row_moved_on", provider_message_id=provider_message_id, **ids)
            elif failure.kind == FailureKind.UNKNOWN:
                if status == ForwardStatus.SENDING:
                    values = {"status": ForwardStatus.UNKNOWN.value, "last_error": failure.reason}
                    result = "unknown"
                    log.error("forward.outcome_unknown", reason=failure.reason, attempt=call.attempt, **ids)
            elif (
                failure.kind == FailureKind.RETRY
                and status == ForwardStatus.SENDING
                and failures.retries_left(call.attempt, self.max_attempts)
            ):
                # `queued` again by the time JetStream redelivers the command. A provider rate
                # limit's reset time is not waited for: forwards are few, the backoff serves.
                values = {"status": ForwardStatus.QUEUED.value, "last_error": failure.reason}
                result = "retried"
                retry = RetryLater(failure.reason)
                log.warning("forward.retrying", reason=failure.reason, attempt=call.attempt, **ids)
            elif status in forward_mail.FORWARD_IN_FLIGHT:
                reason = failure.reason
                if failure.kind == FailureKind.RETRY and status == ForwardStatus.SENDING:
                    reason = failures.truncate(f"gave up after {call.attempt} attempts: {reason}")
                elif failure.kind == FailureKind.RETRY:
                    # A redelivery parked it as unknown during the call; the answer says nothing
                    # was sent, and no delivery is left to try again.
                    reason = failures.truncate(f"not forwarded: {reason}")
                values = {"status": ForwardStatus.FAILED.value, "last_error": reason}
                result = "failed"
                log.warning("forward.failed", reason=failure.reason, attempt=call.attempt, **ids)
            else:
                log.warning("forward.failure_after_row_moved_on", reason=failure.reason, **ids)
            if values:
                await repository.forwards.update_forward(conn, **key, now=now, **values)
        if result is not None:
            metrics.REPLY_FORWARDS.labels(result=result).inc()
        if retry is not None:
            raise retry

    async def _read(self, data: bytes, subject: str | None) -> Reply | None:
        """The command as a Reply, its tenant found from its message when it names none; None
        when no tenant has that message."""
        command = decode(messages_pb2.ForwardReplyCommand, data)
        if command.tenant_id or subject not in (None, Subjects.DISPATCHER_FORWARD_BY_MESSAGE):
            return _reply(command, subject)
        async with self.engine.connect() as conn:
            tenant = await repository.messages.message_tenant(conn, message_id=command.message_id)
        if tenant is None:
            log.warning("forward.message_of_no_tenant", inbound_id=command.inbound_id, message_id=command.message_id)
            metrics.REPLY_FORWARDS.labels(result="unroutable").inc()
            return None
        command.tenant_id = tenant
        return _reply(command, Subjects.dispatcher_forward(tenant) if subject else None)


def _reply(command: messages_pb2.ForwardReplyCommand, subject: str | None) -> Reply:
    """The command as a Reply, or PermanentMessageError for one that can never be recorded."""
    try:
        reply = convert.reply_to_forward(command)
    except InvalidArgument as exc:
        raise PermanentMessageError(f"unrecordable ForwardReplyCommand: {exc}") from None
    if subject is not None and subject != Subjects.dispatcher_forward(reply.tenant_id):
        raise PermanentMessageError(
            f"ForwardReplyCommand for tenant {reply.tenant_id!r} arrived on {subject!r}: "
            "a payload's tenant is trusted only on its own tenant's subject"
        )
    return reply
