"""Sends per second end to end: commands on JetStream to `sent` rows, the fake answering in 50 ms.

    .venv/bin/python bench/dispatcher_sends.py [--n 100000]

Runs the whole suite, slows the fake SendGrid to
50 ms per answer, creates one verified sender identity, publishes N SendMessageCommands (one
tenant, unique message ids, each a text-only step of the usual length with a link, so every
send renders and sanitizes its HTML part) onto `dripiq.dispatcher.send.<tenant>` as fast as JetStream takes
them (while the dispatcher works), and measures from the first publish until the SENT outcome
of every message has been published (each one: command consumed, 202 from the fake, `sent`
committed, outcome relayed), watched with a plain NATS subscription so the tables are not
queried under load. Every --sample-seconds it prints the sends/s of the last interval and the
dispatcher's RSS, so a long run (--n 1000000) shows whether rate and memory hold. At the end it
checks the rows and the fake's count of requests (duplicates).
Duplicates are the fake's Mail Send requests beyond N (every send is accepted, none retried).

Then, in the same run, the anchor: the same fake (same process, same 50 ms latency) accepting
`--bare-n` POST /v3/mail/send requests from a bare aiohttp client in this process, with at most
as many requests in flight as the dispatcher keeps (DISPATCHER_SEND_CONCURRENCY, its connection
pool: 512 by default) and the very bodies and headers the dispatcher sends (built with its own
`campaign_mail.build_mail` from the same commands, JSON-encoded before the clock starts). It
prints `ratio: sends/s <dispatcher> / bare client <bare>` against the target of 0.5x.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg
from harness import (
    cpu_report,
    cpu_snapshot,
    machine,
    publish_all,
    ratio_line,
    running_suite,
    verified_identity,
    wait_for_count,
)

from dripiq.dispatcher.v1 import messages_pb2
from dripiq_common.bus.contract import Subjects, decode
from dripiq_common.tokens import TokenSigner
from dripiq_devtools import servers
from dripiq_devtools.suite import DEMO_DOMAINS
from dripiq_dispatcher import campaign_mail, convert
from dripiq_dispatcher.provider import MAIL_SEND_PATH, PLACEHOLDER_API_KEY, USER_AGENT, encode_mail
from dripiq_dispatcher.settings import DispatcherSettings

TENANT = "bench-sends"
LATENCY_SECONDS = 0.05
# An AI-written step of the usual length: paragraphs, a list, emphasis, a link to track.
BODY = (
    "Hi Lead {n},\n\n"
    "I noticed Initech files **hundreds of TPS reports** a week, and that every one needs a cover sheet.\n\n"
    "TPS Autopilot does three things for teams like yours:\n\n"
    "- fills the cover sheet from the report itself\n"
    "- routes it to the right manager, once\n"
    "- keeps an audit trail for the memo nobody reads\n\n"
    "Teams save about *six hours a week*. A two-minute tour: https://tps.example/autopilot?lead={n}\n\n"
    "Would a 15-minute call on Thursday work?\n\n"
    "Best,\nAcme Sales"
)
SENT_QUERY = f"SELECT count(*) FROM dispatcher.messages WHERE tenant_id = '{TENANT}' AND status = 'sent'"


def rss_mib(pids: list[int]) -> float:
    """The largest RSS among the processes, in MiB."""
    largest = 0.0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                largest = max(largest, int(line.split()[1]) / 1024)
    return largest


def command(n: int, identity_id: str) -> bytes:
    return messages_pb2.SendMessageCommand(
        tenant_id=TENANT,
        message_id=str(uuid.UUID(int=n + 1)),
        campaign_id=f"camp-{n % 1000}",
        step_index=0,
        contact_id=f"contact-{n}",
        channel="email",
        to_email=f"lead{n}@example.com",
        to_name="Lead",
        sender_identity_id=identity_id,
        subject=f"TPS Autopilot for Initech {n % 97}",
        # As a strategist writes a step: text only, so the dispatcher renders the HTML part.
        body_text=BODY.format(n=n),
        categories=["campaign"],
    ).SerializeToString()


class SentOutcomes:
    """Counts SENT outcome facts as the dispatcher's outbox publishes them: the end of the
    pipeline the target names, observed without querying the tables under load."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.facts = 0
        self.done = asyncio.Event()
        self.target = 0

    async def on_msg(self, msg) -> None:  # type: ignore[no-untyped-def]
        outcome = messages_pb2.MessageOutcome.FromString(msg.data)
        if outcome.kind == messages_pb2.OUTCOME_KIND_SENT:
            self.facts += 1
            self.ids.add(outcome.message_id)
            if len(self.ids) >= self.target:
                self.done.set()


