"""Campaigns as the whole-path benchmarks create them: explicit strategies of email steps seconds
apart, in a send window that is always open, created with BatchCreateCampaigns in batches that
are sent again, with the same request ids, until the planner takes them.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.struct_pb2 import Struct

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.planner.v1 import campaign_service_pb2_grpc as pb_grpc
from dripiq_devtools.suite import Suite

ALWAYS = pb.SendWindow(weekdays=[1, 2, 3, 4, 5, 6, 7], start_hour=0, end_hour=24)
MAX_BATCH = 1000
CREATE_CALLERS = 2
# Seconds between attempts of a batch the planner did not take.
RETRY_SECONDS = 1.0
# Short poll intervals, as the end-to-end tests use: a whole-path run measures work, not naps.
SUITE_ENV = {
    "SCHEDULER_POLL_SECONDS": "0.1",
    "PLANNER_OUTBOX_POLL_SECONDS": "0.2",
    "DISPATCHER_OUTBOX_POLL_SECONDS": "0.2",
    "EVENTS_OUTBOX_POLL_SECONDS": "0.2",
}


def email_strategy(
    step_seconds: int, *, steps: int = 3, link: str = "", rules: Sequence[pb.AdaptiveRule] = ()
) -> pb.Strategy:
    """`steps` emails `step_seconds` apart; the follow-ups have no subject of their own, so they
    continue the thread. With a link, every step carries it (for click tracking)."""
    tail = f" [A two-minute tour]({link})" if link else ""
    first = pb.OutreachStep(
        type="email", timing="Day 0", subject="Hello {{first_name}}", content=f"About {{{{product_name}}}}.{tail}"
    )
    follow_ups = [
        pb.OutreachStep(
            type="email", timing=f"PT{step_seconds}S", content=f"Note {n} about {{{{product_name}}}}.{tail}"
        )
        for n in range(1, steps)
    ]
    return pb.Strategy(outreach_campaign=[first, *follow_ups], adaptive_rules=list(rules))


def rule(trigger: str, action: str, **payload: Any) -> pb.AdaptiveRule:
    struct = Struct()
    struct.update(payload)
    return pb.AdaptiveRule(trigger=trigger, action=pb.RuleAction(type=action, payload=struct))


def campaign_request(prefix: str, n: int, identity_id: str, plan: pb.Strategy) -> pb.CreateCampaignRequest:
    return pb.CreateCampaignRequest(
        request_id=f"{prefix}-{n}",
        lead=pb.Lead(lead_id=f"lead-{n}", company_name=f"Company {n}"),
        contact=pb.Contact(contact_id=f"c-{n}", email=f"person{n}@example.com", first_name=f"Ada{n}"),
        product=pb.Product(product_id="p-1", name="Widget"),
        sender_identity_id=identity_id,
        send_window=ALWAYS,
        strategy=plan,
    )


@dataclass
class Created:
    campaign_ids: dict[int, str] = field(default_factory=dict)
    item_errors: Counter[str] = field(default_factory=Counter)
    refused_batches: Counter[str] = field(default_factory=Counter)


async def create_campaigns(
    suite: Suite,
    tenant_id: str,
    requests: Iterable[tuple[int, pb.CreateCampaignRequest]],
    *,
    deadline_seconds: float,
    callers: int = CREATE_CALLERS,
) -> Created:
    """Every request sent as fast as the planner takes them, `callers` batches in flight."""
    batches: asyncio.Queue[list[tuple[int, pb.CreateCampaignRequest]]] = asyncio.Queue()
    batch: list[tuple[int, pb.CreateCampaignRequest]] = []
    for item in requests:
        batch.append(item)
        if len(batch) == MAX_BATCH:
            batches.put_nowait(batch)
            batch = []
    if batch:
        batches.put_nowait(batch)
    created = Created()
    deadline = time.monotonic() + deadline_seconds

    async def caller() -> None:
        async with suite.channel("PLANNER_GRPC_PORT", **{"grpc.max_receive_message_length": 64 << 20}) as ch:
            stub = pb_grpc.CampaignServiceStub(ch)
            while not batches.empty():
                items = batches.get_nowait()
                request = pb.BatchCreateCampaignsRequest(tenant_id=tenant_id, requests=[r for _, r in items])
                while time.monotonic() < deadline:
                    try:
                        answer = await stub.BatchCreateCampaigns(request, timeout=60)
                    except grpc.aio.AioRpcError as exc:
                        created.refused_batches[exc.code().name] += 1
                        await asyncio.sleep(RETRY_SECONDS)
                        continue
                    for (n, _), result in zip(items, answer.results, strict=True):
                        if result.HasField("campaign"):
                            created.campaign_ids[n] = result.campaign.campaign_id
                        else:
                            created.item_errors[f"{result.error.code}: {result.error.message}"] += 1
                    break

    await asyncio.gather(*(caller() for _ in range(callers)))
    return created
