"""The scheduler's peers, side by side: BullMQ delayed jobs and arq deferred jobs on Redis.

    .venv/bin/python bench/peers/run_peers.py --n 100000 --spread 10 --cancel-n 100000

Installs what is missing (install.py), then for each peer and mode starts a fresh private
redis-server on 127.0.0.1, runs the peer's script against it and stops it by PID. A fresh server
per run rather than FLUSHALL between runs: Redis' allocator keeps its pages after a flush, so
RSS would carry over from one peer to the next.

Workload, the same for every peer:
- fire: N timers, delay i = spread_min + spread * frac(i * golden ratio) from the moment each is
  added (evenly spread), added in batches of `batch` while one worker (`concurrency` jobs at a
  time) consumes them; lateness = start of the job function - the peer's own due time.
- cancel: cancel_n timers an hour out, each then cancelled by id, `batch` cancels in flight.

The dripiq scheduler benchmark imports `run_peers` and `format_ratios` (bench/ on sys.path):

    from peers.run_peers import format_ratios, run_peers
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the `peers` package importable from bench/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from peers.install import PEERS_DIR, Peers, install_all  # noqa: E402
from peers.redis_server import RedisServer  # noqa: E402

ARQ_DEFAULT_POLL_S = 0.5

# (key in a peer's result, label, higher is better); the keys dripiq's figures should use too.
METRICS: list[tuple[str, str, bool]] = [
    ("enqueue_per_s", "enqueue/s (worker running)", True),
    ("enqueue_idle_per_s", "enqueue/s (no worker)", True),
    ("fire_per_s", "fire/s (first due .. last fired)", True),
    ("lateness_p50_ms", "lateness p50 ms", False),
    ("lateness_p99_ms", "lateness p99 ms", False),
    ("lateness_max_ms", "lateness max ms", False),
    ("cancel_per_s", "cancel/s", True),
    ("cancel_keys_per_s", "cancel/s, hand-rolled ZREM+DEL", True),
    ("redis_rss_after_enqueue_mib", "Redis RSS after enqueue MiB", False),
    ("redis_rss_peak_mib", "Redis peak RSS MiB (fire run)", False),
    ("bytes_per_pending", "store bytes per pending timer", False),
    ("client_rss_peak_mib", "client+worker peak RSS MiB", False),
]
COUNTS: list[tuple[str, str]] = [
    ("fired", "fired of N"),
    ("duplicates", "fired twice"),
    ("cancelled", "cancelled of cancel N"),
    ("fired_despite_cancel", "fired while cancelling"),
    ("left_pending", "left pending after cancel"),
]
MIB = 1024 * 1024


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _run_once(peers: Peers, cmd: Callable[[int], list[str]], limit_s: float) -> dict[str, Any]:
    """One peer run against its own redis-server; the peer's JSON plus the server's peak RSS."""
    with RedisServer(peers.redis_server) as redis:
        started = time.monotonic()
        # On timeout subprocess.run kills the child (by its PID) before raising.
        done = subprocess.run(cmd(redis.port), capture_output=True, text=True, timeout=limit_s, cwd=PEERS_DIR)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd(redis.port))} exited {done.returncode}:\n{done.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        result["redis_rss_peak"] = redis.rss_bytes()[1]
        result["wall_s"] = time.monotonic() - started
        return result


def _merge(fire: Mapping[str, Any], cancel: Mapping[str, Any], keys_cancel: Mapping[str, Any] | None) -> dict[str, Any]:
    """One row of figures per peer, from its fire run and its cancel run(s)."""
    pending = max(1, cancel["n"])
    row: dict[str, Any] = {
        "version": fire["version"],
        **{k: fire[k] for k in ("enqueue_per_s", "fire_per_s", "fired", "duplicates")},
        **{k: fire[k] for k in ("lateness_p50_ms", "lateness_p99_ms", "lateness_max_ms")},
        "enqueue_idle_per_s": cancel["enqueue_per_s"],
        "cancel_per_s": cancel["cancel_per_s"],
        "cancelled": cancel["cancelled"],
        "left_pending": cancel["left_pending"],
        "fired_despite_cancel": cancel.get("fired_despite_cancel", 0),
        "cancel_keys_per_s": keys_cancel["cancel_per_s"] if keys_cancel else None,
        "redis_rss_after_enqueue_mib": fire["redis_rss_after_enqueue"] / MIB,
        "redis_rss_peak_mib": fire["redis_rss_peak"] / MIB,
        # Dataset growth with every timer still pending: no fired job, no client buffer skews it.
        "bytes_per_pending": (cancel["redis_dataset_after_enqueue"] - cancel["redis_dataset_before"]) / pending,
        "client_rss_peak_mib": fire["client_rss_peak"] / MIB,
        "wall_s": fire["wall_s"] + cancel["wall_s"] + (keys_cancel["wall_s"] if keys_cancel else 0.0),
    }
    return row


def run_peers(
    n: int,
    spread_seconds: float,
    cancel_n: int,
    *,
    spread_min_seconds: float = 0.0,
    batch: int = 1000,
    concurrency: int = 50,
    arq_poll_delays: Sequence[float] = (ARQ_DEFAULT_POLL_S, 0.05),
) -> dict[str, dict[str, Any]]:
    """Figures per peer: "bullmq", "arq" (arq's default 0.5 s poll), "arq_poll_<s>" per extra poll delay.

    Keys of each dict are those of METRICS and COUNTS, plus version and wall_s.
    """
    peers = install_all()
    _log(f"peers: redis-server {peers.redis_version}, bullmq {peers.bullmq_version}, arq {peers.arq_version}")
    spread_max = spread_min_seconds + spread_seconds
    # Bounds that hold for the slowest peer seen (arq's default poll: ~500 fires or aborts a second).
    drain_limit = 60 + max(n, cancel_n) / 250
    limit = 120 + max(n, cancel_n) / 100 + spread_max + drain_limit
    common = ["--batch", str(batch), "--concurrency", str(concurrency), "--drain-limit", str(drain_limit)]
    common += ["--timeout", str(limit)]
    fire_args = ["--mode", "fire", "--n", str(n)]
    fire_args += ["--spread-min", str(spread_min_seconds), "--spread-max", str(spread_max)]
    cancel_args = ["--mode", "cancel", "--n", str(cancel_n)]

    def bullmq(args: list[str]) -> Callable[[int], list[str]]:
        return lambda port: [peers.node, "bullmq_bench.mjs", "--port", str(port), *args, *common]

    def arq(args: list[str]) -> Callable[[int], list[str]]:
        return lambda port: [peers.arq_python, "arq_bench.py", "--port", str(port), *args, *common]

    results: dict[str, dict[str, Any]] = {}
    _log(f"bullmq: fire {n:,} ...")
    fire = _run_once(peers, bullmq(fire_args), limit + 30)
    _log(f"bullmq: cancel {cancel_n:,} ...")
    results["bullmq"] = _merge(fire, _run_once(peers, bullmq(cancel_args), limit + 30), None)

    _log(f"arq: cancel {cancel_n:,} by deleting its keys ...")
    keys = _run_once(peers, arq([*cancel_args, "--cancel-method", "delete"]), limit + 30)
    for poll in arq_poll_delays:
        name = "arq" if poll == ARQ_DEFAULT_POLL_S else f"arq_poll_{poll:g}"
        poll_args = ["--poll-delay", str(poll)]
        _log(f"{name}: fire {n:,} ...")
        fire = _run_once(peers, arq([*fire_args, *poll_args]), limit + 30)
        _log(f"{name}: cancel {cancel_n:,} with Job.abort() ...")
        cancel = _run_once(peers, arq([*cancel_args, *poll_args, "--cancel-method", "abort"]), limit + 30)
        results[name] = _merge(fire, cancel, keys)
    return results


P99_SUSTAINED_MS = 1000.0


def lead_seconds(n: int, enqueue_per_s: float) -> float:
    """Time from the start of a due run to its first due time: every timer is added before any
    falls due (twice the time the enqueue run took, plus two seconds)."""
    return 2.0 + 2.0 * n / max(enqueue_per_s, 1.0)


def run_pairs(
    peer: str,
    n: int,
    *,
    steady_rates: Sequence[int] = (),
    steady_seconds: float = 10.0,
    batch: int = 1000,
    concurrency: int = 50,
    cancel_method: str = "abort",
    poll_delay: float = ARQ_DEFAULT_POLL_S,
) -> dict[str, Any]:
    """The four figures dripiq is held to, for one peer ("bullmq" or "arq"):

    enqueue_per_s  N timers an hour out, `batch` a call, one call in flight (no worker)
    cancel_per_s   the same N cancelled by id, `batch` at a time
    drain_per_s    N timers all due at one moment, worker running: N / (last started - due)
    steady         per rate tried (ascending), p50/p99 lateness of rate x steady_seconds timers;
                   the search stops at the first rate whose p99 reaches 1 s or that loses one
    sustained_rate the highest rate tried with p99 < 1 s (None if none)
    """
    peers = install_all()
    script = {"bullmq": [peers.node, "bullmq_bench.mjs"], "arq": [peers.arq_python, "arq_bench.py"]}[peer]
    extra = ["--poll-delay", str(poll_delay), "--cancel-method", cancel_method] if peer == "arq" else []
    # arq's default poll drains ~500 a second: bounds that hold for it hold for BullMQ.
    drain_limit = 60 + n / 250
    limit = 120 + 3 * n / 250

    def cmd(*args: str) -> Callable[[int], list[str]]:
        common = ["--batch", str(batch), "--concurrency", str(concurrency), *extra]
        common += ["--drain-limit", str(drain_limit), "--timeout", str(limit)]
        return lambda port: [*script, "--port", str(port), *args, *common]

    _log(f"{peer}: enqueue and cancel {n:,} ...")
    cancel = _run_once(peers, cmd("--mode", "cancel", "--n", str(n)), limit + 30)
    enqueue_per_s = float(cancel["enqueue_per_s"])
    _log(f"{peer}: drain {n:,} due at once ...")
    lead = lead_seconds(n, enqueue_per_s)
    drain = _run_once(peers, cmd("--mode", "due", "--n", str(n), "--rate", "0", "--lead", f"{lead:.2f}"), limit + 30)
    steady: list[dict[str, Any]] = []
    sustained: int | None = None
    for rate in steady_rates:
        count = int(rate * steady_seconds)
        _log(f"{peer}: steady {rate:,}/s for {steady_seconds:g} s ...")
        args = [
            "--mode",
            "due",
            "--n",
            str(count),
            "--rate",
            str(rate),
            "--lead",
            f"{lead_seconds(count, enqueue_per_s):.2f}",
        ]
        run = _run_once(peers, cmd(*args), limit + steady_seconds + 30)
        keep = (
            "rate",
            "fired",
            "duplicates",
            "lateness_p50_ms",
            "lateness_p99_ms",
            "added_late",
            "worker_ready_late_ms",
        )
        steady.append({k: run[k] for k in keep})
        if run["fired"] < count or run["lateness_p99_ms"] >= P99_SUSTAINED_MS:
            break
        sustained = rate
    return {
        "version": cancel["version"],
        "enqueue_per_s": enqueue_per_s,
        "cancel_per_s": cancel["cancel_per_s"],
        "cancelled": cancel["cancelled"],
        "fired_despite_cancel": cancel.get("fired_despite_cancel", 0),
        "drain_per_s": drain["drain_per_s"],
        "drained": drain["fired"],
        "drain_duplicates": drain["duplicates"],
        "drain_added_late": drain["added_late"],
        "drain_worker_late_ms": drain["worker_ready_late_ms"],
        "steady": steady,
        "sustained_rate": sustained,
    }


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.1f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def format_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    names = list(results)
    header = ["", *(f"{p} {results[p]['version']}" for p in names)]
    rows = [[label, *(_fmt(results[p].get(k)) for p in names)] for k, label, _ in METRICS]
    rows += [[label, *(_fmt(results[p].get(k)) for p in names)] for k, label in COUNTS]
    rows.append(["wall time s", *(_fmt(results[p].get("wall_s")) for p in names)])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(r: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))

    return "\n".join([line(header), *(line(r) for r in rows)])


def format_ratios(ours: Mapping[str, Any], results: Mapping[str, Mapping[str, Any]], name: str = "dripiq") -> str:
    """`ours / peer` for every metric both have, and who is ahead on it."""
    out = [f"{'':34}" + "".join(f"{name + ' / ' + p:>28}" for p in results)]
    for key, label, higher_better in METRICS:
        cells = []
        for p in results:
            a, b = ours.get(key), results[p].get(key)
            if a is None or b is None or b == 0:
                cells.append(f"{'-':>28}")
                continue
            ahead = name if (a > b) == higher_better and a != b else (p if a != b else "even")
            cells.append(f"{f'{a / b:,.2f}x ({ahead} ahead)':>28}")
        out.append(f"{label:34}" + "".join(cells))
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description="BullMQ and arq under the scheduler's workload")
    p.add_argument("--n", type=int, default=100_000, help="timers to fire")
    p.add_argument("--spread", type=float, default=10.0, help="delays spread over this many seconds")
    p.add_argument("--spread-min", type=float, default=0.0, help="shortest delay, s")
    p.add_argument("--cancel-n", type=int, default=100_000, help="timers to cancel")
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=50, help="BullMQ concurrency, arq max_jobs")
    p.add_argument("--arq-poll", type=float, nargs="+", default=[ARQ_DEFAULT_POLL_S, 0.05], help="arq poll_delay(s)")
    a = p.parse_args()
    started = time.monotonic()
    results = run_peers(
        a.n,
        a.spread,
        a.cancel_n,
        spread_min_seconds=a.spread_min,
        batch=a.batch,
        concurrency=a.concurrency,
        arq_poll_delays=a.arq_poll,
    )
    print(
        f"scheduler peers: N={a.n:,} delays {a.spread_min:g}..{a.spread_min + a.spread:g} s, cancel N={a.cancel_n:,},"
        f" batch {a.batch}, concurrency {a.concurrency}, {time.monotonic() - started:.0f} s in all"
    )
    print(format_table(results))
    print(json.dumps({"n": a.n, "spread_s": a.spread, "cancel_n": a.cancel_n, "peers": results}))


if __name__ == "__main__":
    main()