async def sample(sent: SentOutcomes, pids: list[int], every: float, into: list[tuple[float, int, float]]) -> None:
    """(seconds, sent so far, dispatcher RSS MiB) every `every` seconds until cancelled."""
    started = time.perf_counter()
    while True:
        await asyncio.sleep(every)
        into.append((time.perf_counter() - started, len(sent.ids), rss_mib(pids)))


def mail_bodies(suite, identity_id: str, start: int, count: int) -> list[bytes]:  # type: ignore[no-untyped-def]
    """The Mail Send bodies the dispatcher sends for commands start..start+count, built by its
    own code with the suite's token secret and mail settings, so their size and shape match."""
    env = suite.env
    signer = TokenSigner(env["DRIPIQ_TOKEN_SECRET"].encode())
    settings = campaign_mail.MailSettings(
        env["DISPATCHER_REPLY_DOMAIN"], env["DISPATCHER_MESSAGE_ID_DOMAIN"], env["DISPATCHER_UNSUBSCRIBE_BASE_URL"]
    )
    identity = campaign_mail.Identity(identity_id, f"sales@{DEMO_DOMAINS[0]}", "Acme", verified=True)
    return [
        encode_mail(
            campaign_mail.build_mail(
                convert.new_message(decode(messages_pb2.SendMessageCommand, command(n, identity_id))),
                identity,
                signer=signer,
                settings=settings,
            )
        )
        for n in range(start, start + count)
    ]


async def bare_client(url: str, bodies: list[bytes], in_flight: int) -> tuple[float, int]:
    """(seconds, requests accepted): every body POSTed with at most `in_flight` at once over a
    keep-alive pool of that size, as the dispatcher's sender holds its connections."""
    connector = aiohttp.TCPConnector(limit=in_flight, limit_per_host=in_flight)
    headers = {
        "User-Agent": USER_AGENT,
        "Accept": "application/json",
        "Content-Type": "application/json",
        "Authorization": f"Bearer {PLACEHOLDER_API_KEY}",
    }
    accepted = 0
    queue = iter(bodies)

    async def lane(http: aiohttp.ClientSession) -> None:
        nonlocal accepted
        for body in queue:
            async with http.post(url, data=body, allow_redirects=False) as response:
                await response.read()
                accepted += response.status == 202

    async with aiohttp.ClientSession(connector=connector, headers=headers, auto_decompress=False) as http:
        started = time.perf_counter()
        await asyncio.gather(*(lane(http) for _ in range(in_flight)))
        return time.perf_counter() - started, accepted


STATEMENTS_QUERY = """
SELECT calls, round(total_exec_time::numeric, 0) AS ms, round((total_exec_time / calls)::numeric, 3) AS ms_per_call,
       rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 110) AS query
FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 15"""


def start_profile(
    into: Path, pids: list[int], seconds: int, *, name: str = "dispatcher"
) -> list[subprocess.Popen[bytes]]:
    """py-spy sampling each process for `seconds` (a bounded run), written as collapsed stacks."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        raise SystemExit("--profile needs py-spy (uv sync installs the devtools dev group)")
    into.mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(seconds),
                "--rate",
                "200",
                "--format",
                "raw",
                "--output",
                str(into / f"{name}-{pid}.txt"),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
        )
        for pid in pids
    ]


async def print_statements(dsn: str, units: int, *, unit: str = "send") -> None:
    """PostgreSQL's own account of the run: the statements that took its time, per unit."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(STATEMENTS_QUERY)
    finally:
        await conn.close()
    total = sum(float(r["ms"]) for r in rows)
    print(
        f"[pg] top statements by execution time ({total:.0f} ms over {units} {unit}s: "
        f"{1000 * total / max(1, units):.0f} us a {unit})"
    )
    for r in rows:
        print(
            f"[pg] {r['calls']:>8} calls {r['ms']:>8} ms {r['ms_per_call']:>8} ms/call {r['rows']:>9} rows  {r['query']}"
        )


