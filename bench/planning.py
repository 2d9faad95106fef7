"""Planning as work: campaigns without strategies through BatchCreateCampaigns, planned by the
model (the fake OpenAI answering after --latency seconds) in the planning workers.

    .venv/bin/python bench/planning.py [--campaigns 10000] [--concurrency 64] [--latency 1.0]

Runs the whole suite (as `make run` does) with one planner whose planning workers plan
--concurrency campaigns at once (PLANNER_PLANNING_CONCURRENCY, the model client's and the
tenant's concurrency set to match), sends the batches, and counts a campaign planned when its
strategy is stored. Prints how fast the batches were answered, the planning rate against the
bound concurrency / latency, and how many campaigns the model and the template planned.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import asyncpg
from harness import machine, running_suite, verified_identity, wait_for_count

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.planner.v1 import campaign_service_pb2_grpc as pb_grpc

TENANT = "bench-planning"
# Steps far ahead: the benchmark measures planning, not sending.
WEEKENDS_ONLY = pb.SendWindow(weekdays=[6, 7], start_hour=0, end_hour=1)


def requests(start: int, count: int, sender: str) -> list[pb.CreateCampaignRequest]:
    return [
        pb.CreateCampaignRequest(
            request_id=f"plan-{n}",
            lead=pb.Lead(lead_id=f"lead-{n}", company_name=f"Company {n}", industry="software"),
            contact=pb.Contact(contact_id=f"c{n}", email=f"person{n}@example.com", first_name=f"Ada{n}"),
            product=pb.Product(product_id="p-1", name="Widget", description="Widgets that save time."),
            sender_identity_id=sender,
            send_window=WEEKENDS_ONLY,
        )
        for n in range(start, start + count)
    ]


async def run(suite, total: int, batch: int) -> dict:  # type: ignore[no-untyped-def]
    sender = await verified_identity(suite, TENANT)
    started = time.perf_counter()
    async with suite.channel("PLANNER_GRPC_PORT", **{"grpc.max_receive_message_length": 64 << 20}) as ch:
        stub = pb_grpc.CampaignServiceStub(ch)
        for start in range(0, total, batch):
            answer = await stub.BatchCreateCampaigns(
                pb.BatchCreateCampaignsRequest(
                    tenant_id=TENANT, requests=requests(start, min(batch, total - start), sender)
                ),
                timeout=60,
            )
            assert all(r.campaign.status == pb.CAMPAIGN_STATUS_PLANNING for r in answer.results), "not queued"
    answered = time.perf_counter() - started
    dsn = suite.env["DATABASE_URL"]
    planned, _ = await wait_for_count(
        dsn,
        f"SELECT count(*) FROM planner.contact_campaigns WHERE tenant_id = '{TENANT}' AND planned_at IS NOT NULL",
        total,
        limit_seconds=max(600.0, total),
    )
    planning_seconds = time.perf_counter() - started
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT strategist, count(*) AS n FROM planner.contact_campaigns WHERE tenant_id = $1 "
            "AND planned_at IS NOT NULL GROUP BY strategist",
            TENANT,
        )
    finally:
        await conn.close()
    return {
        "answered_seconds": answered,
        "planned": planned,
        "planning_seconds": planning_seconds,
        "by_strategist": {r["strategist"]: r["n"] for r in rows},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--campaigns", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=1.0)
    args = parser.parse_args()
    n = str(args.concurrency)
    with running_suite(
        fake_openai_latency=args.latency,
        PLANNER_PLANNING_CONCURRENCY=n,
        PLANNER_PLANNING_TENANT_CONCURRENCY=n,
        PLANNER_AI_CONCURRENCY=n,
        PLANNER_AI_DAILY_CALLS=str(args.campaigns * 3),
        # About 1,400 tokens a call: the default 2,000,000 a day would plan ~1,400 with the model.
        PLANNER_AI_DAILY_TOKENS=str(args.campaigns * 5000),
        PLANNER_OUTBOX_POLL_SECONDS="0.2",
    ) as suite:
        print(f"machine: {machine()}")
        r = asyncio.run(run(suite, args.campaigns, args.batch))
    rate = r["planned"] / r["planning_seconds"]
    bound = args.concurrency / args.latency
    print(
        f"{args.campaigns} campaigns in batches of {args.batch}: answered in {r['answered_seconds']:.1f} s "
        f"({args.campaigns / r['answered_seconds']:.0f} campaigns/s), all in the planning status"
    )
    print(
        f"planned {r['planned']} in {r['planning_seconds']:.1f} s: {rate:.1f} campaigns/s with concurrency "
        f"{args.concurrency} and a {args.latency:g} s model (bound {bound:.1f}/s, {rate / bound:.0%} of it)"
    )
    print(f"by strategist: {r['by_strategist']}")
    assert r["by_strategist"] == {"openai": args.campaigns}, "not every campaign was planned by the model"


if __name__ == "__main__":
    main()
