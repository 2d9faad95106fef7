"""The whole funnel: N three-email campaigns whose recipients open, click, reply and leave at
production's rates, and the rules that react to them.

    .venv/bin/python bench/funnel.py [--n 2000] [--step-seconds 5] [--seed 1] [--settle-timeout 300]
        [--delivered 0.97] [--deferred 0] [--open 0.45] [--machine-open 0.10] [--click 0.08]
        [--reply 0.03] [--out-of-office 0.02] [--unsubscribe 0.01] [--anchor-n N] [--pg-stats 15]

Starts the whole suite (as `make run` does, with the short poll intervals of the end-to-end
tests), verifies a sender, and gives the fake SendGrid an engagement profile (its
`engagement` module, seeded): each accepted message is processed, then delivered or bounced, then
opened (by a person or, `sg_machine_open`, by a privacy proxy), clicked, unsubscribed from
(the one-click List-Unsubscribe POST our mail offers), replied to or answered by an
out-of-office reply, each a moment after the last, at the rates given (shares of delivered
mail; the defaults are a B2B mix). It creates N campaigns of three emails `--step-seconds` apart,
always inside their send window, whose rules react: an open sends the next step 1 s later, a
click at once, a reply, an unsubscribe or a bounce cancels the campaign, an out-of-office reply
pauses it until the day it names (the defaults for those). Then it waits (at most
`--settle-timeout` s) until no campaign is active, no message is queued, sending or unknown, and
the fake has posted everything, and prints:

- touchpoints (sends the fake accepted) per second, from the first create to the last send;
- engagement events stored per second over the same span;
- CPU seconds per touchpoint by process (planner, scheduler, dispatcher, events, edge,
  this suite's PostgreSQL, NATS, the fake SendGrid, this benchmark);
- lateness of rule-driven steps: from the open or click reaching the edge (the edge's 2xx to
  the fake) to the next step's send reaching the fake, less the delay the rule asks for, p50/p99;
- campaigns by final status and reason, against what the fake's own record of the engagement it
  posted predicts, and the per-message rates it posted against the profile.

Then the anchor, on the same suite right after: the dispatcher's bare send path, as many
SendMessageCommands as the funnel made touchpoints, published straight onto its stream (no
campaign, timer, rule or engagement beyond `processed` and `delivered`), timed to the last SENT
outcome. The ratio is funnel touchpoints/s over bare sends/s: what share of the send path's pace
the whole funnel keeps once planning, timers, engagement and rules ride along.

`--pg-stats N` loads pg_stat_statements into this run's PostgreSQL (only this benchmark's server)
and prints the N statements that took the most execution time during the funnel, per touchpoint.

Exits non-zero on a duplicate send (more than one accepted request for a message id) or a
missing one (a step the planner recorded as sent that the fake never accepted, a completed
campaign short of a step, a message that failed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
from campaigns import SUITE_ENV, campaign_request, create_campaigns, email_strategy, rule
from harness import cpu_snapshot, machine, percentile, publish_all, ratio_line, running_suite, verified_identity

from dripiq.dispatcher.v1 import messages_pb2
from dripiq_common.bus.contract import Subjects
from dripiq_devtools import servers
from dripiq_devtools.suite import Suite

TENANT = "funnel"
ANCHOR_TENANT = "funnel-anchor"
STEPS = 3
LINK = "https://widget.example/tour"
# What the rules ask for, in seconds after the engagement: lateness is measured past these.
RULE_DELAYS = {"open": 1, "click": 0}
POLL_SECONDS = 2.0
PROGRESS_SECONDS = 10.0
OPEN_MESSAGE_STATES = ("queued", "sending", "unknown")
RUNNING_CAMPAIGN_STATES = ("planning", "active")
# Engagement that ends a campaign, and the cancel reason the default rules give it.
STOPS = {"bounce": "bounce", "unsubscribe": "unsubscribe", "reply": "reply"}
SUPPRESSED = "canceled: contact suppressed"
SUPPRESSING = ("bounce", "unsubscribe")
PROCESSES = ("planner", "scheduler", "dispatcher", "events", "edge", "postgres", "nats", "fake-sendgrid", "bench")


@dataclass
class Observed:
    """What the fake saw: every send and every link of engagement it posted (epoch seconds)."""

    sends: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    by_step: dict[tuple[str, int], float] = field(default_factory=dict)
    posted: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    kinds: Counter[str] = field(default_factory=Counter)

    @classmethod
    def of(cls, log: dict[str, Any]) -> Observed:
        seen = cls()
        for send in log["sends"]:
            args = send["custom_args"]
            if args.get("tenant_id") != TENANT:
                continue
            seen.sends[args["message_id"]].append(send)
            key = (args["campaign_id"], int(args["step_index"]))
            seen.by_step[key] = min(seen.by_step.get(key, send["received_at"]), send["received_at"])
        for link in log["posted"]:
            args = link["custom_args"]
            if args.get("tenant_id") == TENANT and "message_id" in args:
                seen.posted[args["message_id"]].setdefault(link["kind"], link["at"])
                seen.kinds[link["kind"]] += 1
        return seen


def profile(args: argparse.Namespace, edge: str) -> dict[str, Any]:
    return {
        "seed": args.seed,
        "delivered": args.delivered,
        "deferred": args.deferred,
        "open": args.open,
        "machine_open": args.machine_open,
        "click": args.click,
        "reply": args.reply,
        "out_of_office": args.out_of_office,
        "unsubscribe": args.unsubscribe,
        "inbound_url": f"{edge}/webhooks/sendgrid/inbound",
    }


async def counts(conn: asyncpg.Connection) -> tuple[Counter[str], Counter[str]]:
    campaigns = await conn.fetch(
        "SELECT status, count(*) FROM planner.contact_campaigns WHERE tenant_id = $1 GROUP BY status", TENANT
    )
    messages = await conn.fetch(
        "SELECT status, count(*) FROM dispatcher.messages WHERE tenant_id = $1 GROUP BY status", TENANT
    )
    return Counter({r[0]: r[1] for r in campaigns}), Counter({r[0]: r[1] for r in messages})


def shown(counter: Counter[str]) -> str:
    return ", ".join(f"{key} {value}" for key, value in counter.most_common()) or "none"


async def wait_until_settled(
    conn: asyncpg.Connection, http: aiohttp.ClientSession, fake: str, created: int, started: float, limit: float
) -> bool:
    last_progress = -1e9
    while time.perf_counter() - started < limit:
        campaigns, messages = await counts(conn)
        async with http.get(f"{fake}/_fake/stats") as answer:
            stats = await answer.json()
        if (
            sum(campaigns.values()) >= created
            and not any(campaigns[s] for s in RUNNING_CAMPAIGN_STATES)
            and not any(messages[s] for s in OPEN_MESSAGE_STATES)
            and stats["events_pending"] == 0
        ):
            return True
        now = time.perf_counter() - started
        if now - last_progress >= PROGRESS_SECONDS:
            last_progress = now
            print(
                f"  {now:5.0f} s: provider accepted {stats['accepted']}, engagement pending {stats['events_pending']}; "
                f"messages: {shown(messages)}; campaigns: {shown(campaigns)}",
                flush=True,
            )
        await asyncio.sleep(POLL_SECONDS)
    return False


def lateness(decisions: list[asyncpg.Record], seen: Observed, step_seconds: int) -> tuple[list[float], list[float]]:
    """(lateness past the rule's delay, engagement-to-send) for each step a rule brought forward.

    A step is rule-driven when the rule's due time (engagement at the edge + its delay) came
    before the step's own timing (the previous send + step_seconds); its lateness is its send
    reaching the fake minus that due time."""
    due: dict[tuple[str, int], tuple[float, float]] = {}
    for d in decisions:
        at = seen.posted.get(d["message_id"], {}).get(d["trigger"])
        if at is None:
            continue
        key = (d["campaign_id"], d["step_index"] + 1)
        candidate = (at + RULE_DELAYS[d["trigger"]], at)
        if key not in due or candidate < due[key]:
            due[key] = candidate
    late, raw = [], []
    for key, (rule_due, engaged_at) in due.items():
        sent = seen.by_step.get(key)
        previous = seen.by_step.get((key[0], key[1] - 1))
        if sent is None or previous is None or rule_due >= previous + step_seconds:
            continue
        late.append(sent - rule_due)
        raw.append(sent - engaged_at)
    return late, raw


def predicted_status(campaign_id: str, seen: Observed, message_ids: dict[tuple[str, int], str]) -> str:
    """What the fake's record of posted engagement says the campaign should have ended as."""
    timeline: list[tuple[float, str]] = []
    for step in range(STEPS):
        message_id = message_ids.get((campaign_id, step))
        if message_id is None:
            continue
        for kind, at in seen.posted.get(message_id, {}).items():
            if kind in STOPS or kind == "out_of_office":
                timeline.append((at, kind))
    last_send = seen.by_step.get((campaign_id, STEPS - 1))
    if last_send is not None:
        timeline.append((last_send, "last step sent"))
    status = "active"
    for _, what in sorted(timeline):
        if what == "last step sent" and status == "active":
            status = "completed"
        elif what == "out_of_office" and status == "active":
            status = "paused"
        elif what in STOPS and status in ("active", "paused"):
            status = f"canceled: {STOPS[what]}"
    return status


def agrees(predicted: str, found: str) -> bool:
    """A bounce or an unsubscribe suppresses the address too: when the dispatcher's suppression
    stops the next send before the planner has read the engagement, the campaign ends as
    suppressed, which is the same outcome reached by the other path."""
    return predicted == found or (found == SUPPRESSED and predicted in (f"canceled: {r}" for r in SUPPRESSING))


def anchor_command(n: int, identity_id: str) -> bytes:
    return messages_pb2.SendMessageCommand(
        tenant_id=ANCHOR_TENANT,
        message_id=str(uuid.UUID(int=n + 1)),
        campaign_id=f"anchor-{n}",
        step_index=0,
        contact_id=f"contact-{n}",
        channel="email",
        to_email=f"anchor{n}@example.com",
        to_name="Lead",
        sender_identity_id=identity_id,
        subject="Hello",
        body_text=f"About Widget. [A two-minute tour]({LINK})",
    ).SerializeToString()


async def bare_sends(suite: Suite, http: aiohttp.ClientSession, count: int, limit: float) -> tuple[int, float]:
    """(SENT outcomes, seconds) for `count` commands published straight onto the dispatcher's stream."""
    fake = suite.env["SENDGRID_API_HOST"]
    async with http.delete(f"{fake}/_fake/engagement") as answer:
        answer.raise_for_status()
    identity_id = await verified_identity(suite, ANCHOR_TENANT)
    nc = await suite.nats_connect(pending_size=256 * 1024 * 1024)
    sent: set[str] = set()
    done = asyncio.Event()

    async def on_outcome(msg: Any) -> None:
        outcome = messages_pb2.MessageOutcome.FromString(msg.data)
        if outcome.kind == messages_pb2.OUTCOME_KIND_SENT:
            sent.add(outcome.message_id)
            if len(sent) >= count:
                done.set()

    await nc.subscribe(Subjects.message_outcome(ANCHOR_TENANT), cb=on_outcome, pending_msgs_limit=10_000_000)
    started = time.perf_counter()
    await publish_all(
        nc.jetstream(),
        Subjects.dispatcher_send(ANCHOR_TENANT),
        ((f"anchor-{n}", anchor_command(n, identity_id)) for n in range(count)),
    )
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), timeout=limit)
    seconds = time.perf_counter() - started
    await nc.close()
    return len(sent), seconds


