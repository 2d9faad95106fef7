"""Dispatcher operations shared by the gRPC API and the JetStream consumers.

Sending exactly once: SendGrid has no idempotency key, so the row is the guard. It is locked
and moved to `sending` in one committed transaction before the provider call; a delivery
that finds `sending` knows a call may have gone out and parks the message as `unknown`
instead of calling again. Outcomes go to the outbox in the transaction that settles the row.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as pb
from dripiq.dispatcher.v1 import messages_pb2
from dripiq.events.v1 import messages_pb2 as events_pb2
from dripiq.scheduler.v1 import commands_pb2 as scheduler_commands_pb2
from dripiq.scheduler.v1 import scheduler_service_pb2 as scheduler_pb2
from dripiq_common import paging, validation
from dripiq_common.clock import Clock
from dripiq_common.errors import AlreadyExists, InvalidArgument, NotFound, PermanentMessageError
from dripiq_common.jetstream import Subjects, decode
from dripiq_common.outbox import OutboxMessage, enqueue
from dripiq_common.tokens import TokenSigner
from dripiq_dispatcher import domain, repository
from dripiq_dispatcher.domain import FailureKind, NewMessage, SendFailure, Status
from dripiq_dispatcher.models import outbox
from dripiq_dispatcher.provider import MailSender

log = structlog.get_logger(__name__)


class RetryLater(Exception):
    """A transient provider failure: the worker naks and JetStream redelivers after its backoff."""


@dataclass(frozen=True)
class _Attempt:
    mail: dict[str, Any]
    number: int
    rfc_message_id: str


@dataclass
class Dispatcher:
    engine: AsyncEngine
    clock: Clock
    sender: MailSender
    signer: TokenSigner
    mail_settings: domain.MailSettings
    max_attempts: int
    # Wakes the outbox relay after a commit that wrote outcomes, instead of waiting its poll.
    on_outbox: Callable[[], None] = field(default=lambda: None)

    async def handle_send(self, data: bytes) -> None:
        """A SendMessageCommand from the planner. Safe to redeliver at any point."""
        command = decode(messages_pb2.SendMessageCommand, data)
        try:
            message = domain.new_message(command)
        except InvalidArgument as exc:
            raise PermanentMessageError(f"unrecordable SendMessageCommand: {exc}") from exc
        with structlog.contextvars.bound_contextvars(
            tenant_id=message.tenant_id,
            campaign_id=message.campaign_id,
            message_id=message.message_id,
        ):
            await self.send(message, data)

    async def send(self, message: NewMessage, command: bytes | None = None) -> None:
        """`command` is the SendMessageCommand as delivered; a deferral schedules it to come
        back. Without it, the command is rebuilt from the message."""
        async with self.engine.begin() as conn:
            step = await self._prepare(conn, message, command)
        if not isinstance(step, _Attempt):
            if step is not None:
                self.on_outbox()
            return
        try:
            provider_message_id = await self.sender.send(step.mail)
        except Exception as exc:
            await self._record_failure(message, step, domain.classify_failure(exc), command)
            return
        await self._record_sent(message, step, provider_message_id)

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
        key = paging.decode_token(request.page_token, arity=2)
        after = (datetime.fromisoformat(key[0]), key[1]) if key else None
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

    async def _prepare(
        self, conn: AsyncConnection, message: NewMessage, command: bytes | None = None
    ) -> _Attempt | Status | None:
        """Record the message and decide, under its row lock, whether to call the provider.

        Returns the attempt to make, the status it settled the message in (an outcome is in
        the outbox), or None when a redelivery had nothing left to do.
        """
        now = self.clock.now()
        await repository.insert_message(conn, message=message, now=now)
        row = await repository.lock_message(conn, tenant_id=message.tenant_id, message_id=message.message_id)
        if row is None:
            raise PermanentMessageError("message id is already used by another tenant")
        status = Status(row.status)
        if status in domain.SETTLED:
            log.info("send.redelivered_settled", status=str(status))
            return None
        if status == Status.SENDING:
            # A delivery crashed or timed out during the provider call: it may have gone out.
            await repository.set_status(
                conn,
                message_id=message.message_id,
                expected=[Status.SENDING],
                status=Status.UNKNOWN,
                now=now,
                last_error="redelivered while a provider call was under way; a webhook settles it",
            )
            log.warning("send.found_sending_marked_unknown", attempt_count=row.attempt_count)
            return None

        problem = domain.content_problem(message)
        if problem is not None:
            return await self._settle(conn, message, Status.FAILED, problem)
        suppressed = await repository.suppression_for(
            conn, tenant_id=message.tenant_id, address=domain.normalize_address(message.to_email)
        )
        if suppressed is not None:
            return await self._settle(conn, message, Status.SUPPRESSED, f"address suppressed: {suppressed}")
        identity = domain.sendable_identity(
            await repository.find_identity(conn, tenant_id=message.tenant_id, identity_id=message.sender_identity_id),
            message.sender_identity_id,
        )
        if isinstance(identity, str):
            return await self._settle(conn, message, Status.FAILED, identity)
        full = await self._admit(conn, message, identity, now)
        if full is not None:
            return await self._defer(conn, message, command, full, now)

        mail = domain.build_mail(message, identity, signer=self.signer, settings=self.mail_settings)
        rfc_message_id = domain.rfc_message_id(message, self.mail_settings)
        number = await repository.start_sending(
            conn,
            message_id=message.message_id,
            from_email=identity.from_email,
            rfc_message_id=rfc_message_id,
            now=now,
        )
        return _Attempt(mail=mail, number=number, rfc_message_id=rfc_message_id)

    async def _admit(
        self, conn: AsyncConnection, message: NewMessage, identity: domain.Identity, now: datetime
    ) -> domain.Budget | None:
        """Take one send from every budget the message falls under, or from none: the first
        full budget is returned and what was taken before it is given back (a savepoint)."""
        tenant_limits = await repository.get_rate_limit(conn, tenant_id=message.tenant_id, channel=message.channel)
        needed = domain.budgets(
            tenant_id=message.tenant_id, channel=message.channel, tenant_limits=tenant_limits, identity=identity
        )
        if not needed:
            return None
        savepoint = await conn.begin_nested()
        for budget in needed:
            taken = await repository.consume_budget(
                conn,
                scope=budget.scope,
                window=budget.window,
                window_start=domain.window_start(budget.window, now),
                limit=budget.limit,
            )
            if not taken:
                await savepoint.rollback()
                return budget
        await savepoint.commit()
        return None

    async def _defer(
        self, conn: AsyncConnection, message: NewMessage, command: bytes | None, full: domain.Budget, now: datetime
    ) -> Status:
        """Leave the message `queued` and have the scheduler send its command again once the
        full window has passed: nothing waits in memory and the delivery is acked."""
        until = domain.window_end(full.window, now)
        reason = f"deferred: {full.scope} {full.window} budget spent until {until.isoformat()}"
        await repository.set_status(
            conn,
            message_id=message.message_id,
            expected=[Status.QUEUED],
            status=Status.QUEUED,
            now=now,
            last_error=reason,
        )
        fire_at = domain.defer_until(full.window, now, message.message_id)
        await self._come_back(conn, message, command, fire_at=fire_at, reason=reason, now=now)
        log.info("send.deferred", scope=full.scope, window=full.window, until=until.isoformat())
        return Status.QUEUED

    async def _come_back(
        self,
        conn: AsyncConnection,
        message: NewMessage,
        command: bytes | None,
        *,
        fire_at: datetime,
        reason: str,
        now: datetime,
    ) -> None:
        """A DEFERRED outcome, and a scheduler timer that delivers the send command again."""
        await self._outcome(
            conn, domain.outcome(message, messages_pb2.OUTCOME_KIND_DEFERRED, occurred_at=now, reason=reason)
        )
        timer = scheduler_pb2.Timer(
            tenant_id=message.tenant_id,
            key=f"{message.message_id}:deferred",
            group_key=f"message:{message.message_id}",
            kind="send_deferred",
            target_subject=Subjects.dispatcher_send(message.tenant_id),
            payload=command if command is not None else domain.send_command(message).SerializeToString(),
        )
        timer.fire_at.FromDatetime(fire_at)
        await enqueue(
            conn,
            outbox,
            [
                OutboxMessage(
                    Subjects.scheduler_command(message.tenant_id),
                    scheduler_commands_pb2.TimerCommand(tenant_id=message.tenant_id, schedule=timer),
                )
            ],
        )

    async def set_rate_limit(self, given: pb.RateLimit) -> pb.RateLimit:
        tenant = validation.tenant_id(given.tenant_id, "rate_limit.tenant_id")
        channel = _rate_limit_channel(given.channel, "rate_limit.channel")
        limits: dict[str, int] = {}
        for window in domain.WINDOWS:
            value = getattr(given, f"per_{window}")
            if value < 0:
                raise InvalidArgument(f"rate_limit.per_{window}", "must not be negative (0 means no limit)")
            limits[window] = value
        async with self.engine.begin() as conn:
            await repository.set_rate_limit(
                conn, tenant_id=tenant, channel=channel, limits=limits, now=self.clock.now()
            )
        log.info("rate_limit.set", tenant_id=tenant, channel=channel, **limits)
        return _rate_limit_proto(tenant, channel, limits)

    async def get_rate_limit(self, tenant_id: str, channel: str) -> pb.RateLimit:
        """An unset limit reads as zeros (no limit)."""
        tenant = validation.tenant_id(tenant_id)
        checked = _rate_limit_channel(channel, "channel")
        async with self.engine.connect() as conn:
            limits = await repository.get_rate_limit(conn, tenant_id=tenant, channel=checked)
        return _rate_limit_proto(tenant, checked, limits)

    async def _settle(self, conn: AsyncConnection, message: NewMessage, status: Status, reason: str) -> Status:
        """Fail or suppress a queued message before any provider call, with its outcome."""
        now = self.clock.now()
        await repository.set_status(
            conn,
            message_id=message.message_id,
            expected=[Status.QUEUED],
            status=status,
            now=now,
            last_error=reason,
        )
        kind = messages_pb2.OUTCOME_KIND_SUPPRESSED if status == Status.SUPPRESSED else messages_pb2.OUTCOME_KIND_FAILED
        await self._outcome(conn, domain.outcome(message, kind, occurred_at=now, reason=reason))
        log.info("send.settled_without_sending", status=str(status), reason=reason)
        return status

    async def _record_sent(self, message: NewMessage, attempt: _Attempt, provider_message_id: str | None) -> None:
        now = self.clock.now()
        async with self.engine.begin() as conn:
            moved = await repository.set_status(
                conn,
                message_id=message.message_id,
                expected=domain.IN_FLIGHT,
                status=Status.SENT,
                now=now,
                provider=domain.PROVIDER,
                provider_message_id=provider_message_id,
                sent_at=now,
                last_error=None,
            )
            if moved:
                await self._outcome(
                    conn,
                    domain.outcome(
                        message,
                        messages_pb2.OUTCOME_KIND_SENT,
                        occurred_at=now,
                        provider_message_id=provider_message_id or "",
                        rfc_message_id=attempt.rfc_message_id,
                    ),
                )
        if not moved:
            log.error("send.accepted_but_row_moved_on", provider_message_id=provider_message_id)
            return
        self.on_outbox()
        log.info("send.sent", provider_message_id=provider_message_id, attempt=attempt.number)

    async def _record_failure(
        self, message: NewMessage, attempt: _Attempt, failure: SendFailure, command: bytes | None = None
    ) -> None:
        now = self.clock.now()
        retry = failure.kind == FailureKind.RETRY and domain.retries_left(attempt.number, self.max_attempts)
        async with self.engine.begin() as conn:
            if failure.kind == FailureKind.UNKNOWN:
                await repository.set_status(
                    conn,
                    message_id=message.message_id,
                    expected=[Status.SENDING],
                    status=Status.UNKNOWN,
                    now=now,
                    last_error=failure.reason,
                )
                log.error("send.outcome_unknown", reason=failure.reason, attempt=attempt.number)
                return
            if retry:
                # Only from `sending`: a row a redelivery parked as `unknown` has no delivery left
                # to retry it, and `unknown` is where undecided messages wait to be settled.
                moved = await repository.set_status(
                    conn,
                    message_id=message.message_id,
                    expected=[Status.SENDING],
                    status=Status.QUEUED,
                    now=now,
                    last_error=failure.reason,
                )
                if moved and failure.retry_at is not None and failure.retry_at > now:
                    # The provider said when its budget returns: come back then, through the
                    # scheduler, instead of spending deliveries on the consumer's backoff.
                    reason = f"deferred: provider rate limit until {failure.retry_at.isoformat()}"
                    fire_at = failure.retry_at + domain.jitter(message.message_id, timedelta(seconds=30))
                    await self._come_back(conn, message, command, fire_at=fire_at, reason=reason, now=now)
                    retry = False
            else:
                reason = failure.reason
                if failure.kind == FailureKind.RETRY:
                    reason = domain.truncate(f"gave up after {attempt.number} attempts: {reason}")
                moved = await repository.set_status(
                    conn,
                    message_id=message.message_id,
                    expected=domain.IN_FLIGHT,
                    status=Status.FAILED,
                    now=now,
                    last_error=reason,
                )
                if moved:
                    await self._outcome(
                        conn,
                        domain.outcome(
                            message,
                            messages_pb2.OUTCOME_KIND_FAILED,
                            occurred_at=now,
                            reason=reason,
                        ),
                    )
        if not moved:
            log.warning("send.failure_after_row_moved_on", reason=failure.reason)
            return
        if retry:
            # Raised after the commit: the row is `queued` again when the redelivery comes.
            log.warning("send.retrying", reason=failure.reason, attempt=attempt.number)
            raise RetryLater(failure.reason)
        self.on_outbox()
        if (
            failure.retry_at is not None
            and failure.kind == FailureKind.RETRY
            and domain.retries_left(attempt.number, self.max_attempts)
        ):
            log.warning("send.deferred_by_provider", until=failure.retry_at.isoformat(), attempt=attempt.number)
            return
        log.warning("send.failed", reason=failure.reason, attempt=attempt.number)

    async def settle_unknown(self, data: bytes) -> None:
        """An EngagementEvent fact: any provider event for a message proves the provider took it: an `unknown` send
        (the call may or may not have gone out) becomes `sent`, and the planner hears so."""
        event = decode(events_pb2.EngagementEvent, data)
        if not event.message_id or not validation.TENANT.match(event.tenant_id):
            return
        async with self.engine.begin() as conn:
            row = await repository.lock_unknown(conn, tenant_id=event.tenant_id, message_id=event.message_id)
            if row is None:
                return
            sent_at = event.occurred_at.ToDatetime(tzinfo=UTC) if event.HasField("occurred_at") else self.clock.now()
            provider_message_id = event.provider_message_id or row.provider_message_id or ""
            await repository.set_status(
                conn,
                message_id=row.message_id,
                expected=[Status.UNKNOWN],
                status=Status.SENT,
                now=self.clock.now(),
                provider=domain.PROVIDER,
                provider_message_id=provider_message_id or None,
                sent_at=sent_at,
                last_error=None,
            )
            fact = domain.outcome_for_row(
                row, messages_pb2.OUTCOME_KIND_SENT, occurred_at=sent_at, provider_message_id=provider_message_id
            )
            await self._outcome(conn, fact)
        self.on_outbox()
        log.info("send.unknown_settled_by_event", message_id=row.message_id, event_type=event.event_type)

    async def fail_overdue_unknown(self, *, deadline_seconds: float, limit: int = 1000) -> int:
        """Messages no provider event proved sent within the deadline: failed, for a person to
        review (the provider may still have them; sending again could send twice)."""
        now = self.clock.now()
        reason = f"no provider event proved this send within {deadline_seconds:g} s; review before resending"
        async with self.engine.begin() as conn:
            rows = await repository.fail_overdue_unknown(
                conn, older_than=now - timedelta(seconds=deadline_seconds), now=now, reason=reason, limit=limit
            )
            for row in rows:
                await self._outcome(
                    conn, domain.outcome_for_row(row, messages_pb2.OUTCOME_KIND_FAILED, occurred_at=now, reason=reason)
                )
        if rows:
            self.on_outbox()
            log.warning("send.unknown_failed_after_deadline", count=len(rows))
        return len(rows)

    async def _outcome(self, conn: AsyncConnection, fact: messages_pb2.MessageOutcome) -> None:
        await enqueue(conn, outbox, [OutboxMessage(Subjects.message_outcome(fact.tenant_id), fact)])


def _rate_limit_channel(value: str, field: str) -> str:
    channel = value.strip().lower()
    if channel not in domain.SUPPORTED_CHANNELS:
        raise InvalidArgument(field, f"must be one of {', '.join(sorted(domain.SUPPORTED_CHANNELS))}")
    return channel


def _rate_limit_proto(tenant_id: str, channel: str, limits: dict[str, int]) -> pb.RateLimit:
    return pb.RateLimit(
        tenant_id=tenant_id,
        channel=channel,
        per_minute=limits["minute"],
        per_hour=limits["hour"],
        per_day=limits["day"],
    )


@dataclass
class SenderIdentities:
    engine: AsyncEngine
    clock: Clock

    async def create(self, request: pb.CreateSenderIdentityRequest) -> pb.SenderIdentity:
        tenant = validation.tenant_id(request.tenant_id)
        # Stored lower-cased so "Sales@x" and "sales@x" are one identity per tenant.
        from_email = domain.normalize_address(validation.email(request.from_email.strip(), "from_email"))
        from_name = _optional(request.from_name, "from_name")
        provider_config_id = _provider_config_id(request.provider_config_id, "provider_config_id")
        async with self.engine.begin() as conn:
            row, created = await repository.create_identity(
                conn,
                identity_id=str(uuid.uuid4()),
                tenant_id=tenant,
                from_email=from_email,
                from_name=from_name,
                provider_config_id=provider_config_id,
                now=self.clock.now(),
            )
        if not created:
            raise AlreadyExists(f"sender identity {row.id} already has from_email {from_email}")
        return domain.identity_to_proto(row)

    async def get(self, tenant_id: str, identity_id: str) -> pb.SenderIdentity:
        tenant = validation.tenant_id(tenant_id)
        validation.required(identity_id, "sender_identity_id")
        async with self.engine.connect() as conn:
            row = await repository.get_identity(conn, tenant_id=tenant, identity_id=identity_id)
        return _identity_found(row, identity_id)

    async def verify(self, tenant_id: str, identity_id: str) -> pb.SenderIdentity:
        tenant = validation.tenant_id(tenant_id)
        validation.required(identity_id, "sender_identity_id")
        async with self.engine.begin() as conn:
            row = await repository.verify_identity(
                conn, tenant_id=tenant, identity_id=identity_id, now=self.clock.now()
            )
        return _identity_found(row, identity_id)

    async def list_page(self, request: pb.ListSenderIdentitiesRequest) -> pb.ListSenderIdentitiesResponse:
        tenant = validation.tenant_id(request.tenant_id)
        size = paging.page_size(request.page_size)
        after = _page_key(request.page_token, str)
        async with self.engine.connect() as conn:
            rows = await repository.list_identities(conn, tenant_id=tenant, after=after, limit=size + 1)
        page = rows[:size]
        token = paging.encode_token(page[-1].created_at.isoformat(), page[-1].id) if len(rows) > size else ""
        return pb.ListSenderIdentitiesResponse(
            sender_identities=[domain.identity_to_proto(r) for r in page], next_page_token=token
        )

    async def update(self, request: pb.UpdateSenderIdentityRequest) -> pb.SenderIdentity:
        """Changes from_name and/or provider_config_id; from_email never changes."""
        given = request.sender_identity
        tenant = validation.tenant_id(given.tenant_id, "sender_identity.tenant_id")
        identity_id = validation.required(given.sender_identity_id, "sender_identity.sender_identity_id")
        paths = set(request.update_mask.paths) or set(DEFAULT_IDENTITY_FIELDS)
        unknown = paths - set(UPDATABLE_IDENTITY_FIELDS)
        if unknown:
            raise InvalidArgument("update_mask", f"cannot update {', '.join(sorted(unknown))}")
        values: dict[str, str | int] = {}
        if "from_name" in paths:
            values["from_name"] = _optional(given.from_name, "sender_identity.from_name")
        if "provider_config_id" in paths:
            values["provider_config_id"] = _provider_config_id(
                given.provider_config_id, "sender_identity.provider_config_id"
            )
        for cap in ("per_minute", "per_day"):
            if cap in paths:
                value = getattr(given, cap)
                if value < 0:
                    raise InvalidArgument(f"sender_identity.{cap}", "must not be negative (0 means no cap)")
                values[cap] = value
        async with self.engine.begin() as conn:
            row = await repository.update_identity(
                conn, tenant_id=tenant, identity_id=identity_id, values=values, now=self.clock.now()
            )
        return _identity_found(row, identity_id)

    async def delete(self, tenant_id: str, identity_id: str) -> None:
        """Messages sent with the identity keep its id (there is no foreign key)."""
        tenant = validation.tenant_id(tenant_id)
        validation.required(identity_id, "sender_identity_id")
        async with self.engine.begin() as conn:
            deleted = await repository.delete_identity(conn, tenant_id=tenant, identity_id=identity_id)
        if not deleted:
            raise NotFound(f"sender identity {identity_id!r} not found")


def _identity_found(row: Any, identity_id: str) -> pb.SenderIdentity:
    """The identity as answered, or NOT_FOUND (also for another tenant's id)."""
    if row is None:
        raise NotFound(f"sender identity {identity_id!r} not found")
    return domain.identity_to_proto(row)


# An empty update_mask updates the fields as before the caps existed; caps are set by naming them.
DEFAULT_IDENTITY_FIELDS = ("from_name", "provider_config_id")
UPDATABLE_IDENTITY_FIELDS = (*DEFAULT_IDENTITY_FIELDS, "per_minute", "per_day")
MAX_IMPORT_SUPPRESSIONS = 10_000
# SendGrid API keys start with this; provider_config_id must name a secret, never hold a key.
_SENDGRID_KEY_PREFIX = "SG."


def _provider_config_id(value: str, field: str) -> str:
    if value.strip().startswith(_SENDGRID_KEY_PREFIX):
        # The value is not echoed: it may be a live key.
        raise InvalidArgument(field, "must name the secret holding the provider key, not be the key itself")
    return _optional(value, field)


def _page_key(token: str, id_type: type) -> tuple[datetime, Any] | None:
    """The (created_at, id) key a page token stands for; None for the first page."""
    key = paging.decode_token(token, arity=2)
    if key is None:
        return None
    try:
        if not isinstance(key[1], id_type) or isinstance(key[1], bool):
            raise TypeError
        return datetime.fromisoformat(key[0]), key[1]
    except (TypeError, ValueError):
        raise InvalidArgument("page_token", "is not a token from a previous response") from None


def _optional(value: str, field: str, *, max_length: int = 256) -> str:
    if len(value) > max_length:
        raise InvalidArgument(field, f"must be at most {max_length} characters")
    return value


@dataclass
class Suppressions:
    engine: AsyncEngine
    clock: Clock

    async def add(self, tenant_id: str, address: str, reason: str) -> pb.Suppression:
        tenant = validation.tenant_id(tenant_id)
        normalized = domain.normalize_address(validation.email(address.strip(), "address"))
        why = validation.required(reason.strip().lower() or domain.MANUAL_REASON, "reason", max_length=64)
        async with self.engine.begin() as conn:
            row = await repository.add_suppression(
                conn,
                tenant_id=tenant,
                address=normalized,
                reason=why,
                source="api",
                now=self.clock.now(),
            )
        return domain.suppression_to_proto(row)

    async def check(self, tenant_id: str, addresses: Sequence[str]) -> list[pb.Suppression]:
        """Every suppression of the given addresses, named as the caller spelled them."""
        tenant = validation.tenant_id(tenant_id)
        if len(addresses) > domain.MAX_CHECK_ADDRESSES:
            raise InvalidArgument("addresses", f"must hold at most {domain.MAX_CHECK_ADDRESSES} addresses")
        spelled: dict[str, list[str]] = {}
        for index, address in enumerate(addresses):
            validation.required(address, f"addresses[{index}]", max_length=320)
            spellings = spelled.setdefault(domain.normalize_address(address), [])
            if address not in spellings:
                spellings.append(address)
        if not spelled:
            return []
        async with self.engine.connect() as conn:
            rows = await repository.find_suppressions(conn, tenant_id=tenant, addresses=list(spelled))
        return [domain.suppression_to_proto(row, spelling) for row in rows for spelling in spelled[row.address]]

    async def remove(self, tenant_id: str, address: str, reason: str) -> int:
        """Removes the address's suppressions of `reason`, or all of them when it is empty."""
        tenant = validation.tenant_id(tenant_id)
        normalized = domain.normalize_address(validation.email(address.strip(), "address"))
        why = reason.strip().lower() or None
        async with self.engine.begin() as conn:
            removed = await repository.remove_suppressions(conn, tenant_id=tenant, address=normalized, reason=why)
        log.info("suppression.removed", tenant_id=tenant, reason=why, removed=removed)
        return removed

    async def list_page(self, request: pb.ListSuppressionsRequest) -> pb.ListSuppressionsResponse:
        tenant = validation.tenant_id(request.tenant_id)
        size = paging.page_size(request.page_size)
        after = _page_key(request.page_token, int)
        reason = request.reason.strip().lower() or None
        async with self.engine.connect() as conn:
            rows = await repository.list_suppressions(
                conn, tenant_id=tenant, reason=reason, after=after, limit=size + 1
            )
        page = rows[:size]
        token = paging.encode_token(page[-1].created_at.isoformat(), page[-1].id) if len(rows) > size else ""
        return pb.ListSuppressionsResponse(
            suppressions=[domain.suppression_to_proto(r) for r in page], next_page_token=token
        )

    async def import_many(self, request: pb.ImportSuppressionsRequest) -> pb.ImportSuppressionsResponse:
        """Valid items go in with one statement; invalid ones are reported and skipped."""
        tenant = validation.tenant_id(request.tenant_id)
        if len(request.suppressions) > MAX_IMPORT_SUPPRESSIONS:
            raise InvalidArgument("suppressions", f"must hold at most {MAX_IMPORT_SUPPRESSIONS:,} items")
        items: dict[tuple[str, str], None] = {}
        rejected: list[str] = []
        for index, item in enumerate(request.suppressions):
            if item.tenant_id and item.tenant_id != tenant:
                raise InvalidArgument(f"suppressions[{index}].tenant_id", "must be empty or the request's tenant_id")
            try:
                address = domain.normalize_address(
                    validation.email(item.address.strip(), f"suppressions[{index}].address")
                )
                reason = validation.required(
                    item.reason.strip().lower() or domain.MANUAL_REASON, f"suppressions[{index}].reason", max_length=64
                )
            except InvalidArgument as exc:
                rejected.append(str(exc))
                continue
            items[(address, reason)] = None
        async with self.engine.begin() as conn:
            imported = await repository.import_suppressions(
                conn, tenant_id=tenant, items=list(items), source="import", now=self.clock.now()
            )
        log.info("suppression.imported", tenant_id=tenant, imported=imported, rejected=len(rejected))
        return pb.ImportSuppressionsResponse(imported_count=imported, rejected=rejected)

    async def handle_engagement(self, data: bytes) -> None:
        """An EngagementEvent fact: unsubscribes, spam reports and hard bounces suppress the
        address for the tenant. Any other event is acked untouched."""
        event = decode(events_pb2.EngagementEvent, data)
        reason = domain.suppression_reason(event.event_type, event.reason)
        if reason is None:
            return
        try:
            tenant = validation.tenant_id(event.tenant_id)
            address = domain.normalize_address(validation.email(event.email.strip(), "email"))
        except InvalidArgument as exc:
            raise PermanentMessageError(f"engagement event cannot suppress: {exc}") from exc
        async with self.engine.begin() as conn:
            await repository.add_suppression(
                conn,
                tenant_id=tenant,
                address=address,
                reason=reason,
                source=f"engagement:{event.event_id}",
                now=self.clock.now(),
            )
        log.info(
            "suppression.from_engagement",
            tenant_id=tenant,
            reason=reason,
            event_id=event.event_id,
            message_id=event.message_id,
        )
