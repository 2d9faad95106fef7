"""A/B variant winners: which experiments of a batch of due steps have one, picked once.

An experiment is (tenant, product, step index). When its tenant's `variant_winner` setting is on
and one of its steps is due, the planner reads the stored winner, or asks the events service for
the experiment's per-variant sends, replies and clicks (GetTenantStats grouped by variant, over
the planner's mutual-TLS client) and picks one with `variants.decide`. A winner is stored once:
replicas deciding at once insert the same key, the first insert stands, and every one of them
sends what is stored. The events service's figures are kept a short while per experiment, so a
busy step costs one call per experiment per `cache_seconds`, not one per send; when it does not
answer, the step goes out split by the hash, as without the setting, and the log and
`dripiq_planner_variant_winner_lookups{outcome="unavailable"}` say so.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import grpc
import structlog
from sqlalchemy import Row, func, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dripiq.events.v1 import events_service_pb2 as epb
from dripiq.planner.v1 import timers_pb2
from dripiq_common.clock import Clock
from dripiq_planner import variants
from dripiq_planner.metrics import VARIANT_WINNER_LOOKUPS
from dripiq_planner.models import campaign_steps, contact_campaigns, variant_winners
from dripiq_planner.owners import Owners
from dripiq_planner.tenants import TenantDefaults
from dripiq_planner.variants import Arm, Metric, Winner, WinnerSetting

log = structlog.get_logger(__name__)

# (tenant_id, product_id, step_index)
Experiment = tuple[str, str, int]
# The events service keeps rollups for a range of at most 366 UTC days.
COUNTED_DAYS = 365
# Experiments asked of the events service for one batch; the rest wait for a later batch, split.
MAX_LOOKUPS_PER_BATCH = 20
MAX_LISTED = 100


@dataclass
class VariantWinners:
    engine: AsyncEngine
    clock: Clock
    owners: Owners | None
    # How long the events service's figures for an experiment are used before asking again.
    cache_seconds: float = 30.0
    # Per call: a due step waits at most this long for the figures.
    timeout_seconds: float = 2.0
    monotonic: Callable[[], float] = time.monotonic
    _figures: dict[Experiment, tuple[float, dict[str, Arm] | None]] = field(default_factory=dict, init=False)

    async def for_due(
        self, timers: Sequence[timers_pb2.PlannerTimer], tenants: Mapping[str, TenantDefaults]
    ) -> dict[Experiment, Winner]:
        """The winners of the experiments these due steps belong to, where there is one."""
        due = [
            (t.tenant_id, t.campaign_id, t.step_due.step_index)
            for t in timers
            if t.HasField("step_due") and t.tenant_id in tenants and tenants[t.tenant_id].variant_winner
        ]
        if not due:
            return {}
        async with self.engine.connect() as conn:
            experiments = await _experiments(conn, due)
            found = await _stored(conn, list(experiments)) if experiments else {}
        VARIANT_WINNER_LOOKUPS.labels("stored").inc(len(found))
        open_ = [e for e in experiments if e not in found][:MAX_LOOKUPS_PER_BATCH]
        decided = await asyncio.gather(
            *(self._decide(e, experiments[e], tenants[e[0]].variant_winner) for e in open_)  # type: ignore[arg-type]
        )
        return found | {e: w for e, w in zip(open_, decided, strict=True) if w is not None}

    async def _decide(self, experiment: Experiment, names: list[str], setting: WinnerSetting) -> Winner | None:
        figures = await self._figures_of(experiment, names, setting.metric)
        if figures is None:
            VARIANT_WINNER_LOOKUPS.labels("unavailable").inc()
            return None
        winner = variants.decide(names, figures, setting, self.clock.now())
        if winner is None:
            VARIANT_WINNER_LOOKUPS.labels("undecided").inc()
            return None
        async with self.engine.begin() as conn:
            stored = await store(conn, experiment, winner)
        VARIANT_WINNER_LOOKUPS.labels("decided").inc()
        tenant_id, product_id, step_index = experiment
        log.info(
            "variant.winner_picked",
            tenant_id=tenant_id,
            product_id=product_id,
            step_index=step_index,
            variant=stored.variant,
            note=stored.note(),
        )
        return stored

    async def _figures_of(self, experiment: Experiment, names: list[str], metric: Metric) -> dict[str, Arm] | None:
        """Each variant's sends and hits, as the events service counted them a moment ago."""
        now = self.monotonic()
        cached = self._figures.get(experiment)
        if cached is not None and cached[0] > now:
            return cached[1]
        figures = await self._ask(experiment, names, metric)
        if self.cache_seconds > 0:
            # Expired entries go as new ones come, so the cache holds only the experiments
            # looked up within the interval, not every one the process has ever seen.
            self._figures = {e: entry for e, entry in self._figures.items() if entry[0] > now}
            # An unanswered call is kept too: a batch waits for a dead events service once per
            # experiment and interval, not once per batch.
            self._figures[experiment] = (now + self.cache_seconds, figures)
        return figures

    async def _ask(self, experiment: Experiment, names: list[str], metric: Metric) -> dict[str, Arm] | None:
        tenant_id, product_id, step_index = experiment
        if self.owners is None:
            return None
        today = self.clock.now().date()
        request = epb.GetTenantStatsRequest(
            tenant_id=tenant_id,
            start_day=(today - timedelta(days=COUNTED_DAYS)).isoformat(),
            end_day=today.isoformat(),
            group_by=[epb.STATS_DIMENSION_VARIANT],
            filter=epb.TenantStatsFilter(product_ids=[product_id], step_indexes=[step_index], variants=names),
            page_size=len(names),
        )
        try:
            answer = await self.owners.events.GetTenantStats(request, timeout=self.timeout_seconds)
        except grpc.aio.AioRpcError as exc:
            log.warning(
                "variant.winner_unavailable",
                tenant_id=tenant_id,
                product_id=product_id,
                step_index=step_index,
                code=exc.code().name,
                consequence="contacts are split by the hash until the events service answers",
            )
            return None
        return {
            row.variant: Arm(
                row.counts.sent, row.counts.replies if metric is Metric.REPLY else row.counts.unique_clicks
            )
            for row in answer.rows
        }


