"""A tenant's daily AI budget: chat completion calls and the tokens they used, per UTC day.

A call is reserved in PostgreSQL before it is made, in one statement that only counts it while
the day's calls and tokens are both under their limits: however many planner replicas ask at
once, no more calls start than the budget has. Tokens are known only from the answer's `usage`,
so they are added afterwards; the token budget can be overrun by what the calls in flight use.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Row, select, update
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
    """One call counted against a tenant's day."""

    tenant_id: str
    day: date


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

    async def reserve(self, tenant_id: str, limits: BudgetLimits) -> Reservation | BudgetSpent:
        """One call counted, or why not: the day's calls or tokens are used up."""
        day = self.clock.now().astimezone(UTC).date()
        counted = (
            insert(ai_budget_usage)
            .values(tenant_id=tenant_id, day=day, calls=1, tokens=0, updated_at=self.clock.now())
            .on_conflict_do_update(
                index_elements=[ai_budget_usage.c.tenant_id, ai_budget_usage.c.day],
                set_={"calls": ai_budget_usage.c.calls + 1, "updated_at": self.clock.now()},
                where=(ai_budget_usage.c.calls < limits.calls) & (ai_budget_usage.c.tokens < limits.tokens),
            )
            .returning(ai_budget_usage.c.calls)
        )
        async with self.engine.begin() as conn:
            if (await conn.execute(counted)).first() is not None:
                return Reservation(tenant_id, day)
            row = await _usage(conn, tenant_id, day)
        resets_at = datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)
        if row is not None and row.calls >= limits.calls:
            return BudgetSpent(tenant_id, "calls", limits.calls, resets_at)
        return BudgetSpent(tenant_id, "tokens", limits.tokens, resets_at)

    async def spend_tokens(self, reservation: Reservation, tokens: int) -> None:
        if tokens <= 0:
            return
        async with self.engine.begin() as conn:
            await conn.execute(
                update(ai_budget_usage)
                .where(ai_budget_usage.c.tenant_id == reservation.tenant_id, ai_budget_usage.c.day == reservation.day)
                .values(tokens=ai_budget_usage.c.tokens + tokens, updated_at=self.clock.now())
            )

    async def usage(self, tenant_id: str) -> tuple[int, int]:
        """Today's (calls, tokens) for the tenant."""
        async with self.engine.connect() as conn:
            row = await _usage(conn, tenant_id, self.clock.now().astimezone(UTC).date())
        return (row.calls, row.tokens) if row else (0, 0)


async def _usage(conn: AsyncConnection, tenant_id: str, day: date) -> Row | None:
    query = select(ai_budget_usage).where(ai_budget_usage.c.tenant_id == tenant_id, ai_budget_usage.c.day == day)
    return (await conn.execute(query)).first()
