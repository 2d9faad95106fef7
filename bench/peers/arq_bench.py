"""arq side of the scheduler peer benchmark: deferred jobs as durable timers.

Runs inside bench/peers/.venv-arq (arq is not in the project's locked environment):

    .venv-arq/bin/python arq_bench.py --port 6379 --mode fire   --n 20000 --spread-max 5
    .venv-arq/bin/python arq_bench.py --port 6379 --mode cancel --n 20000 --cancel-method abort
    .venv-arq/bin/python arq_bench.py --port 6379 --mode due    --n 20000 --rate 0 --lead 3

Prints one JSON line with the same keys as bullmq_bench.mjs. The worker runs in this process
(`Worker.async_run()` as a task), next to the enqueuer, as BullMQ's Worker runs next to its Queue
in the Node process. Every wait is bounded; the whole run is bounded by --timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.constants import default_queue_name, job_key_prefix
from arq.jobs import Job
from arq.worker import Worker, func

FAR_DELAY_S = 3600.0  # cancel mode: nothing may come due while we cancel
GOLDEN = 0.6180339887498949


def delay_s(i: int, lo: float, hi: float) -> float:
    """Same evenly spread delays as bullmq_bench.mjs (golden-ratio sequence, rounded to ms)."""
    return round((lo + (hi - lo) * ((i * GOLDEN) % 1)) * 1000) / 1000


class Fired:
    """What the job function saw; read by the benchmark in the same process."""

    def __init__(self, expected: int = 0) -> None:
        self.expected = expected
        self.all_fired = asyncio.Event()
        self.seen: set[str] = set()
        self.lateness_ms: list[float] = []
        self.duplicates = 0
        self.last_s = 0.0

    async def timer(self, ctx: dict[str, Any], i: int, due: float) -> None:
        now = time.time()
        job_id: str = ctx["job_id"]
        if job_id in self.seen:
            self.duplicates += 1
        self.seen.add(job_id)
        self.lateness_ms.append((now - due) * 1000)
        self.last_s = now
        if len(self.seen) == self.expected:
            self.all_fired.set()


def percentile(sorted_values: list[float], p: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))]


async def redis_memory(pool: ArqRedis) -> dict[str, int]:
    info = await pool.info("memory")
    # dataset = used_memory less Redis' own overhead, of which the ~`batch` pooled connections are a part.
    keys = {"used": "used_memory", "dataset": "used_memory_dataset", "rss": "used_memory_rss"}
    return {k: int(info[v]) for k, v in keys.items()}


def client_rss_peak() -> int:
    """This process's own peak (VmHWM). Not getrusage's ru_maxrss: Linux carries that across
    fork and exec, so it reports the parent's peak when the parent was larger."""
    for line in open("/proc/self/status").read().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


async def in_batches(n: int, batch: int, op: Callable[[int], Awaitable[Any]]) -> list[Any]:
    """arq has no bulk API: one gather of `batch` operations at a time, each on its own connection."""
    results: list[Any] = []
    for start in range(0, n, batch):
        results += await asyncio.gather(*(op(i) for i in range(start, min(n, start + batch))))
    return results


def make_worker(fired: Fired, settings: RedisSettings, pool: ArqRedis, args: argparse.Namespace, abort: bool) -> Worker:
    # Library defaults except max_jobs (= BullMQ's concurrency) and no signal handlers (we own the loop);
    # poll_delay stays arq's 0.5 s: arq polls the queue, it has no wake-up at the next due time.
    return Worker(
        functions=[func(fired.timer, name="timer")],
        redis_settings=settings,
        redis_pool=pool,
        max_jobs=args.concurrency,
        poll_delay=args.poll_delay,
        handle_signals=False,
        allow_abort_jobs=abort,
    )


async def stop_worker(worker: Worker, task: asyncio.Task[None]) -> None:
    # close() cancels the worker's main task and any job still running, then closes its pool.
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(worker.close(), timeout=30)
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=30)