async def _experiments(conn: AsyncConnection, due: list[tuple[str, str, int]]) -> dict[Experiment, list[str]]:
    """The experiments of the due steps that have variants, with their variants' names (all the
    names those steps give, so every variant any of them sends needs its sends)."""
    c, s = contact_campaigns.c, campaign_steps.c
    rows = await conn.execute(
        select(c.tenant_id, c.product_id, s.step_index, s.variants)
        .select_from(campaign_steps.join(contact_campaigns, c.id == s.campaign_id))
        .where(tuple_(c.tenant_id, c.id, s.step_index).in_(due), func.jsonb_array_length(s.variants) > 0)
    )
    out: dict[Experiment, list[str]] = {}
    for row in rows:
        names = out.setdefault((row.tenant_id, row.product_id, row.step_index), [])
        names += [v["name"] for v in row.variants if v["name"] not in names]
    return out


async def _stored(conn: AsyncConnection, experiments: list[Experiment]) -> dict[Experiment, Winner]:
    w = variant_winners.c
    rows = await conn.execute(
        select(variant_winners).where(tuple_(w.tenant_id, w.product_id, w.step_index).in_(experiments))
    )
    return {(r.tenant_id, r.product_id, r.step_index): _winner(r) for r in rows}


async def store(conn: AsyncConnection, experiment: Experiment, winner: Winner) -> Winner:
    """Keep the experiment's winner unless one is kept already; the one kept either way."""
    tenant_id, product_id, step_index = experiment
    key = {"tenant_id": tenant_id, "product_id": product_id, "step_index": step_index}
    inserted = (
        await conn.execute(
            insert(variant_winners)
            .values(
                **key,
                variant=winner.variant,
                metric=winner.metric.value,
                rate=winner.rate,
                runner_up=winner.runner_up,
                runner_up_rate=winner.runner_up_rate,
                sends_each=winner.sends_each,
                decided_at=winner.decided_at,
            )
            .on_conflict_do_nothing(index_elements=["tenant_id", "product_id", "step_index"])
            .returning(*variant_winners.c)
        )
    ).first()
    if inserted is not None:
        return _winner(inserted)
    return (await _stored(conn, [experiment]))[experiment]


async def listed(conn: AsyncConnection, tenant_id: str) -> list[Row]:
    """The tenant's winners, newest first (GetTenantStats)."""
    w = variant_winners.c
    query = (
        select(variant_winners)
        .where(w.tenant_id == tenant_id)
        .order_by(w.decided_at.desc(), w.product_id, w.step_index)
        .limit(MAX_LISTED)
    )
    return list((await conn.execute(query)).all())


def _winner(row: Row) -> Winner:
    return Winner(
        variant=row.variant,
        metric=Metric(row.metric),
        rate=row.rate,
        runner_up=row.runner_up,
        runner_up_rate=row.runner_up_rate,
        sends_each=row.sends_each,
        decided_at=row.decided_at,
    )
