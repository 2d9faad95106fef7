"""Chaos: N three-step email campaigns while every part of the suite is crashed or restarted in turn.

    .venv/bin/python bench/chaos.py [--n 20000] [--step-seconds 5] [--faults on|off]
                                    [--settle-timeout 900] [--seed 1] [--create-seconds S]
                                    [--only nats-node,kill,...]

Starts the whole suite (as `make run` does, with short poll intervals as the end-to-end tests
use, and the fake SendGrid posting `processed` and `delivered` by itself one second after each
send), creates one verified sender identity, then creates N campaigns with BatchCreateCampaigns:
each an explicit strategy of three emails `--step-seconds` apart, in a send window that is always
open. The campaigns are created at an even pace over `--create-seconds` (by default as long as
the fault schedule), so every fault falls on live traffic; `--create-seconds 0` creates them as
fast as the planner answers. A batch that fails is sent again with the same request ids.

Meanwhile (`--faults on`) it works through a schedule of faults, shuffled by `--seed`, one at a
time, printing each as it happens: SIGKILL and restart of the planner, the dispatcher, the events
service, the edge and the scheduler; NATS stopped and started again (same port, same store), or
on a NATS cluster (DRIPIQ_NATS_CLUSTER=3) one node SIGKILLed and started again 10-20 s later;
PostgreSQL stopped and started again (same port, same data); the fake SendGrid answering 503 to
every send for 60-90 s; and the fake holding its answers longer than the dispatcher's send
timeout for a few seconds' worth of sends. A process that exits by itself is reported and
started again, as an orchestrator would.

Then it waits (at most `--settle-timeout` seconds) until every campaign has ended, no message is
queued, sending or unknown, and the fake has posted every event, and prints: sends wanted (N x 3),
distinct message ids the provider accepted (its `custom_args`), duplicates (accepted requests for
a message id beyond its first), missing sends (wanted minus distinct), the dispatcher's messages
by status, the campaigns by status, and how long everything took to settle. It exits non-zero
when there are duplicates or missing sends, or a campaign did not complete.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import sys
from collections import Counter
from collections.abc import Awaitable
from typing import Any

import aiohttp
import grpc
from campaigns import CREATE_CALLERS, MAX_BATCH, RETRY_SECONDS, SUITE_ENV, campaign_request, email_strategy
from chaos_checks import STEPS, TENANT, report, wait_until_settled
from chaos_faults import (
    DEFAULT_SEND_TIMEOUT,
    MAX_FAKE_LATENCY,
    Clock,
    FaultKind,
    Run,
    plan_faults,
    run_faults,
    schedule_end,
    supervise,
)
from harness import machine, running_suite, verified_identity

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.planner.v1 import campaign_service_pb2_grpc as pb_grpc
from dripiq_devtools.suite import Suite


async def create_campaigns(run: Run, identity_id: str, step_seconds: int, create_seconds: float) -> None:
    """Every campaign asked for, at an even pace over create_seconds, each batch until it is taken."""
    plan = email_strategy(step_seconds)
    per_second = run.n / create_seconds if create_seconds > 0 else math.inf
    size = MAX_BATCH if math.isinf(per_second) else max(1, min(MAX_BATCH, math.ceil(per_second)))
    batches: asyncio.Queue[tuple[float, range]] = asyncio.Queue()
    for start in range(0, run.n, size):
        release = 0.0 if math.isinf(per_second) else start / per_second
        batches.put_nowait((release, range(start, min(start + size, run.n))))

    async def caller() -> None:
        async with run.suite.channel("PLANNER_GRPC_PORT", **{"grpc.max_receive_message_length": 64 << 20}) as ch:
            stub = pb_grpc.CampaignServiceStub(ch)
            while not batches.empty():
                release, numbers = batches.get_nowait()
                await asyncio.sleep(max(0.0, release - run.clock.now()))
                request = pb.BatchCreateCampaignsRequest(
                    tenant_id=TENANT, requests=[campaign_request("chaos", n, identity_id, plan) for n in numbers]
                )
                await create_batch(run, stub, request, numbers)

    await asyncio.gather(*(caller() for _ in range(CREATE_CALLERS)))
    run.creating_done = True
    run.created_all_at = run.clock.now()
    run.clock.say(f"campaigns: {len(run.created)} of {run.n} created")


async def create_batch(run: Run, stub: pb_grpc.CampaignServiceStub, request: Any, numbers: range) -> None:
    failures: list[str] = []
    while run.clock.now() < run.deadline:
        try:
            answer = await stub.BatchCreateCampaigns(request, timeout=60)
        except grpc.aio.AioRpcError as exc:
            failures.append(exc.code().name)
            if len(failures) == 1:
                run.clock.say(f"campaigns {numbers[0]}..{numbers[-1]}: {exc.code().name} ({exc.details()}); retrying")
            await asyncio.sleep(RETRY_SECONDS)
            continue
        for n, result in zip(numbers, answer.results, strict=True):
            if result.HasField("campaign"):
                run.created.add(f"chaos-{n}")
            else:
                run.item_errors[f"{result.error.code}: {result.error.message}"] += 1
        if failures:
            run.clock.say(f"campaigns {numbers[0]}..{numbers[-1]}: taken after {len(failures) + 1} attempts")
        return
    run.clock.say(f"campaigns {numbers[0]}..{numbers[-1]}: never taken ({Counter(failures)})")


async def chaos(suite: Suite, args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    hang_seconds = min(
        MAX_FAKE_LATENCY, float(suite.env.get("DISPATCHER_SEND_TIMEOUT_SECONDS", DEFAULT_SEND_TIMEOUT)) + 10
    )
    only = frozenset(FaultKind(kind) for kind in args.only.split(",")) if args.only else None
    faults = plan_faults(rng, hang_seconds, nats_nodes=suite.nats_nodes, only=only)
    create_seconds = schedule_end(faults, hang_seconds) if args.create_seconds is None else args.create_seconds
    print(
        f"{args.n} campaigns of {STEPS} emails {args.step_seconds} s apart, created over {create_seconds:.0f} s; "
        f"faults {args.faults}, seed {args.seed}"
    )
    if args.faults == "on":
        print("fault schedule:")
        for fault in faults:
            print(f"  at {fault.at:6.1f} s  {fault.describe(hang_seconds)}")
    identity_id = await verified_identity(suite, TENANT)
    async with aiohttp.ClientSession() as http:
        clock = Clock()
        run = Run(
            suite=suite,
            clock=clock,
            n=args.n,
            deadline=max(create_seconds, schedule_end(faults, hang_seconds) if args.faults == "on" else 0)
            + args.settle_timeout,
            http=http,
            fake_url=suite.env["SENDGRID_API_HOST"],
        )
        stop = asyncio.Event()
        tasks: list[Awaitable[None]] = [create_campaigns(run, identity_id, args.step_seconds, create_seconds)]
        if args.faults == "on":
            tasks.append(run_faults(run, faults, hang_seconds))
        else:
            run.faults_done = True
        supervisor = asyncio.create_task(supervise(run, stop))
        working = asyncio.gather(*tasks)
        settled_at = await wait_until_settled(run)
        await finish(working, stop, supervisor)
        return await report(run, settled_at)


async def finish(working: asyncio.Future[Any], stop: asyncio.Event, supervisor: asyncio.Task[None]) -> None:
    if not working.done():
        working.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await working
    stop.set()
    await supervisor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000, help="campaigns (3 emails each)")
    parser.add_argument("--step-seconds", type=int, default=5, help="seconds between a campaign's emails")
    parser.add_argument("--faults", choices=["on", "off"], default="on")
    parser.add_argument(
        "--settle-timeout", type=float, default=900.0, help="seconds to wait after creation and faults end"
    )
    parser.add_argument("--seed", type=int, default=1, help="order and lengths of the faults")
    parser.add_argument(
        "--only",
        default="",
        help=f"only these fault kinds, comma-separated ({', '.join(FaultKind)}); default: every one",
    )
    parser.add_argument(
        "--create-seconds",
        type=float,
        default=None,
        help="spread the creates over this long (default: the fault schedule's length; 0: all at once)",
    )
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with running_suite(fake_auto_events_delay=1.0, **SUITE_ENV) as suite:
        status = asyncio.run(chaos(suite, args))
    sys.exit(status)


if __name__ == "__main__":
    main()
