"""Rules applied per second: engagement facts with a backlog, through the planner's consumer.

    .venv/bin/python bench/planner_rules.py [--facts 20000] [--per-message 350]

Runs the whole suite, creates one campaign per fact (5 steps, the first a day out so nothing
fires), publishes one `open` engagement fact per campaign onto the ENGAGEMENT stream as fast
as JetStream takes them, `--per-message` facts to an EngagementBatch (the opens of one
1,000-event webhook delivery are about 350), and measures until the planner has recorded a
decision for each.
The default open rule reschedules the next step, so each fact is a full rule application:
campaign locked, decision recorded, step re-armed, timer command outboxed.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from harness import cpu_report, cpu_snapshot, machine, publish_all, running_suite, verified_identity, wait_for_count
from planner_batch_create import FIVE_STEPS, requests

from dripiq.events.v1 import messages_pb2 as events_pb
from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.planner.v1 import campaign_service_pb2_grpc as pb_grpc
from dripiq_common.bus.contract import Subjects
from dripiq_devtools.suite import Suite
from dripiq_planner import lifecycle

TENANT = "bench-rules"


async def create(suite: Suite, total: int) -> list[str]:
    ids: list[str] = []
    sender = await verified_identity(suite, TENANT)
    async with suite.channel("PLANNER_GRPC_PORT", **{"grpc.max_receive_message_length": 64 << 20}) as ch:
        stub = pb_grpc.CampaignServiceStub(ch)
        for start in range(0, total, 1000):
            items = requests(TENANT, start, min(1000, total - start), explicit=True, sender=sender)
            answer = await stub.BatchCreateCampaigns(
                pb.BatchCreateCampaignsRequest(tenant_id=TENANT, requests=items), timeout=120
            )
            ids += [r.campaign.campaign_id for r in answer.results if r.HasField("campaign")]
    return ids


async def run(suite, total: int, per_message: int) -> None:  # type: ignore[no-untyped-def]
    assert FIVE_STEPS.outreach_campaign[0].timing == "Day 1"
    campaign_ids = await create(suite, total)
    nc = await suite.nats_connect()
    js = nc.jetstream()
    subject = Subjects.engagement(TENANT, "open")
    before = cpu_snapshot(suite)
    started = time.perf_counter()
    facts = [
        events_pb.EngagementEvent(
            tenant_id=TENANT,
            event_id=f"bench-{n}",
            message_id=lifecycle.message_id(campaign_id, 0),
            campaign_id=campaign_id,
            step_index=0,
            event_type="open",
        )
        for n, campaign_id in enumerate(campaign_ids)
    ]
    batches = (
        (f"bench-{n}", events_pb.EngagementBatch(events=facts[n : n + per_message]).SerializeToString())
        for n in range(0, len(facts), per_message)
    )
    await publish_all(js, subject, batches)
    published = time.perf_counter() - started
    await nc.close()
    count, _ = await wait_for_count(
        suite.env["DATABASE_URL"],
        f"SELECT count(*) FROM planner.rule_decisions WHERE tenant_id = '{TENANT}'",
        len(campaign_ids),
        limit_seconds=600,
        poll_seconds=0.5,
    )
    waited = time.perf_counter() - started
    print(cpu_report(before, cpu_snapshot(suite)))
    print(
        f"{len(campaign_ids)} open facts published in {published:.1f} s ({len(campaign_ids) / published:.0f}/s); "
        f"{count} rules applied in {waited:.1f} s from the first publish: {count / waited:.0f} facts/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--facts", type=int, default=20000)
    parser.add_argument("--per-message", type=int, default=350, help="facts per EngagementBatch message")
    args = parser.parse_args()
    with running_suite() as suite:
        print(f"machine: {machine()}")
        asyncio.run(run(suite, args.facts, args.per_message))


if __name__ == "__main__":
    main()
