"""The EventsService reads: a tenant's events, replies and rollups, from the `events` schema.

Plain values in, rows and counters out; handlers.py reads the requests and convert.py writes
the answers. Nothing here writes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq_common import paging, validation
from dripiq_common.errors import InvalidArgument, NotFound
from dripiq_events import repository


@dataclass(frozen=True)
class Page:
    """One page of rows, and the token of the next one ("" after the last)."""

    rows: Sequence[Any]
    next_page_token: str


@dataclass(frozen=True)
class EventScope:
    """Whose events a listing reads: a tenant's, or one message's or one campaign's of them."""

    tenant_id: str
    message_id: str = ""
    campaign_id: str = ""

    @classmethod
    def of(cls, tenant_id: str, *, message_id: str = "", campaign_id: str = "") -> EventScope:
        """A checked scope: a valid tenant, and at most one of message and campaign."""
        tenant = validation.tenant_id(tenant_id)
        if message_id and campaign_id:
            raise InvalidArgument("campaign_id", "give at most one of message_id or campaign_id")
        return cls(tenant, message_id=message_id, campaign_id=campaign_id)


@dataclass
class EventQuery:
    engine: AsyncEngine

    async def step_funnel(self, tenant_id: str, campaign_id: str) -> dict[int, dict[str, int]]:
        """A campaign's counters by step index and metric."""
        tenant = validation.tenant_id(tenant_id)
        campaign = validation.required(campaign_id, "campaign_id")
        async with self.engine.connect() as conn:
            return await repository.rollups(conn, tenant_id=tenant, campaign_id=campaign)

    async def campaign_stats(self, tenant_id: str, campaign_id: str) -> Counter[str]:
        """A campaign's counters by metric, its steps added up."""
        tenant = validation.tenant_id(tenant_id)
        campaign = validation.required(campaign_id, "campaign_id")
        async with self.engine.connect() as conn:
            steps = await repository.rollups(conn, tenant_id=tenant, campaign_id=campaign)
        totals: Counter[str] = Counter()
        for values in steps.values():
            totals.update(values)
        return totals

    async def list_message_events(
        self,
        scope: EventScope,
        *,
        occurred_after: datetime | None,
        occurred_before: datetime | None,
        page_size: int,
        page_token: str,
    ) -> Page:
        """A page of the scope's events in the order they were stored, each in
        [occurred_after, occurred_before) where those are given."""
        if not (scope.message_id or scope.campaign_id):
            # A whole tenant is only listed over a time range: it may hold hundreds of millions.
            for name, bound in (("occurred_after", occurred_after), ("occurred_before", occurred_before)):
                if bound is None:
                    raise InvalidArgument(name, "required when neither message_id nor campaign_id is given")
        if occurred_after is not None and occurred_before is not None and occurred_before <= occurred_after:
            raise InvalidArgument("occurred_before", "must be later than occurred_after")
        size = paging.page_size(page_size)
        after = paging.decode_token(page_token, int)
        after_id = after[0] if after else 0
        async with self.engine.connect() as conn:
            rows = await repository.list_events(
                conn,
                tenant_id=scope.tenant_id,
                message_id=scope.message_id,
                campaign_id=scope.campaign_id,
                occurred_after=occurred_after,
                occurred_before=occurred_before,
                after_id=after_id,
                limit=size + 1,
            )
        page = rows[:size]
        return Page(page, paging.encode_token(page[-1].id) if len(rows) > size else "")

    async def list_inbound_messages(self, tenant_id: str, *, campaign_id: str, page_size: int, page_token: str) -> Page:
        """A page of the tenant's replies (one campaign's when campaign_id is given), newest first."""
        tenant = validation.tenant_id(tenant_id)
        size = paging.page_size(page_size)
        before = paging.decode_token(page_token, int)
        async with self.engine.connect() as conn:
            rows = await repository.list_inbound(
                conn,
                tenant_id=tenant,
                campaign_id=campaign_id,
                before_id=before[0] if before else None,
                limit=size + 1,
            )
        page = rows[:size]
        return Page(page, paging.encode_token(page[-1].id) if len(rows) > size else "")

    async def get_inbound(self, tenant_id: str, inbound_id: str) -> Any:
        """One of the tenant's replies by its id."""
        tenant = validation.tenant_id(tenant_id)
        try:
            wanted = int(validation.required(inbound_id, "inbound_id"))
        except ValueError:
            raise InvalidArgument("inbound_id", f"must be a number, got {inbound_id!r}") from None
        async with self.engine.connect() as conn:
            row = await repository.get_inbound(conn, tenant_id=tenant, inbound_id=wanted)
        if row is None:
            raise NotFound(f"inbound message {inbound_id!r} not found")
        return row
