"""The chaos benchmark's end state (bench/chaos.py): waiting until everything has settled, and the
report of sends wanted, distinct, duplicated and missing, messages and campaigns by status.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import Counter

import aiohttp
import asyncpg
import orjson
from chaos_faults import Run

TENANT = "chaos"
STEPS = 3
POLL_SECONDS = 2.0
PROGRESS_SECONDS = 10.0
# How many examples of a problem the report names.
EXAMPLES = 5
FAKE_FETCH_TIMEOUT = 900.0
# Messages in these states may still change without anyone acting.
OPEN_MESSAGE_STATES = ("queued", "sending", "unknown")
RUNNING_CAMPAIGN_STATES = ("active", "paused")


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
