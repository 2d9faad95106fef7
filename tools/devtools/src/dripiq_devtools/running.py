"""`make run`: start the suite, print where every part listens (which SendGrid and OpenAI it
talks to, the grpcurl line to start from), and stop everything on Ctrl-C."""

from __future__ import annotations

import os
import signal
import sys
import time

from dripiq_devtools.servers import SetupError
from dripiq_devtools.suite import PROCESSES, REPO, Suite, Topology


def _sendgrid_lines(suite: Suite) -> list[str]:
    """Which SendGrid the dispatcher sends to, and whose keys the edge accepts webhooks signed with."""
    host = suite.env.get("SENDGRID_API_HOST") or "https://api.sendgrid.com"
    if "fake-sendgrid" in suite.children:
        lines = [f"  {'sendgrid':<11} fake  {host}   (GET /_fake/messages; no SENDGRID_API_KEY)"]
        if suite.fake_auto_events_delay > 0:
            lines.append(f"  {'':<11}       posts processed and delivered to the edge by itself")
    elif suite.env.get("SENDGRID_API_KEY"):
        lines = [f"  {'sendgrid':<11} real  {host}   (SENDGRID_API_KEY is set: mail really goes out)"]
    else:
        lines = [f"  {'sendgrid':<11}       {host}   (SENDGRID_API_HOST)"]
    keys = []
    for key in suite.env["SENDGRID_WEBHOOK_PUBLIC_KEY"].split(","):
        whose = "the fake's" if key == suite.fake_webhook_key else "SENDGRID_WEBHOOK_PUBLIC_KEY"
        keys.append(f"{whose} (...{key.strip()[-8:]})")
    lines.append(f"  {'':<11}       webhooks verified with {' and '.join(keys)}")
    return lines


def summary(suite: Suite) -> str:
    """What `make run` prints once every process is ready: where each part listens and how to call it."""
    lines = ["", "dripiq is running. Ctrl-C stops everything.", ""]
    for process in PROCESSES:
        port = suite.port(process.port_env)
        if process.grpc_services:
            lines.append(f"  {process.name:<11} grpc  127.0.0.1:{port}   {', '.join(process.grpc_services)}")
    edge = f"http://127.0.0.1:{suite.port('EDGE_PORT')}"
    lines += [
        f"  {'edge':<11} http  {edge}/webhooks/sendgrid/events   (SendGrid Event Webhook)",
        f"  {'':<11}       {edge}/webhooks/sendgrid/inbound  (Inbound Parse, signed by the Parse security policy)",
        f"  {'':<11}       {edge}/u/<token>                  (one-click unsubscribe)",
        f"  {'':<11}       http://127.0.0.1:{suite.env.get('EDGE_METRICS_PORT', '9105')}/metrics"
        "  (the edge's metrics, not on its public port)",
    ]
    lines += _sendgrid_lines(suite)
    if "fake-openai" in suite.children:
        lines.append(f"  {'openai':<11} fake  {suite.env['OPENAI_BASE_URL']}   (GET /_fake/requests)")
    lines += [
        f"  {'postgres':<11}       {suite.env['DATABASE_URL']}",
        f"  {'nats':<11}       {suite.env['NATS_URL']}",
        f"  {'topology':<11}       {suite.topology.describe()}",
        "",
        *_grpcurl_lines(suite),
        "",
    ]
    return "\n".join(lines)


def _grpcurl_lines(suite: Suite) -> list[str]:
    planner = f"127.0.0.1:{suite.port('PLANNER_GRPC_PORT')}"
    if suite.security is None:
        return [f"  Try: grpcurl -plaintext {planner} list"]
    ca = (
        suite.security.ca.path.relative_to(REPO)
        if suite.security.ca.path.is_relative_to(REPO)
        else suite.security.ca.path
    )
    token = suite.run_dir / "dev-token"
    shown = token.relative_to(REPO) if token.is_relative_to(REPO) else token
    return [
        f"  TLS with a development CA; {shown} holds an operator token (every tenant, 12 h).",
        f'  Try: grpcurl -cacert {ca} -H "authorization: Bearer $(cat {shown})" {planner} list',
    ]


def main() -> None:
    try:
        topology = Topology.from_env(os.environ)
    except SetupError as exc:
        sys.exit(f"make run: {exc}")
    suite = Suite(
        run_dir=REPO / ".run",
        fake_openai=os.environ.get("DRIPIQ_FAKE_OPENAI") == "1",
        nats_nodes=topology.nats_nodes,
        replicas=dict(topology.replicas),
        events_query=topology.events_query,
    )
    stopping = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        suite.start()
    except SetupError as exc:
        sys.exit(f"make run: {exc}")
    print(summary(suite), flush=True)
    failed: list[str] = []
    try:
        while not stopping and not failed:
            failed = suite.dead_children()
            time.sleep(0.5)
    finally:
        if failed:
            print(f"\n{', '.join(failed)} exited; stopping the suite", file=sys.stderr, flush=True)
        print("\nstopping...", flush=True)
        suite.stop()
    if failed:
        sys.exit(1)
