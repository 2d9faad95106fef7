"""The EventsService reads: a tenant's events, replies and rollups, from the `events` schema.

Plain values in, rows and counters out; handlers.py reads the requests and convert.py writes
the answers. Nothing here writes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq_common import paging, validation
from dripiq_common.errors import InvalidArgument, NotFound
from dripiq_events import repository, rollups
from dripiq_events.domain import MAX_ID_LENGTH
from dripiq_events.models import TENANT_STATS_DIMENSIONS


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


# One year of days: a wider range is a report, not a question an API answers in milliseconds.
MAX_STATS_DAYS = 366
MAX_FILTER_VALUES = 100
STATS_GROUPS = ("day", *TENANT_STATS_DIMENSIONS)


@dataclass(frozen=True)
class TenantStatsQuery:
    """A checked GetTenantStats question: whose messages, which UTC days (both included), what
    each row stands for, and which messages count (dimension -> the values kept)."""

    tenant_id: str
    start_day: date
    end_day: date
    group_by: tuple[str, ...] = ()
    filters: dict[str, tuple[str | int, ...]] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        tenant_id: str,
        *,
        start_day: str,
        end_day: str,
        group_by: Sequence[str],
        filters: Mapping[str, Sequence[str | int]],
    ) -> TenantStatsQuery:
        tenant = validation.tenant_id(tenant_id)
        start, end = _day(start_day, "start_day"), _day(end_day, "end_day")
        if end < start:
            raise InvalidArgument("end_day", "must not be before start_day")
        if (end - start) >= timedelta(days=MAX_STATS_DAYS):
            raise InvalidArgument("end_day", f"must be less than {MAX_STATS_DAYS} days after start_day")
        for name in group_by:
            if name not in STATS_GROUPS:
                raise InvalidArgument("group_by", f"{name!r} is not a dimension ({', '.join(STATS_GROUPS)})")
        if len(set(group_by)) != len(group_by):
            raise InvalidArgument("group_by", "names a dimension more than once")
        kept: dict[str, tuple[str | int, ...]] = {}
        for name, values in filters.items():
            if name not in TENANT_STATS_DIMENSIONS:
                raise InvalidArgument(f"filter.{name}", "is not a dimension")
            if len(values) > MAX_FILTER_VALUES:
                raise InvalidArgument(f"filter.{name}", f"at most {MAX_FILTER_VALUES} values")
            if any(isinstance(v, str) and len(v) > MAX_ID_LENGTH for v in values):
                raise InvalidArgument(f"filter.{name}", f"values are at most {MAX_ID_LENGTH} characters")
            if values:
                kept[name] = tuple(dict.fromkeys(values))
        return cls(tenant, start, end, tuple(group_by), kept)


def _day(value: str, name: str) -> date:
    if not value:
        raise InvalidArgument(name, "required, a UTC day as YYYY-MM-DD")
    try:
        if len(value) != 10:
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidArgument(name, f"must be a day as YYYY-MM-DD, got {value[:40]!r}") from None


@dataclass(frozen=True)
class StatsSpans:
    """Where a range of days is read from: daily rows over `days`, weekly rows for the weeks
    whose Mondays are in `weeks` (spans both ends included; together they cover each day once)."""

    days: tuple[tuple[date, date], ...]
    weeks: tuple[date, date] | None


def stats_spans(start: date, end: date, group_by: Sequence[str], *, daily_only: bool = False) -> StatsSpans:
    """Read the whole ISO weeks of [start, end] from the weekly rows and its edge days from the
    daily ones, unless the answer is per day (a week has no days) or the caller asks for days."""
    first_monday = start + timedelta(days=-start.weekday() % 7)
    last_sunday = end - timedelta(days=(end.weekday() + 1) % 7)
    if daily_only or "day" in group_by or last_sunday < first_monday:
        return StatsSpans(((start, end),), None)
    edges = ((start, first_monday - timedelta(days=1)), (last_sunday + timedelta(days=1), end))
    return StatsSpans(
        tuple((first, last) for first, last in edges if first <= last),
        (first_monday, last_sunday - timedelta(days=6)),
    )


def _stats_token_types(group_by: Sequence[str]) -> tuple[type[str] | type[int], ...]:
    return (str, *(int if name == "step_index" else str for name in group_by))


@dataclass
class EventQuery:
    engine: AsyncEngine

    async def step_funnel(self, tenant_id: str, campaign_id: str) -> dict[int, dict[str, int]]:
        """A campaign's counters by step index and metric."""
        tenant = validation.tenant_id(tenant_id)
        campaign = validation.required(campaign_id, "campaign_id")
        async with self.engine.connect() as conn:
            return await repository.rollups(conn, tenant_id=tenant, campaign_id=campaign)

    async def step_variants(self, tenant_id: str, campaign_id: str) -> dict[int, dict[str, Counter[str]]]:
        """A campaign's counters by step index, A/B variant and metric."""
        tenant = validation.tenant_id(tenant_id)
        campaign = validation.required(campaign_id, "campaign_id")
        async with self.engine.connect() as conn:
            return await rollups.variant_counts(conn, tenant_id=tenant, campaign_id=campaign)

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

    async def tenant_stats(
        self, query: TenantStatsQuery, *, page_size: int, page_token: str, daily_only: bool = False
    ) -> Page:
        """A page of the tenant's counters summed per group, in group_by order, read from whole
        weeks where it can (daily_only reads days only, the same answer from more rows). A page
        token is the last group's key, with the grouping it was made for: asked with another, it
        is INVALID_ARGUMENT, never a wrong page."""
        size = paging.page_size(page_size)
        grouping = ",".join(query.group_by)
        after = paging.decode_token(page_token, *_stats_token_types(query.group_by))
        if after is not None and after[0] != grouping:
            raise InvalidArgument("page_token", "was made for another group_by")
        after_key: tuple[Any, ...] | None = None
        if after is not None:
            try:
                after_key = tuple(
                    date.fromisoformat(v) if name == "day" else v
                    for name, v in zip(query.group_by, after[1:], strict=True)
                )
            except ValueError:
                raise InvalidArgument("page_token", "is not a token from a previous response") from None
        spans = stats_spans(query.start_day, query.end_day, query.group_by, daily_only=daily_only)
        question = repository.tenant_stats_query(
            tenant_id=query.tenant_id,
            days=spans.days,
            weeks=spans.weeks,
            group_by=query.group_by,
            filters=query.filters,
            after=after_key,
            limit=size + 1,
        )
        async with self.engine.connect() as conn:
            rows = await repository.sum_tenant_stats(conn, query=question)
        page = rows[:size]
        if len(rows) <= size or not query.group_by:
            return Page(page, "")
        last = page[-1]
        key = [last[name].isoformat() if name == "day" else last[name] for name in query.group_by]
        return Page(page, paging.encode_token(grouping, *key))

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
