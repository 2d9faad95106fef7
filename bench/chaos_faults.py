"""The chaos benchmark's faults (bench/chaos.py): the state its concurrent parts share, the fault
schedule drawn from the seed, each fault applied to the running suite, and the supervisor that
starts again a process that exited by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import aiohttp

from dripiq_devtools.suite import Suite

SERVICES = ("planner", "dispatcher", "events", "edge", "scheduler")
FIRST_FAULT_AT = 5.0
# Quiet time after each fault, so what a fault did shows before the next one starts.
GAP_SECONDS = 10.0
# The dispatcher's default send timeout (DISPATCHER_SEND_TIMEOUT_SECONDS).
DEFAULT_SEND_TIMEOUT = 20.0
# What the fake SendGrid's latency endpoint accepts.
MAX_FAKE_LATENCY = 60.0


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
    NATS_NODE = "nats-node"
    POSTGRES = "postgres"
    PROVIDER_503 = "provider-503"
    PROVIDER_HANG = "provider-hang"


SERVERS = {FaultKind.NATS: "NATS", FaultKind.POSTGRES: "PostgreSQL"}


@dataclass(frozen=True)
class Fault:
    """One step of the schedule: what, when (seconds after the start) and for how long."""

    kind: FaultKind
    target: str = ""  # the process to kill, or the NATS node (its index)
    seconds: float = 0.0  # down time, or how long the fake misbehaves
    at: float = 0.0

    def describe(self, hang_seconds: float) -> str:
        if self.kind == FaultKind.KILL:
            return f"SIGKILL {self.target}, then start it again"
        if self.kind == FaultKind.NATS_NODE:
            return f"SIGKILL the NATS node leading the most streams, start it again after {self.seconds:.0f} s"
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
        return self.seconds + (3.0 if self.kind in (*SERVERS, FaultKind.NATS_NODE) else 0.0)


def plan_faults(
    rng: random.Random, hang_seconds: float, *, nats_nodes: int = 1, only: frozenset[FaultKind] | None = None
) -> list[Fault]:
    """Every fault once, in an order and with durations drawn from the seed (`only`: those kinds).

    On a NATS cluster one node is crashed instead of the whole server stopped: the streams keep
    their quorum on the other two, and the node catches up when it comes back."""
    nats = (
        Fault(FaultKind.NATS_NODE, seconds=round(rng.uniform(10, 20)))
        if nats_nodes > 1
        else Fault(FaultKind.NATS, seconds=round(rng.uniform(3, 8)))
    )
    faults = [Fault(FaultKind.KILL, name) for name in SERVICES] + [
        nats,
        Fault(FaultKind.POSTGRES, seconds=round(rng.uniform(3, 8))),
        Fault(FaultKind.PROVIDER_503, seconds=round(rng.uniform(60, 90))),
        Fault(FaultKind.PROVIDER_HANG, seconds=round(rng.uniform(5, 10))),
    ]
    rng.shuffle(faults)
    if only is not None:
        faults = [fault for fault in faults if fault.kind in only]
    planned, at = [], FIRST_FAULT_AT
    for fault in faults:
        planned.append(Fault(fault.kind, fault.target, fault.seconds, round(at, 1)))
        at += fault.lasts(hang_seconds) + GAP_SECONDS + rng.uniform(0, 4)
    return planned


def schedule_end(faults: list[Fault], hang_seconds: float) -> float:
    last = faults[-1]
    return last.at + last.lasts(hang_seconds)


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
    elif fault.kind == FaultKind.NATS_NODE:
        await crash_nats_node(run, fault.seconds)
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


async def crash_nats_node(run: Run, seconds: float) -> None:
    """SIGKILL the node of the cluster that leads the most streams (the harshest loss: every one
    of them elects a new leader while traffic flows); after `seconds`, start it again on the same
    ports and store."""
    cluster = run.suite.nats_cluster()
    async with run.suite_lock:
        meta = await asyncio.to_thread(cluster.wait_for_meta_leader)
        leaders = await asyncio.to_thread(cluster.stream_leaders)
        led = Counter(leaders.values())
        index = max(range(len(cluster.nodes)), key=lambda i: led[cluster.nodes[i].server_name])
        node = cluster.nodes[index]
        pid = node.pids()[0] if node.pids() else None
        await asyncio.to_thread(cluster.kill_node, index)
        also = ", and the JetStream meta leader" if meta == node.server_name else ""
        run.clock.say(
            f"  NATS node {index + 1} (pid {pid}) killed: it led {led[node.server_name]} of {len(leaders)} streams{also}"
        )
        began = time.monotonic()
        leader = await asyncio.to_thread(cluster.wait_for_meta_leader)
        run.clock.say(f"  meta leader {leader} after {time.monotonic() - began:.1f} s")
        try:
            await asyncio.sleep(seconds)
        finally:
            began = time.monotonic()
            await asyncio.to_thread(cluster.start_node, index)
        run.clock.say(
            f"  NATS node {index + 1} started again (pid {node.pids()[0]}) in {time.monotonic() - began:.1f} s"
        )


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
    restartable = set(run.suite.process_names())
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