async def fire(args: argparse.Namespace, settings: RedisSettings) -> dict[str, Any]:
    pool = await create_pool(settings)
    fired = Fired(args.n)
    # The worker runs before the first job is added, as a deployed consumer would.
    worker = make_worker(fired, settings, await create_pool(settings), args, abort=False)
    task = asyncio.create_task(worker.async_run())
    before = await redis_memory(pool)

    async def add(i: int) -> None:
        due = time.time() + delay_s(i, args.spread_min, args.spread_max)
        # _defer_until rather than _defer_by: arq's score is then exactly `due`, the time the job
        # measures its lateness against (with _defer_by arq stamps its own clock a few ms later).
        await pool.enqueue_job("timer", i, due, _job_id=f"f{i}", _defer_until=datetime.fromtimestamp(due, UTC))

    enqueue_start = time.time()
    started = time.perf_counter()
    await in_batches(args.n, args.batch, add)
    enqueue_s = time.perf_counter() - started
    after_enqueue = await redis_memory(pool)
    first_due = enqueue_start + args.spread_min  # no job can be due earlier
    # Until every timer fired, the worker died, or the last due time plus the drain limit passed.
    all_fired = asyncio.create_task(fired.all_fired.wait())
    await asyncio.wait({all_fired, task}, timeout=args.spread_max + args.drain_limit, return_when="FIRST_COMPLETED")
    all_fired.cancel()

    await stop_worker(worker, task)
    await pool.aclose()
    lateness = sorted(fired.lateness_ms)
    window = fired.last_s - first_due
    return {
        "mode": "fire",
        "enqueue_s": enqueue_s,
        "enqueue_per_s": args.n / enqueue_s,
        "fired": len(fired.seen),
        "duplicates": fired.duplicates,
        "fire_window_s": window,
        "fire_per_s": len(fired.seen) / max(1e-3, window),
        "lateness_p50_ms": percentile(lateness, 50),
        "lateness_p99_ms": percentile(lateness, 99),
        "lateness_max_ms": lateness[-1] if lateness else None,
        "redis_used_before": before["used"],
        "redis_used_after_enqueue": after_enqueue["used"],
        "redis_dataset_before": before["dataset"],
        "redis_dataset_after_enqueue": after_enqueue["dataset"],
        "redis_rss_after_enqueue": after_enqueue["rss"],
        "client_rss_peak": client_rss_peak(),
    }


async def cancel(args: argparse.Namespace, settings: RedisSettings) -> dict[str, Any]:
    pool = await create_pool(settings)
    before = await redis_memory(pool)
    started = time.perf_counter()
    await in_batches(
        args.n, args.batch, lambda i: pool.enqueue_job("timer", i, 0.0, _job_id=f"c{i}", _defer_by=FAR_DELAY_S)
    )
    enqueue_s = time.perf_counter() - started
    after_enqueue = await redis_memory(pool)

    worker: Worker | None = None
    task: asyncio.Task[None] | None = None
    ran = Fired()  # timers whose function ran although they were being cancelled
    if args.cancel_method == "abort":
        # Job.abort() is arq's API for cancelling. For a job that is still deferred it re-scores the
        # job to 1 (due now) and adds its id to arq:abort; a worker running with allow_abort_jobs
        # then picks it up, sees the abort mark, records a failed result (CancelledError) instead of
        # running it, and abort() returns True once it has polled (every 0.5 s) that result.
        # So arq's cancel needs a live worker and costs a worker pickup per timer. abort() re-scores
        # before it marks the abort, so a worker polling in between runs the job: it fires, and
        # abort() returns False. `fired_despite_cancel` counts those.
        worker = make_worker(ran, settings, await create_pool(settings), args, abort=True)
        task = asyncio.create_task(worker.async_run())

        async def op(i: int) -> bool:
            return await Job(f"c{i}", pool).abort(timeout=args.drain_limit)
    else:
        # What arq does not offer but a user can hand-roll: drop the id from the queue's sorted set
        # and delete the job's payload, in one MULTI. No worker, no result; a job a worker has
        # already picked up is not stopped by this.
        async def op(i: int) -> bool:
            async with pool.pipeline(transaction=True) as tr:
                tr.zrem(default_queue_name, f"c{i}")
                tr.delete(job_key_prefix + f"c{i}")
                removed, _ = await tr.execute()
            return bool(removed)

    started = time.perf_counter()
    cancelled = sum(1 for ok in await in_batches(args.n, args.batch, op) if ok)
    cancel_s = time.perf_counter() - started
    left = await pool.zcard(default_queue_name)
    if worker is not None and task is not None:
        await stop_worker(worker, task)
    await pool.aclose()
    return {
        "mode": "cancel",
        "cancel_method": args.cancel_method,
        "enqueue_s": enqueue_s,
        "enqueue_per_s": args.n / enqueue_s,
        "cancel_s": cancel_s,
        "cancel_per_s": cancelled / cancel_s,
        "cancelled": cancelled,
        "left_pending": left,
        "fired_despite_cancel": len(ran.seen),
        "redis_used_before": before["used"],
        "redis_used_after_enqueue": after_enqueue["used"],
        "redis_dataset_before": before["dataset"],
        "redis_dataset_after_enqueue": after_enqueue["dataset"],
        "redis_rss_after_enqueue": after_enqueue["rss"],
        "client_rss_peak": client_rss_peak(),
    }