async def funnel(suite: Suite, args: argparse.Namespace) -> int:
    fake = suite.env["SENDGRID_API_HOST"]
    edge = f"http://127.0.0.1:{suite.port('EDGE_PORT')}"
    dsn = suite.env["DATABASE_URL"]
    identity_id = await verified_identity(suite, TENANT)
    plan = email_strategy(
        args.step_seconds,
        steps=STEPS,
        link=LINK,
        rules=[
            rule("open", "schedule_next_step", delaySeconds=RULE_DELAYS["open"]),
            rule("click", "schedule_next_step", delaySeconds=RULE_DELAYS["click"]),
        ],
    )
    conn = await asyncpg.connect(dsn)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{fake}/_fake/engagement", json=profile(args, edge)) as answer:
            if answer.status != 200:
                print(f"the fake refused the profile: {await answer.text()}")
                return 2
        print(f"{args.n} campaigns of {STEPS} emails {args.step_seconds} s apart; engagement {profile(args, edge)}")
        if args.pg_stats:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            await conn.execute("SELECT pg_stat_statements_reset()")
        before = cpu_snapshot(suite)
        wall_started, started = time.time(), time.perf_counter()
        created = await create_campaigns(
            suite,
            TENANT,
            ((n, campaign_request("funnel", n, identity_id, plan)) for n in range(args.n)),
            deadline_seconds=args.settle_timeout,
        )
        print(
            f"created {len(created.campaign_ids)} of {args.n} in {time.perf_counter() - started:.1f} s"
            + (f"; refused items {dict(created.item_errors)}" if created.item_errors else "")
            + (f"; refused batches {dict(created.refused_batches)}" if created.refused_batches else ""),
            flush=True,
        )
        settled = await wait_until_settled(conn, http, fake, len(created.campaign_ids), started, args.settle_timeout)
        settled_seconds = time.perf_counter() - started
        after = cpu_snapshot(suite)
        async with http.get(f"{fake}/_fake/engagement/log") as answer:
            seen = Observed.of(await answer.json())
        async with http.get(f"{fake}/_fake/stats") as answer:
            stats = await answer.json()
        status = await report(conn, args, seen, stats, before, after, wall_started, settled, settled_seconds)
        touchpoints = len(seen.sends)
        if args.pg_stats:
            await statements(conn, args.pg_stats, touchpoints)
        span = max(s["received_at"] for sends in seen.sends.values() for s in sends) - wall_started
        ours = touchpoints / span
        print(f"anchor: {touchpoints} commands straight onto the dispatcher's stream, same suite ...", flush=True)
        anchored, seconds = await bare_sends(suite, http, args.anchor_n or touchpoints, args.settle_timeout)
        anchor = anchored / seconds
        print(
            f"anchor: {anchored} SENT outcomes in {seconds:.1f} s: {anchor:,.0f} sends/s (dispatcher's bare send path)"
        )
        print(ratio_line("funnel touchpoints/s", ours, anchor, "bare dispatcher sends/s"))
    await conn.close()
    return status


