"""Chaos: N three-step email campaigns while every part of the suite is crashed or restarted in turn.

    .venv/bin/python bench/chaos.py [--n 20000] [--step-seconds 5] [--faults on|off]
                                    [--settle-timeout 900] [--seed 1] [--create-seconds S]

Starts the whole suite (as `make run` does, with short poll intervals as the end-to-end tests
use, and the fake SendGrid posting `processed` and `delivered` by itself one second after each
send), creates one verified sender identity, then creates N campaigns with BatchCreateCampaigns:
each an explicit strategy of three emails `--step-seconds` apart, in a send window that is always
open. The campaigns are created at an even pace over `--create-seconds` (by default as long as
the fault schedule), so every fault falls on live traffic; `--create-seconds 0` creates them as
fast as the planner answers. A batch that fails is sent again with the same request ids.

Meanwhile (`--faults on`) it works through a schedule of faults, shuffled by `--seed`, one at a
time, printing each as it happens: SIGKILL and restart of the planner, the dispatcher, the events
service, the edge and the scheduler; NATS stopped and started again (same port, same store);
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
import time
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import aiohttp
import asyncpg
import grpc
import orjson
from harness import machine, running_suite

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as dpb
from dripiq.dispatcher.v1 import dispatcher_service_pb2_grpc as dpb_grpc
from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.planner.v1 import campaign_service_pb2_grpc as pb_grpc
from dripiq_devtools.suite import PROCESSES, Suite

TENANT = "chaos"
STEPS = 3
SERVICES = ("planner", "dispatcher", "events", "edge", "scheduler")
ALWAYS = pb.SendWindow(weekdays=[1, 2, 3, 4, 5, 6, 7], start_hour=0, end_hour=24)
MAX_BATCH = 1000
CREATE_CALLERS = 2
FIRST_FAULT_AT = 5.0
# Quiet time after each fault, so what a fault did shows before the next one starts.
GAP_SECONDS = 10.0
# Seconds between attempts of a batch the planner did not take.
RETRY_SECONDS = 1.0
POLL_SECONDS = 2.0
PROGRESS_SECONDS = 10.0
# The dispatcher's default send timeout (DISPATCHER_SEND_TIMEOUT_SECONDS).
DEFAULT_SEND_TIMEOUT = 20.0
# How many examples of a problem the report names.
EXAMPLES = 5
FAKE_FETCH_TIMEOUT = 900.0
# What the fake SendGrid's latency endpoint accepts.
MAX_FAKE_LATENCY = 60.0
SUITE_ENV = {
    "SCHEDULER_POLL_SECONDS": "0.1",
    "PLANNER_OUTBOX_POLL_SECONDS": "0.2",
    "DISPATCHER_OUTBOX_POLL_SECONDS": "0.2",
    "EVENTS_OUTBOX_POLL_SECONDS": "0.2",
}
# Messages in these states may still change without anyone acting.
OPEN_MESSAGE_STATES = ("queued", "sending", "unknown")
RUNNING_CAMPAIGN_STATES = ("active", "paused")


class Clock:
    """Seconds since the first campaign was asked for; every line printed starts with it."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.started

    def say(self, text: str) -> None:
        print(f"[{self.now():7.1f} s] {text}", flush=True)


class FaultKind(StrEnum):
    KILL = "kill"
    NATS = "nats"
    POSTGRES = "postgres"
    PROVIDER_503 = "provider-503"
    PROVIDER_HANG = "provider-hang"


SERVERS = {FaultKind.NATS: "NATS", FaultKind.POSTGRES: "PostgreSQL"}


