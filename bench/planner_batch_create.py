"""BatchCreateCampaigns throughput: campaigns stored with step 0 scheduled in the scheduler.

    .venv/bin/python bench/planner_batch_create.py [--campaigns 20000] [--batch 1000] [--clients 2]

Runs the whole suite (as `make run` does), sends batches over gRPC from `--clients` concurrent
callers, and counts a campaign done when the scheduler holds its step-0 timer. Prints the
rate for the template strategist (no strategy in the request) and for explicit 5-step ones.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from harness import machine, running_suite, wait_for_count

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.planner.v1 import campaign_service_pb2_grpc as pb_grpc

ALWAYS = pb.SendWindow(weekdays=[1, 2, 3, 4, 5, 6, 7], start_hour=0, end_hour=24)
FIVE_STEPS = pb.Strategy(
    outreach_campaign=[
        pb.OutreachStep(
            type="email",
            timing=f"Day {day}",
            subject=f"Step {i} for {{{{first_name}}}}",
            content="About {{product_name}}",
            call_to_action="Reply?",
        )
        for i, day in enumerate((1, 3, 5, 8, 12))
    ]
)


def requests(run: str, start: int, count: int, explicit: bool) -> list[pb.CreateCampaignRequest]:
    return [
        pb.CreateCampaignRequest(
            request_id=f"{run}-{n}",
            lead=pb.Lead(lead_id=f"lead-{n}", company_name=f"Company {n}", industry="software"),
            contact=pb.Contact(
                contact_id=f"{run}-c{n}", email=f"person{n}@example.com", first_name=f"Ada{n}", time_zone="Europe/Paris"
            ),
            product=pb.Product(product_id="p-1", name="Widget", description="Widgets that save time."),
            sender_identity_id="sender-1",
            send_window=ALWAYS,
            strategy=FIVE_STEPS if explicit else None,
        )
        for n in range(start, start + count)
    ]


async def run_case(suite, tenant: str, total: int, batch: int, clients: int, explicit: bool) -> dict:  # type: ignore[no-untyped-def]
    batches = [requests(tenant, start, min(batch, total - start), explicit) for start in range(0, total, batch)]
    queue: asyncio.Queue = asyncio.Queue()
    for item in batches:
        queue.put_nowait(item)
    failures = 0
    steps = 0

    async def caller() -> None:
        nonlocal failures, steps
        async with suite.channel("PLANNER_GRPC_PORT", **{"grpc.max_receive_message_length": 64 << 20}) as ch:
            stub = pb_grpc.CampaignServiceStub(ch)
            while not queue.empty():
                items = queue.get_nowait()
                answer = await stub.BatchCreateCampaigns(
                    pb.BatchCreateCampaignsRequest(tenant_id=tenant, requests=items), timeout=120
                )
                failures += sum(1 for r in answer.results if r.HasField("error"))
                steps += sum(len(r.campaign.steps) for r in answer.results if r.HasField("campaign"))

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(clients)))
    rpc_seconds = time.perf_counter() - started
    count, _ = await wait_for_count(
        suite.env["DATABASE_URL"],
        f"SELECT count(*) FROM scheduler.timers WHERE tenant_id = '{tenant}' AND kind = 'step_due'",
        total,
        limit_seconds=300,
    )
    scheduled_seconds = time.perf_counter() - started
    return {
        "campaigns": total,
        "failed": failures,
        "avg_steps": steps / max(1, total - failures),
        "rpc_per_s": total / rpc_seconds,
        "scheduled": count,
        "end_to_end_per_s": count / scheduled_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--campaigns", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument(
        "--insecure", action="store_true", help="plaintext and no tokens (DRIPIQ_DEV_INSECURE): what security costs"
    )
    args = parser.parse_args()
    with running_suite(secure=not args.insecure) as suite:
        print(f"machine: {machine()}")
        for label, explicit in (("template strategist", False), ("explicit 5-step strategy", True)):
            tenant = "bench-" + ("explicit" if explicit else "template")
            r = asyncio.run(run_case(suite, tenant, args.campaigns, args.batch, args.clients, explicit))
            print(
                f"{label}: {r['campaigns']} campaigns in batches of {args.batch} from {args.clients} callers, "
                f"{r['failed']} failed, {r['avg_steps']:.1f} steps each; "
                f"RPCs answered at {r['rpc_per_s']:.0f} campaigns/s; "
                f"stored with step 0 in the scheduler at {r['end_to_end_per_s']:.0f} campaigns/s "
                f"({r['scheduled']} timers)"
            )


if __name__ == "__main__":
    main()