async def statements(conn: asyncpg.Connection, top: int, touchpoints: int) -> None:
    """Where PostgreSQL's time went during the funnel: the statements that took the most."""
    rows = await conn.fetch(
        "SELECT calls, total_exec_time, rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 150) AS query "
        "FROM pg_stat_statements ORDER BY total_exec_time DESC"
    )
    total = sum(r["total_exec_time"] for r in rows)
    print(
        f"PostgreSQL execution time: {total / 1000:.1f} s, {total / touchpoints:.2f} ms per touchpoint; the top {top}:"
    )
    for r in rows[:top]:
        print(
            f"  {r['total_exec_time'] / touchpoints:6.3f} ms/tp {100 * r['total_exec_time'] / total:4.1f}% "
            f"{r['calls']:>8} calls {r['rows']:>8} rows  {r['query']}"
        )


async def report(
    conn: asyncpg.Connection,
    args: argparse.Namespace,
    seen: Observed,
    stats: dict[str, Any],
    before: dict[str, float],
    after: dict[str, float],
    wall_started: float,
    settled: bool,
    settled_seconds: float,
) -> int:
    problems = 0
    touchpoints = len(seen.sends)
    accepted = sum(len(s) for s in seen.sends.values())
    last_send = max(s["received_at"] for sends in seen.sends.values() for s in sends)
    span = last_send - wall_started
    stored = await conn.fetchval(
        "SELECT count(*) FROM events.message_events WHERE tenant_id = $1 AND occurred_at >= to_timestamp($2)",
        TENANT,
        wall_started - 60,
    )
    inbound = await conn.fetchval("SELECT count(*) FROM events.inbound_emails WHERE tenant_id = $1", TENANT)
    print(
        f"settled: {'yes' if settled else 'NO'} after {settled_seconds:.1f} s; last send {span:.1f} s after the first create"
    )
    print(f"touchpoints: {touchpoints} sends in {span:.1f} s = {touchpoints / span:,.1f} touchpoints/s end to end")
    print(
        f"events stored: {stored} ({stored / span:,.1f}/s over the same span); inbound mail stored {inbound}; "
        f"fake posted {stats['events_posted']} webhook events, failed posts {stats['failed_posts']}"
    )
    print("CPU per touchpoint (ms), from the first create until settled:")
    cpu = {name: after.get(name, 0) - before.get(name, 0) for name in PROCESSES}
    for name, seconds in sorted(cpu.items(), key=lambda item: -item[1]):
        print(f"  {name:14} {1000 * seconds / touchpoints:7.2f} ms  ({seconds:6.1f} s)")
    named = sum(cpu.values())
    print(
        f"  {'all named':14} {1000 * named / touchpoints:7.2f} ms; whole machine "
        f"{1000 * (after['machine'] - before['machine']) / touchpoints:.2f} ms"
    )

    decisions = await conn.fetch(
        "SELECT campaign_id, message_id, step_index, trigger FROM planner.rule_decisions "
        "WHERE tenant_id = $1 AND trigger IN ('open', 'click') AND action = 'schedule_next_step' "
        "AND result LIKE 'applied%'",
        TENANT,
    )
    late, raw = lateness(list(decisions), seen, args.step_seconds)
    if late:
        print(
            f"rule-driven steps: {len(late)} (of {len(decisions)} open/click decisions applied); lateness past the "
            f"rule's delay p50 {statistics.median(late):.2f} s, p99 {percentile(late, 0.99):.2f} s, "
            f"max {max(late):.2f} s; engagement at the edge to next send p50 {statistics.median(raw):.2f} s, "
            f"p99 {percentile(raw, 0.99):.2f} s"
        )
    else:
        print(f"rule-driven steps: none measured ({len(decisions)} open/click decisions applied)")

    delivered = seen.kinds["delivered"]
    rates = {"delivered": delivered / max(1, seen.kinds["processed"])}
    for kind in ("deferred", "open", "machine_open", "click", "unsubscribe", "reply", "out_of_office"):
        rates[kind] = seen.kinds[kind] / max(1, delivered)
    wanted = {k: getattr(args, k) for k in rates}
    print(
        "engagement posted per message (profile): "
        + ", ".join(f"{k} {100 * rates[k]:.1f}% ({100 * wanted[k]:.1f}%)" for k in rates)
    )

    rows = await conn.fetch(
        "SELECT c.id, c.status, c.cancel_reason, s.step_index, s.status AS step_status, s.message_id "
        "FROM planner.contact_campaigns c JOIN planner.campaign_steps s ON s.campaign_id = c.id "
        "WHERE c.tenant_id = $1",
        TENANT,
    )
    campaigns: dict[str, tuple[str, str]] = {}
    message_ids: dict[tuple[str, int], str] = {}
    recorded_sent: set[str] = set()
    sent_steps: Counter[str] = Counter()
    for r in rows:
        campaigns[r["id"]] = (r["status"], r["cancel_reason"])
        if r["message_id"]:
            message_ids[(r["id"], r["step_index"])] = r["message_id"]
        if r["step_status"] == "sent":
            recorded_sent.add(r["message_id"])
            sent_steps[r["id"]] += 1
    final = {cid: f"{status}: {reason}" if reason else status for cid, (status, reason) in campaigns.items()}
    predicted = {cid: predicted_status(cid, seen, message_ids) for cid in campaigns}
    differ = Counter(f"{predicted[cid]} -> {final[cid]}" for cid in campaigns if not agrees(predicted[cid], final[cid]))
    print(f"campaigns by final status: {shown(Counter(final.values()))}")
    print(
        f"  as the fake's posted engagement predicts: {shown(Counter(predicted.values()))}; "
        f"{len(campaigns) - differ.total()} of {len(campaigns)} agree"
        + (f"; predicted -> found: {shown(differ)}" if differ else "")
    )

    duplicates = accepted - touchpoints
    provider = set(seen.sends)
    missing = recorded_sent - provider
    unrecorded = provider - recorded_sent
    short = [cid for cid, (status, _) in campaigns.items() if status == "completed" and sent_steps[cid] != STEPS]
    failed = await conn.fetchval(
        "SELECT count(*) FROM dispatcher.messages WHERE tenant_id = $1 AND status = 'failed'", TENANT
    )
    print(
        f"sends: {accepted} accepted requests, {touchpoints} distinct message ids, duplicates {duplicates}; "
        f"recorded sent but never accepted {len(missing)}; accepted but not recorded sent {len(unrecorded)}; "
        f"completed campaigns short of a step {len(short)}; failed messages {failed}"
    )
    if duplicates or missing or unrecorded or short or failed:
        problems += 1
    if not settled:
        problems += 1
    return 1 if problems else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="campaigns (3 emails each)")
    parser.add_argument("--step-seconds", type=int, default=5, help="seconds between a campaign's emails")
    parser.add_argument("--seed", type=int, default=1, help="the engagement's RNG")
    parser.add_argument("--settle-timeout", type=float, default=300.0, help="seconds from the first create")
    parser.add_argument("--anchor-n", type=int, default=0, help="bare sends for the anchor (default: as many as ours)")
    rates = parser.add_argument_group("engagement rates (shares of delivered mail, except delivered)")
    rates.add_argument("--delivered", type=float, default=0.97, help="the rest bounce")
    rates.add_argument("--deferred", type=float, default=0.0)
    rates.add_argument("--open", type=float, default=0.45)
    rates.add_argument("--machine-open", type=float, default=0.10)
    rates.add_argument("--click", type=float, default=0.08)
    rates.add_argument("--reply", type=float, default=0.03)
    rates.add_argument("--out-of-office", type=float, default=0.02)
    rates.add_argument("--unsubscribe", type=float, default=0.01)
    parser.add_argument("--pg-stats", type=int, default=0, metavar="N", help="the N costliest statements")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    if args.pg_stats:
        # Only the server this benchmark starts, in this process: tests and other runs never load it.
        servers.POSTGRES_SETTINGS["shared_preload_libraries"] = "pg_stat_statements"
    with running_suite(fake_auto_events_delay=1.0, **SUITE_ENV) as suite:
        status = asyncio.run(funnel(suite, args))
    sys.exit(status)


if __name__ == "__main__":
    main()