async def due(args: argparse.Namespace, settings: RedisSettings) -> dict[str, Any]:
    """Timer i due at first_due + i / rate (all at first_due when rate is 0), all added before
    the first falls due, the worker started after; the same as bullmq_bench.mjs's due mode."""
    pool = await create_pool(settings)
    fired = Fired(args.n)
    first_due = time.time() + args.lead
    added_late = 0

    def due_of(i: int) -> float:
        return first_due + (i / args.rate if args.rate > 0 else 0.0)

    async def add(i: int) -> None:
        nonlocal added_late
        at = due_of(i)
        added_late += at <= time.time()
        await pool.enqueue_job("timer", i, at, _job_id=f"d{i}", _defer_until=datetime.fromtimestamp(at, UTC))

    started = time.perf_counter()
    await in_batches(args.n, args.batch, add)
    enqueue_s = time.perf_counter() - started
    worker = make_worker(fired, settings, await create_pool(settings), args, abort=False)
    task = asyncio.create_task(worker.async_run())
    ready_late_ms = max(0.0, time.time() - first_due) * 1000
    all_fired = asyncio.create_task(fired.all_fired.wait())
    limit = max(0.0, due_of(args.n - 1) - time.time()) + args.drain_limit
    await asyncio.wait({all_fired, task}, timeout=limit, return_when="FIRST_COMPLETED")
    all_fired.cancel()
    await stop_worker(worker, task)
    await pool.aclose()
    lateness = sorted(fired.lateness_ms)
    window = fired.last_s - first_due
    return {
        "mode": "due",
        "rate": args.rate,
        "enqueue_per_s": args.n / enqueue_s,
        "added_late": added_late,
        "worker_ready_late_ms": ready_late_ms,
        "fired": len(fired.seen),
        "duplicates": fired.duplicates,
        "drain_s": window,
        "drain_per_s": len(fired.seen) / max(1e-3, window),
        "lateness_p50_ms": percentile(lateness, 50),
        "lateness_p99_ms": percentile(lateness, 99),
        "lateness_max_ms": lateness[-1] if lateness else None,
    }


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", choices=["fire", "cancel", "due"], default="fire")
    p.add_argument("--rate", type=float, default=0.0, help="due: timers due per second, 0 = all at once")
    p.add_argument("--lead", type=float, default=3.0, help="due: s from the start to the first due time")
    p.add_argument("--cancel-method", choices=["abort", "delete"], default="abort")
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--spread-min", type=float, default=0.0)
    p.add_argument("--spread-max", type=float, default=5.0)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--poll-delay", type=float, default=0.5, help="arq's default")
    p.add_argument("--drain-limit", type=float, default=120.0, help="s after the last due time")
    p.add_argument("--timeout", type=float, default=900.0, help="s for the whole run")
    return p.parse_args()


async def main() -> None:
    args = parse()
    # Pool size unbounded (arq's default): each in-flight enqueue_job holds a connection for its WATCH.
    settings = RedisSettings(host="127.0.0.1", port=args.port)
    run = {"fire": fire, "cancel": cancel, "due": due}[args.mode]
    result = await asyncio.wait_for(run(args, settings), timeout=args.timeout)
    print(json.dumps({"peer": "arq", "version": importlib.metadata.version("arq"), "n": args.n, **result}))


if __name__ == "__main__":
    asyncio.run(main())