async def reset_statements(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset()")
    finally:
        await conn.close()


async def run(
    suite, transport: str, total: int, sample_seconds: float, bare_total: int, profile: Path | None = None
) -> None:  # type: ignore[no-untyped-def]
    fake_url = suite.env["SENDGRID_API_HOST"]
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{fake_url}/_fake/latency", json={"seconds": LATENCY_SECONDS}) as answer:
            answer.raise_for_status()
    identity_id = await verified_identity(suite, TENANT)
    pids = [c.pid for name, c in suite.children.items() if name.split("-")[0] == "dispatcher"]
    rss_start = rss_mib(pids)

    nc = await suite.nats_connect(pending_size=256 * 1024 * 1024)
    js = nc.jetstream()
    sent = SentOutcomes()
    sent.target = total
    await nc.subscribe(Subjects.message_outcome(TENANT), cb=sent.on_msg, pending_msgs_limit=10_000_000)
    samples: list[tuple[float, int, float]] = []
    sampler = asyncio.create_task(sample(sent, pids, sample_seconds, samples))
    spies: list[subprocess.Popen[bytes]] = []
    if profile is not None:
        await reset_statements(suite.env["DATABASE_URL"])
        # The middle of the run: past the start, over before the last commands.
        spies = start_profile(profile, pids, max(5, int(total / 2500)))
    before = cpu_snapshot(suite)
    started = time.perf_counter()
    # Published while the dispatcher works, so a long run measures sending, not a backlog.
    published = await publish_all(
        js, Subjects.dispatcher_send(TENANT), ((f"bench-{n}", command(n, identity_id)) for n in range(total))
    )
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(sent.done.wait(), timeout=max(120, total / 200))
    waited = time.perf_counter() - started
    cpu = cpu_report(before, cpu_snapshot(suite))
    sampler.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sampler
    await nc.close()
    for spy in spies:
        spy.wait(timeout=120)
    if profile is not None:
        await print_statements(suite.env["DATABASE_URL"], len(sent.ids))
    rss_end = rss_mib(pids)
    rows, _ = await wait_for_count(suite.env["DATABASE_URL"], SENT_QUERY, total, limit_seconds=30)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{fake_url}/_fake/stats") as answer:
            stats = await answer.json()
    requests_received = stats["requests_received"]
    print(f"[{transport}] {cpu}")
    for (t0, n0, _), (t1, n1, rss) in zip([(0.0, 0, rss_start), *samples], samples, strict=False):
        print(
            f"[{transport}]   {t1:6.0f} s: {n1:>9} sent, {(n1 - n0) / (t1 - t0):6.0f} sends/s, largest dispatcher RSS {rss:.0f} MiB"
        )
    count = len(sent.ids)
    print(
        f"[{transport}] {published} commands published; {count} SENT outcomes published in {waited:.1f} s from the "
        f"first publish: {count / waited:.0f} sends/s end to end; {rows} rows `sent`; "
        f"fake received {requests_received} requests ({stats['distinct_message_ids']} distinct message ids), "
        f"duplicates {requests_received - total}, outcome facts beyond one per message {sent.facts - count}; "
        f"largest dispatcher RSS {rss_start:.0f} MiB -> {rss_end:.0f} MiB"
        + (f" (max {max(r for _, _, r in samples):.0f} MiB)" if samples else "")
    )
    if bare_total <= 0:
        return
    # The dispatcher's ceiling on calls in flight is its connection pool (sends_in_flight), one per replica.
    in_flight = DispatcherSettings.model_fields["send_concurrency"].default
    in_flight = int(suite.env.get("DISPATCHER_SEND_CONCURRENCY", in_flight)) * len(pids)
    bodies = mail_bodies(suite, identity_id, total, bare_total)
    seconds, accepted = await bare_client(fake_url + MAIL_SEND_PATH, bodies, in_flight)
    bare_rate = accepted / seconds
    print(
        f"[bare] {accepted} of {len(bodies)} requests accepted (202) by the same fake from a bare aiohttp client, "
        f"{in_flight} in flight, {sum(map(len, bodies)) / len(bodies):.0f}-byte bodies: "
        f"{seconds:.1f} s, {bare_rate:.0f} sends/s"
    )
    print(ratio_line("sends/s", count / waited, bare_rate, "bare client", 0.5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    # The only transport since the thread-pool one went; accepted so recorded commands still run.
    parser.add_argument("--transport", choices=["async"], default="async")
    parser.add_argument("--sample-seconds", type=float, default=10.0, help="progress and RSS every so often")
    parser.add_argument("--replicas", type=int, default=1, help="dispatcher processes sharing the stream")
    parser.add_argument(
        "--insecure", action="store_true", help="plaintext and no tokens (DRIPIQ_DEV_INSECURE): what security costs"
    )
    parser.add_argument(
        "--bare-n", type=int, default=None, help="requests of the bare-client anchor (default: min(N, 50000); 0: none)"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="py-spy the dispatcher into this folder and print PostgreSQL's top statements (pg_stat_statements)",
    )
    args = parser.parse_args()
    if args.profile is not None:
        # Only for this run's own server: the statement statistics cost a little on every query.
        servers.POSTGRES_SETTINGS["shared_preload_libraries"] = "pg_stat_statements"
    bare_n = min(args.n, 50_000) if args.bare_n is None else args.bare_n
    print(f"machine: {machine()}; dispatcher replicas: {args.replicas}")
    with running_suite({"dispatcher": args.replicas}, secure=not args.insecure) as suite:
        asyncio.run(run(suite, args.transport, args.n, args.sample_seconds, bare_n, args.profile))


if __name__ == "__main__":
    main()