@dataclass(frozen=True)
class Fault:
    """One step of the schedule: what, when (seconds after the start) and for how long."""

    kind: FaultKind
    target: str = ""  # the process to kill
    seconds: float = 0.0  # down time, or how long the fake misbehaves
    at: float = 0.0

    def describe(self, hang_seconds: float) -> str:
        if self.kind == FaultKind.KILL:
            return f"SIGKILL {self.target}, then start it again"
        if self.kind in SERVERS:
            return f"stop {SERVERS[self.kind]} for {self.seconds:.0f} s, then start it again"
        if self.kind == FaultKind.PROVIDER_503:
            return f"fake SendGrid answers 503 to every send for {self.seconds:.0f} s"
        return f"fake SendGrid holds every answer {hang_seconds:.0f} s, for sends arriving in the next {self.seconds:.0f} s"

    def lasts(self, hang_seconds: float) -> float:
        """Roughly how long the fault takes, restarts and hung calls included."""
        if self.kind == FaultKind.KILL:
            return 3.0
        if self.kind == FaultKind.PROVIDER_HANG:
            return self.seconds + hang_seconds
        return self.seconds + (3.0 if self.kind in SERVERS else 0.0)


def plan_faults(rng: random.Random, hang_seconds: float) -> list[Fault]:
    """Every fault once, in an order and with durations drawn from the seed."""
    faults = [Fault(FaultKind.KILL, name) for name in SERVICES] + [
        Fault(FaultKind.NATS, seconds=round(rng.uniform(3, 8))),
        Fault(FaultKind.POSTGRES, seconds=round(rng.uniform(3, 8))),
        Fault(FaultKind.PROVIDER_503, seconds=round(rng.uniform(60, 90))),
        Fault(FaultKind.PROVIDER_HANG, seconds=round(rng.uniform(5, 10))),
    ]
    rng.shuffle(faults)
    planned, at = [], FIRST_FAULT_AT
    for fault in faults:
        planned.append(Fault(fault.kind, fault.target, fault.seconds, round(at, 1)))
        at += fault.lasts(hang_seconds) + GAP_SECONDS + rng.uniform(0, 4)
    return planned


def schedule_end(faults: list[Fault], hang_seconds: float) -> float:
    last = faults[-1]
    return last.at + last.lasts(hang_seconds)


def strategy(step_seconds: int) -> pb.Strategy:
    """Three emails; the follow-ups have no subject of their own, so they continue the thread."""
    return pb.Strategy(
        outreach_campaign=[
            pb.OutreachStep(
                type="email", timing="Day 0", subject="Hello {{first_name}}", content="About {{product_name}}"
            ),
            pb.OutreachStep(type="email", timing=f"PT{step_seconds}S", content="Any thoughts on {{product_name}}?"),
            pb.OutreachStep(type="email", timing=f"PT{step_seconds}S", content="Last note about {{product_name}}."),
        ]
    )


def campaign_request(n: int, identity_id: str, plan: pb.Strategy) -> pb.CreateCampaignRequest:
    return pb.CreateCampaignRequest(
        request_id=f"chaos-{n}",
        lead=pb.Lead(lead_id=f"lead-{n}", company_name=f"Company {n}"),
        contact=pb.Contact(contact_id=f"c-{n}", email=f"person{n}@example.com", first_name=f"Ada{n}"),
        product=pb.Product(product_id="p-1", name="Widget"),
        sender_identity_id=identity_id,
        send_window=ALWAYS,
        strategy=plan,
    )


async def verified_identity(address: str) -> str:
    async with grpc.aio.insecure_channel(address) as ch:
        stub = dpb_grpc.SenderIdentityServiceStub(ch)
        created = await stub.CreateSenderIdentity(
            dpb.CreateSenderIdentityRequest(tenant_id=TENANT, from_email="sales@acme.test", from_name="Acme"),
            timeout=30,
        )
        identity_id = created.sender_identity.sender_identity_id
        await stub.VerifySenderIdentity(
            dpb.VerifySenderIdentityRequest(tenant_id=TENANT, sender_identity_id=identity_id), timeout=30
        )
        return identity_id


