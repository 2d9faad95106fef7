"""python -m dripiq_planner: the planner process."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, timedelta

from dripiq.planner.v1 import campaign_service_pb2, campaign_service_pb2_grpc
from dripiq_common import engagement
from dripiq_common.bus.contract import Consumers, ConsumerSpec
from dripiq_common.bus.worker import PullWorker, whole_batch
from dripiq_common.grpc_security import service_channel
from dripiq_common.loops import Poller
from dripiq_common.service import Parts, Runtime, serve
from dripiq_planner.ai_budget import AiBudget, BudgetLimits, prune_usage
from dripiq_planner.approval import CampaignApproval
from dripiq_planner.campaigns import CampaignService
from dripiq_planner.creating import CampaignCreator
from dripiq_planner.handlers import ACCESS, CampaignServicer
from dripiq_planner.models import outbox
from dripiq_planner.owners import Owners
from dripiq_planner.planning import Planner
from dripiq_planner.planning_worker import PlanningWorker
from dripiq_planner.preview import StrategyPreview
from dripiq_planner.reactor import Reactor
from dripiq_planner.settings import PlannerSettings
from dripiq_planner.stats import TenantStats
from dripiq_planner.step_edits import StepEditor
from dripiq_planner.strategist.factory import build_strategist
from dripiq_planner.tenant_settings import TenantSettingsService
from dripiq_planner.winners import VariantWinners

TIMERS = Consumers.PLANNER_TIMERS
OUTCOMES = Consumers.PLANNER_OUTCOMES
ENGAGEMENT = Consumers.PLANNER_ENGAGEMENT
PLANNING = Consumers.PLANNER_PLANNING
SERVICE_NAME = campaign_service_pb2.DESCRIPTOR.services_by_name["CampaignService"].full_name


def batched(
    rt: Runtime, spec: ConsumerSpec, handle: Callable[[list[bytes]], Awaitable[None]], batch_size: int = 1000
) -> PullWorker:
    """A consumer that hands the reactor whole batches: one transaction for up to 1,000 messages."""
    return PullWorker(
        rt.js, rt.nc, spec, whole_batch(lambda msgs: handle([m.data for m in msgs])), batch_size=batch_size
    )


# Messages of one batch when no plan waits on a model: each costs ~0.2 ms of CPU, so a batch is
# stored in one transaction of a few statements rather than paying several per campaign.
TEMPLATE_BATCH = 500


def planning_fetcher(rt: Runtime, planning: PlanningWorker, concurrency: int) -> PullWorker:
    """The planning consumer. With a model, `concurrency` campaigns in flight in small batches
    (up to 16 of them): a batch is acked when its last answer is read and stored, so a small
    one keeps the model's slots busy (at concurrency 64, batches of 16 kept 80 % of the bound,
    batches of 4 92 %); without one, large batches, one planning while the next is fetched and stored."""
    if planning.planner.uses_model:
        size = max(1, concurrency // 16)
        in_flight = -(-concurrency // size)
    else:
        size, in_flight = TEMPLATE_BATCH, 2
    return PullWorker(rt.js, rt.nc, PLANNING, planning.handle_batch, batch_size=size, batches_in_flight=in_flight)


def build(settings: PlannerSettings, rt: Runtime) -> Parts:
    relay = rt.outbox_relay(outbox)
    owners = Owners(
        settings.dispatcher_address,
        settings.events_address,
        settings.owners_timeout_seconds,
        channel=lambda address: service_channel(settings, address),
    )
    strategist = build_strategist(settings, AiBudget(rt.engine, rt.clock))
    ai_budget = BudgetLimits(calls=settings.ai_daily_calls, tokens=settings.ai_daily_tokens)
    planner = Planner(rt.engine, strategist, owners=owners, ai_budget=ai_budget)
    planning = PlanningWorker(
        rt.engine,
        rt.clock,
        planner,
        PLANNING,
        tenant_concurrency=settings.planning_tenant_concurrency,
        on_commit=relay.kick,
    )
    reactor = Reactor(
        rt.engine,
        rt.clock,
        count_machine_opens=settings.count_machine_opens,
        max_auto_reply_pause_days=settings.max_auto_reply_pause_days,
        on_commit=relay.kick,
        winners=VariantWinners(rt.engine, rt.clock, owners, cache_seconds=settings.variant_stats_cache_seconds),
    )
    creator = CampaignCreator(rt.engine, rt.clock, planner, on_commit=relay.kick)
    campaigns = CampaignService(rt.engine, rt.clock, owners=owners, on_commit=relay.kick)
    servicer = CampaignServicer(
        creator=creator,
        campaigns=campaigns,
        preview=StrategyPreview(rt.engine, rt.clock, planner, creator=creator),
        tenant_settings=TenantSettingsService(rt.engine, rt.clock),
        approval=CampaignApproval(rt.engine, rt.clock, campaigns, on_commit=relay.kick),
        step_editor=StepEditor(rt.engine, rt.clock, campaigns, on_commit=relay.kick),
        stats=TenantStats(rt.engine, rt.clock, ai_budget, settings.planning_tenant_concurrency, owners),
    )
    kept = timedelta(days=settings.ai_budget_retention_days)
    budget_retention = Poller(
        lambda: prune_usage(
            rt.engine, before=(rt.clock.now().astimezone(UTC) - kept).date(), limit=settings.ai_budget_prune_batch
        ),
        full=settings.ai_budget_prune_batch,
        poll_seconds=settings.ai_budget_prune_poll_seconds,
        name="ai-budget-retention",
    )
    return Parts(
        service_names=[SERVICE_NAME],
        access=ACCESS,
        registrars=[lambda server: campaign_service_pb2_grpc.add_CampaignServiceServicer_to_server(servicer, server)],
        # Two fetchers per consumer: one handles its batch while the other fetches the next.
        # Campaigns are locked in id order, so they cannot deadlock on a shared campaign.
        fetchers=[
            batched(rt, spec, handle, batch_size)
            for spec, handle, batch_size in (
                (TIMERS, reactor.on_timers, 1000),
                (OUTCOMES, reactor.on_outcomes, 1000),
                # Each message carries up to a webhook delivery's facts (EngagementBatch).
                (ENGAGEMENT, reactor.on_engagements, engagement.READ_BATCH),
            )
            for _ in range(settings.workers_per_consumer)
        ]
        + [planning_fetcher(rt, planning, settings.planning_concurrency)],
        loops=[relay, budget_retention],
        closers=[owners.close, strategist.aclose],
    )


def main() -> None:
    serve("planner", PlannerSettings, build)


if __name__ == "__main__":
    main()
