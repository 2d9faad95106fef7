"""Suppressions named by a message: the events service knows a person unsubscribed through the
link in one of our messages (the signed token names tenant and message) but holds no record of
that message's address; the dispatcher keeps every message, so it suppresses the address.

Idempotent: a suppression is unique per (tenant, address, reason) and a second one is not
inserted. A message the dispatcher does not hold (yet) raises RetryLater, so JetStream brings
the command back after its backoff and, past the last delivery, dead-letters it for a person to
replay: a request to stop mail is never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.dispatcher.v1 import messages_pb2
from dripiq_common import validation
from dripiq_common.bus.contract import Subjects, decode
from dripiq_common.clock import Clock
from dripiq_common.errors import InvalidArgument, PermanentMessageError
from dripiq_dispatcher import domain, repository
from dripiq_dispatcher.failures import RetryLater

log = structlog.get_logger(__name__)


@dataclass
class MessageSuppressions:
    engine: AsyncEngine
    clock: Clock

    async def handle(self, data: bytes, *, subject: str | None = None) -> None:
        """One SuppressByMessageCommand. Safe to redeliver at any point.

        `subject` is the one it was delivered on: a payload whose tenant is not the subject's is
        never trusted (dead-lettered), nor one naming another tenant's message.
        """
        command = decode(messages_pb2.SuppressByMessageCommand, data)
        try:
            tenant = validation.tenant_id(command.tenant_id)
            message_id = validation.required(command.message_id, "message_id")
            reason = validation.required(command.reason.strip().lower(), "reason", max_length=64)
        except InvalidArgument as exc:
            raise PermanentMessageError(f"unusable SuppressByMessageCommand: {exc}") from None
        if subject is not None and subject != Subjects.dispatcher_suppress(tenant):
            raise PermanentMessageError(
                f"SuppressByMessageCommand for tenant {tenant!r} arrived on {subject!r}: "
                "a payload's tenant is trusted only on its own tenant's subject"
            )
        at = command.occurred_at.ToDatetime(tzinfo=UTC) if command.HasField("occurred_at") else self.clock.now()
        ids = {"tenant_id": tenant, "message_id": message_id, "reason": reason}
        async with self.engine.begin() as conn:
            row = await repository.messages.get_message(conn, tenant_id=tenant, message_id=message_id)
            if row is None:
                owner = await repository.messages.message_tenant(conn, message_id=message_id)
            else:
                owner = tenant
                try:
                    address = domain.normalize_address(validation.email(row.to_email.strip(), "to_email"))
                except InvalidArgument:
                    # A task's message, or one stored before addresses were checked: nothing to
                    # suppress, now or later.
                    log.warning("suppression.by_message_no_address", **ids)
                    return
                await repository.suppressions.add_suppressions(
                    conn,
                    rows=[
                        {
                            "tenant_id": tenant,
                            "address": address,
                            "reason": reason,
                            "source": f"message:{message_id}",
                            "created_at": at,
                        }
                    ],
                )
        if row is not None:
            log.info("suppression.by_message", **ids)
            return
        if owner is not None:
            raise PermanentMessageError(f"message {message_id!r} belongs to another tenant than {tenant!r}")
        # The signed link proves the message was sent; its row may be restored or replicated
        # later. Not known after the last delivery, the command is dead-lettered, not dropped.
        log.warning("suppression.by_message_unknown_message", **ids)
        raise RetryLater(f"message {message_id!r} of tenant {tenant!r} is not known here (yet)")