@dataclass
class Run:
    """What the concurrent parts of a run share."""

    suite: Suite
    clock: Clock
    n: int
    deadline: float  # clock time after which nothing waits any longer
    http: aiohttp.ClientSession
    fake_url: str
    # Held while the schedule has a process or server down on purpose, and while the
    # supervisor restarts one: the two never act on the suite at once.
    suite_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    created: set[str] = field(default_factory=set)
    item_errors: Counter[str] = field(default_factory=Counter)
    creating_done: bool = False
    faults_done: bool = False
    # Clock times the last campaign was taken and the fault schedule ended.
    created_all_at: float = 0.0
    faults_done_at: float = 0.0
    unplanned_exits: list[str] = field(default_factory=list)
    injected_503: int = 0
    # Failures still queued when a window closed, used up by mail-send requests of the
    # benchmark's own (never accepted), and how many such requests it made.
    drained_503: int = 0
    own_requests: int = 0

    async def fake(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self.http.post(f"{self.fake_url}{path}", json=body) as answer:
            answer.raise_for_status()
            return await answer.json()  # type: ignore[no-any-return]


async def create_campaigns(run: Run, identity_id: str, step_seconds: int, create_seconds: float) -> None:
    """Every campaign asked for, at an even pace over create_seconds, each batch until it is taken."""
    plan = strategy(step_seconds)
    per_second = run.n / create_seconds if create_seconds > 0 else math.inf
    size = MAX_BATCH if math.isinf(per_second) else max(1, min(MAX_BATCH, math.ceil(per_second)))
    batches: asyncio.Queue[tuple[float, range]] = asyncio.Queue()
    for start in range(0, run.n, size):
        release = 0.0 if math.isinf(per_second) else start / per_second
        batches.put_nowait((release, range(start, min(start + size, run.n))))
    address = f"127.0.0.1:{run.suite.port('PLANNER_GRPC_PORT')}"

    async def caller() -> None:
        async with grpc.aio.insecure_channel(address, options=[("grpc.max_receive_message_length", 64 << 20)]) as ch:
            stub = pb_grpc.CampaignServiceStub(ch)
            while not batches.empty():
                release, numbers = batches.get_nowait()
                await asyncio.sleep(max(0.0, release - run.clock.now()))
                request = pb.BatchCreateCampaignsRequest(
                    tenant_id=TENANT, requests=[campaign_request(n, identity_id, plan) for n in numbers]
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


async def run_faults(run: Run, faults: list[Fault], hang_seconds: float) -> None:
    for fault in faults:
        await asyncio.sleep(max(0.0, fault.at - run.clock.now()))
        if run.clock.now() > run.deadline:
            break
        run.clock.say(f"fault: {fault.describe(hang_seconds)}")
        try:
            await apply_fault(run, fault, hang_seconds)
        except Exception as exc:  # noqa: BLE001 - a fault that could not be applied is reported, not fatal
            run.clock.say(f"fault {fault.kind} {fault.target} could not be applied: {exc!r}")
    run.faults_done = True
    run.faults_done_at = run.clock.now()
    run.clock.say("fault schedule done")


async def apply_fault(run: Run, fault: Fault, hang_seconds: float) -> None:
    suite = run.suite
    if fault.kind == FaultKind.KILL:
        async with run.suite_lock:
            pid = suite.children[fault.target].pid
            await asyncio.to_thread(suite.kill, fault.target)
            run.clock.say(f"  {fault.target} (pid {pid}) killed")
            await restart_timed(run, fault.target)
    elif fault.kind in SERVERS:
        nats = fault.kind == FaultKind.NATS
        stop, start = (suite.stop_nats, suite.start_nats) if nats else (suite.stop_postgres, suite.start_postgres)
        async with run.suite_lock:
            await asyncio.to_thread(stop)
            run.clock.say(f"  {SERVERS[fault.kind]} stopped")
            try:
                await asyncio.sleep(fault.seconds)
            finally:
                began = time.monotonic()
                await asyncio.to_thread(start)
            run.clock.say(f"  {SERVERS[fault.kind]} started again in {time.monotonic() - began:.1f} s")
    elif fault.kind == FaultKind.PROVIDER_503:
        await failing_provider(run, fault.seconds)
    else:
        await run.fake("/_fake/latency", {"seconds": hang_seconds})
        try:
            await asyncio.sleep(fault.seconds)
        finally:
            await run.fake("/_fake/latency", {"seconds": 0})
        run.clock.say(f"  fake SendGrid answers at once again (calls already held end within {hang_seconds:.0f} s)")
        await asyncio.sleep(hang_seconds)


async def restart_timed(run: Run, name: str) -> None:
    began = time.monotonic()
    await asyncio.to_thread(run.suite.restart, name)
    run.clock.say(f"  {name} ready again (pid {run.suite.children[name].pid}) in {time.monotonic() - began:.1f} s")


async def failing_provider(run: Run, seconds: float) -> None:
    """503 for every send during the window. The fake fails the next `count` sends it gets, so
    each tick reads how many are still queued (asking for one more) and tops the queue up to three
    times what was taken since the last tick; when the window closes, what is left is used up."""
    tick, least = 0.5, 50
    queued = 0
    ends = run.clock.now() + seconds
    try:
        while run.clock.now() < ends:
            pending = (await run.fake("/_fake/failures", {"status": 503, "count": 1}))["pending"]
            taken = max(0, queued + 1 - pending)
            target = max(least, 3 * taken)
            if pending < target:
                await run.fake("/_fake/failures", {"status": 503, "count": target - pending})
            run.injected_503 += 1 + max(0, target - pending)
            queued = max(pending, target)
            await asyncio.sleep(tick)
    finally:
        drained = await drain_failures(run)
    run.drained_503 += drained
    run.clock.say(f"  503 window over: {run.injected_503} failures queued in all, {drained} left over and used up")


async def drain_failures(run: Run) -> int:
    """Use up the failures still queued at the fake: while there is one, a send answers 503; an
    empty body then gets SendGrid's 400, so the benchmark itself never sends anything."""
    drained = 0
    headers = {"Authorization": "Bearer chaos", "Content-Type": "application/json"}
    while drained <= run.injected_503:
        async with run.http.post(f"{run.fake_url}/v3/mail/send", data=b"{}", headers=headers) as answer:
            await answer.read()
        run.own_requests += 1
        if answer.status != 503:
            break
        drained += 1
    return drained


async def supervise(run: Run, stop: asyncio.Event) -> None:
    """Start again any process that exited by itself, as an orchestrator would; report every one."""
    restartable = {p.name for p in PROCESSES}
    reported: set[tuple[str, int]] = set()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)
        async with run.suite_lock:
            for name in run.suite.dead_children():
                child = run.suite.children[name]
                if (name, child.pid) in reported:
                    continue
                reported.add((name, child.pid))
                run.unplanned_exits.append(f"{name} (exit {child.returncode}) at {run.clock.now():.0f} s")
                run.clock.say(f"{name} (pid {child.pid}) exited by itself with {child.returncode}")
                if name in restartable:
                    try:
                        await restart_timed(run, name)
                    except RuntimeError as exc:
                        run.clock.say(f"  {name} could not be started again: {exc}")


async def counts(dsn: str) -> tuple[Counter[str], Counter[str]] | None:
    """(campaigns by status, messages by status) of the tenant; None while PostgreSQL is away."""
    try:
        conn = await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return None
    try:
        campaigns = await conn.fetch(
            "SELECT status, count(*) FROM planner.contact_campaigns WHERE tenant_id = $1 GROUP BY status", TENANT
        )
        messages = await conn.fetch(
            "SELECT status, count(*) FROM dispatcher.messages WHERE tenant_id = $1 GROUP BY status", TENANT
        )
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return None
    finally:
        with contextlib.suppress(Exception):
            await conn.close()
    return Counter({r[0]: r[1] for r in campaigns}), Counter({r[0]: r[1] for r in messages})


def shown(counter: Counter[str]) -> str:
    return ", ".join(f"{key} {value}" for key, value in counter.most_common()) or "none"


async def wait_until_settled(run: Run) -> float | None:
    """Clock time at which everything had settled, or None if it had not by the deadline."""
    dsn = run.suite.env["DATABASE_URL"]
    last_progress = -math.inf
    while run.clock.now() < run.deadline:
        found = await counts(dsn)
        stats = await fake_stats(run)
        if found is not None and stats is not None:
            campaigns, messages = found
            settled = (
                run.creating_done
                and run.faults_done
                and sum(campaigns.values()) >= len(run.created)
                and not any(campaigns[s] for s in RUNNING_CAMPAIGN_STATES)
                and not any(messages[s] for s in OPEN_MESSAGE_STATES)
                and stats["events_pending"] == 0
            )
            if settled:
                return run.clock.now()
            if run.clock.now() - last_progress >= PROGRESS_SECONDS:
                last_progress = run.clock.now()
                run.clock.say(
                    f"progress: {len(run.created)}/{run.n} created; provider accepted {stats['accepted']} "
                    f"({stats['distinct_message_ids']} distinct), events pending {stats['events_pending']}; "
                    f"messages: {shown(messages)}; campaigns: {shown(campaigns)}"
                )
        await asyncio.sleep(POLL_SECONDS)
    return None


async def fake_stats(run: Run) -> dict[str, int] | None:
    try:
        async with run.http.get(f"{run.fake_url}/_fake/stats", timeout=aiohttp.ClientTimeout(total=30)) as answer:
            return await answer.json()  # type: ignore[no-any-return]
    except (aiohttp.ClientError, TimeoutError):
        return None


async def provider_sends(run: Run) -> list[dict[str, str]]:
    """custom_args of every send the fake accepted. The fake lists them all in one answer, so the
    body is read whole and only custom_args kept."""
    timeout = aiohttp.ClientTimeout(total=FAKE_FETCH_TIMEOUT)
    async with run.http.get(f"{run.fake_url}/_fake/messages", timeout=timeout) as answer:
        answer.raise_for_status()
        body = orjson.loads(await answer.read())
    return [m.get("custom_args") or {} for m in body["messages"]]


async def report(run: Run, settled_at: float | None) -> int:
    """Print the figures; the exit status: 0 only for no duplicates, nothing missing, all completed."""
    wanted = run.n * STEPS
    stats = await fake_stats(run) or {}
    sends = await provider_sends(run)
    per_id = Counter(args.get("message_id") for args in sends if args.get("tenant_id") == TENANT)
    per_id.pop(None, None)
    duplicated = {mid: c for mid, c in per_id.items() if c > 1}
    duplicates = sum(c - 1 for c in duplicated.values())
    missing = wanted - len(per_id)
    at_provider = {(args.get("campaign_id"), args.get("step_index")) for args in sends}

    conn = await asyncpg.connect(run.suite.env["DATABASE_URL"], timeout=30)
    try:
        campaigns = Counter(
            {
                r[0]: r[1]
                for r in await conn.fetch(
                    "SELECT status, count(*) FROM planner.contact_campaigns WHERE tenant_id = $1 GROUP BY status",
                    TENANT,
                )
            }
        )
        messages = Counter(
            {
                r[0]: r[1]
                for r in await conn.fetch(
                    "SELECT status, count(*) FROM dispatcher.messages WHERE tenant_id = $1 GROUP BY status", TENANT
                )
            }
        )
        cancel_reasons = await conn.fetch(
            "SELECT cancel_reason, count(*) FROM planner.contact_campaigns "
            "WHERE tenant_id = $1 AND status <> 'completed' GROUP BY 1 ORDER BY 2 DESC LIMIT $2",
            TENANT,
            EXAMPLES,
        )
        errors = await conn.fetch(
            "SELECT status, left(coalesce(last_error, ''), 160), count(*) FROM dispatcher.messages "
            "WHERE tenant_id = $1 AND status <> 'sent' GROUP BY 1, 2 ORDER BY 3 DESC LIMIT $2",
            TENANT,
            EXAMPLES,
        )
        steps = await conn.fetch(
            "SELECT s.campaign_id, s.step_index, s.status, c.status, m.status, m.attempt_count "
            "FROM planner.campaign_steps s JOIN planner.contact_campaigns c ON c.id = s.campaign_id "
            "LEFT JOIN dispatcher.messages m ON m.tenant_id = s.tenant_id AND m.campaign_id = s.campaign_id "
            "AND m.step_index = s.step_index WHERE s.tenant_id = $1",
            TENANT,
        )
        duplicate_rows = await conn.fetch(
            "SELECT status, attempt_count, count(*) FROM dispatcher.messages "
            "WHERE message_id = ANY($1::text[]) GROUP BY 1, 2 ORDER BY 3 DESC",
            list(duplicated),
        )
    finally:
        await conn.close()
    # Why each send the provider never accepted is missing: the step, its campaign, its message.
    missing_why = Counter(
        f"step {step}, campaign {campaign}, message {message or 'none'}"
        for campaign_id, index, step, campaign, message, _ in steps
        if (campaign_id, str(index)) not in at_provider
    )

    completed = campaigns["completed"]
    print()
    print(f"sends wanted:          {wanted} ({run.n} campaigns x {STEPS} emails)")
    print(
        f"at the provider:       {len(per_id)} distinct message ids; {stats.get('accepted', '?')} sends accepted of "
        f"{stats.get('requests_received', 0) - run.own_requests} requests from the dispatcher "
        f"({run.injected_503 - run.drained_503} of them answered 503 by the schedule)"
    )
    print(f"duplicates:            {duplicates} (message ids accepted more than once: {len(duplicated)})")
    if duplicated:
        print(f"  their messages now:  {', '.join(f'{r[0]} after {r[1]} attempts: {r[2]}' for r in duplicate_rows)}")
    print(f"missing:               {missing}")
    for why, count in missing_why.most_common(EXAMPLES):
        print(f"  {count:>6}  {why}")
    print(f"dispatcher messages:   {shown(messages)} ({sum(messages.values())} rows)")
    for status, error, count in errors:
        print(f"  {count:>6}  {status}: {error or '(no error recorded)'}")
    print(f"campaigns:             {shown(campaigns)} ({len(run.created)} of {run.n} created)")
    for reason, count in cancel_reasons:
        print(f"  {count:>6}  not completed: {reason or '(no reason recorded)'}")
    if run.item_errors:
        print(f"create errors:         {shown(run.item_errors)}")
    print(f"unplanned exits:       {'; '.join(run.unplanned_exits) or 'none'}")
    if settled_at is None:
        print(f"settled:               NO, not within {run.deadline:.0f} s of the start")
    else:
        after_faults = f", {settled_at - run.faults_done_at:.1f} s after the last fault" if run.faults_done_at else ""
        print(
            f"settled after:         {settled_at:.1f} s from the first campaign asked for "
            f"({settled_at - run.created_all_at:.1f} s after the last was created{after_faults})"
        )
    ok = duplicates == 0 and missing == 0 and completed == run.n and settled_at is not None
    print(f"result:                {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


async def chaos(suite: Suite, args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    hang_seconds = min(
        MAX_FAKE_LATENCY, float(suite.env.get("DISPATCHER_SEND_TIMEOUT_SECONDS", DEFAULT_SEND_TIMEOUT)) + 10
    )
    faults = plan_faults(rng, hang_seconds)
    create_seconds = schedule_end(faults, hang_seconds) if args.create_seconds is None else args.create_seconds
    print(
        f"{args.n} campaigns of {STEPS} emails {args.step_seconds} s apart, created over {create_seconds:.0f} s; "
        f"faults {args.faults}, seed {args.seed}"
    )
    if args.faults == "on":
        print("fault schedule:")
        for fault in faults:
            print(f"  at {fault.at:6.1f} s  {fault.describe(hang_seconds)}")
    identity_id = await verified_identity(f"127.0.0.1:{suite.port('DISPATCHER_GRPC_PORT')}")
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
