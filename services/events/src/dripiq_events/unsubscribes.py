"""One-click unsubscribes: each stored once, published, and its address suppressed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq_common import outbox
from dripiq_common.bus.contract import Subjects
from dripiq_common.errors import InvalidArgument, PermanentMessageError
from dripiq_common.outbox import OutboxMessage
from dripiq_events import convert, domain, repository
from dripiq_events.models import outbox as outbox_table
from dripiq_events.storing import IngestResult, store_events

log = structlog.get_logger(__name__)


@dataclass
class Unsubscribes:
    engine: AsyncEngine

    async def handle(self, fields: dict[str, str], received_at: datetime) -> IngestResult:
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
            stored = await store_events(conn, [event], received_at)
            by_message = domain.needs_address(outbound)
            if by_message:
                command = convert.suppress_by_message_command(
                    tenant_id=tenant_id, message_id=message_id, occurred_at=received_at
                )
                await outbox.enqueue(
                    conn, outbox_table, [OutboxMessage(Subjects.dispatcher_suppress(tenant_id), command)]
                )
        log.info("events.unsubscribe_stored", tenant_id=tenant_id, message_id=message_id, by_message=by_message)
        # `published` counts the command too: it wakes the relay.
        return IngestResult(received=1, stored=stored.stored, published=stored.published + by_message)
