"""A tenant's daily AI budget: chat completion calls and the tokens they used, per UTC day.

A call is reserved in PostgreSQL before it is made, with the most tokens it can use (its
prompt's bound and its completion limit), in one conditional update that counts it only while
the day's calls stay under their limit and its tokens fit in what is left: however many planner
replicas ask at once, the calls in flight can never take the day past either budget. The
answer's `usage` settles the reservation afterwards, giving back what the call did not use.

A process that dies between the two leaves its reservation counted until the day ends: the
budget errs towards spending less, never more.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Row, delete, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dripiq_common.clock import Clock
from dripiq_common.errors import ResourceExhausted
from dripiq_planner.models import ai_budget_usage

REASON = "ai_budget_spent"


@dataclass(frozen=True)
class BudgetLimits:
    """Calls and tokens a tenant may use per UTC day."""

    calls: int
    tokens: int


@dataclass(frozen=True)
class Reservation:
    """One call counted against a tenant's day, with the tokens held for it until it settles."""

    tenant_id: str
    day: date
    tokens: int = 0


@dataclass(frozen=True)
class BudgetSpent:
    """Why no call was reserved: which budget, its limit, and when it resets."""

    tenant_id: str
    budget: str  # "calls" or "tokens"
    limit: int
    resets_at: datetime

    @property
    def reason(self) -> str:
        """As ai_generations records it."""
        return (
            f"{REASON}: the tenant's daily AI {self.budget} budget ({self.limit} {self.budget}) is spent; "
            f"it resets at {self.resets_at.isoformat()}"
        )

    def error(self) -> ResourceExhausted:
        return ResourceExhausted(
            f"tenant:{self.tenant_id}/ai_daily_{self.budget}",
            f"the tenant's daily AI {self.budget} budget ({self.limit} {self.budget}) is spent; "
            f"it resets at {self.resets_at.isoformat()} (ai_daily_{'call' if self.budget == 'calls' else 'token'}"
            "_budget in the tenant's settings)",
        )


@dataclass
class AiBudget:
    engine: AsyncEngine
    clock: Clock

    async def reserve(self, tenant_id: str, limits: BudgetLimits, tokens: int = 0) -> Reservation | BudgetSpent:
        """One call counted with `tokens` held for it, or why not: the day's calls are used up,
        or what is left of its tokens is less than the call may use."""
        now = self.clock.now()
        day = now.astimezone(UTC).date()
        key = (ai_budget_usage.c.tenant_id == tenant_id) & (ai_budget_usage.c.day == day)
        # The row exists first so that the conditional update below is the one statement that
        # decides; concurrent updates of the row wait for each other and re-check the condition.
        exists = insert(ai_budget_usage).values(tenant_id=tenant_id, day=day, updated_at=now).on_conflict_do_nothing()
        counted = (
            update(ai_budget_usage)
            .where(key)
            .where(ai_budget_usage.c.calls < limits.calls)
            .where(ai_budget_usage.c.tokens + tokens <= limits.tokens)
            .values(calls=ai_budget_usage.c.calls + 1, tokens=ai_budget_usage.c.tokens + tokens, updated_at=now)
            .returning(ai_budget_usage.c.calls)
        )
        async with self.engine.begin() as conn:
            await conn.execute(exists)
            if (await conn.execute(counted)).first() is not None:
                return Reservation(tenant_id, day, tokens)
            row = await _usage(conn, tenant_id, day)
        resets_at = datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)
        if row is not None and row.calls >= limits.calls:
            return BudgetSpent(tenant_id, "calls", limits.calls, resets_at)
        return BudgetSpent(tenant_id, "tokens", limits.tokens, resets_at)

    async def settle(self, reservation: Reservation, used: int) -> None:
        """Replace what the reservation held by what the call used (0 when it got no answer)."""
        change = max(used, 0) - reservation.tokens
        if change == 0:
            return
        async with self.engine.begin() as conn:
            await conn.execute(
                update(ai_budget_usage)
                .where(ai_budget_usage.c.tenant_id == reservation.tenant_id, ai_budget_usage.c.day == reservation.day)
                .values(tokens=func.greatest(ai_budget_usage.c.tokens + change, 0), updated_at=self.clock.now())
            )

    async def usage(self, tenant_id: str) -> tuple[int, int]:
        """Today's (calls, tokens) for the tenant."""
        async with self.engine.connect() as conn:
            row = await _usage(conn, tenant_id, self.clock.now().astimezone(UTC).date())
        return (row.calls, row.tokens) if row else (0, 0)


async def _usage(conn: AsyncConnection, tenant_id: str, day: date) -> Row | None:
    query = select(ai_budget_usage).where(ai_budget_usage.c.tenant_id == tenant_id, ai_budget_usage.c.day == day)
    return (await conn.execute(query)).first()


async def prune_usage(engine: AsyncEngine, *, before: date, limit: int) -> int:
    """Delete up to `limit` of the oldest days' rows, days before `before`; say how many. Only
    today's row is ever read (budgets, stats), so older ones are history kept for a while."""
    oldest = (
        select(ai_budget_usage.c.tenant_id, ai_budget_usage.c.day)
        .where(ai_budget_usage.c.day < before)
        .order_by(ai_budget_usage.c.day)
        .limit(limit)
    )
    async with engine.begin() as conn:
        deleted = await conn.execute(
            delete(ai_budget_usage).where(tuple_(ai_budget_usage.c.tenant_id, ai_budget_usage.c.day).in_(oldest))
        )
    return deleted.rowcount or 0
