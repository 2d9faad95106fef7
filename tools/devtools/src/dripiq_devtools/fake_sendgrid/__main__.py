"""The fake SendGrid run as a process until SIGTERM: `python -m dripiq_devtools.fake_sendgrid`.

    python -m dripiq_devtools.fake_sendgrid --port 8025 --private-key-file .run/sendgrid.pem \
        --webhook-url http://127.0.0.1:8080/webhooks/sendgrid/events --auto-events-delay 1

With FAKE_SENDGRID_ENGAGEMENT set to an engagement profile in JSON (see `engagement`), accepted
mail gets that engagement from the start, e.g.
    FAKE_SENDGRID_ENGAGEMENT='{"open": 0.45, "reply": 0.03,
        "inbound_url": "http://127.0.0.1:8080/webhooks/sendgrid/inbound"}'
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from dripiq_common.service import run_process
from dripiq_devtools.fake_sendgrid.engagement import PROFILE_ENV, EngagementProfile
from dripiq_devtools.fake_sendgrid.server import FakeSendGrid
from dripiq_devtools.fake_sendgrid.signing import load_or_create_private_key

DEFAULT_PORT = 8025


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m dripiq_devtools.fake_sendgrid",
        description="Local fake of SendGrid's Mail Send API and Signed Event Webhook.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    parser.add_argument(
        "--private-key-file",
        type=Path,
        help="PEM ECDSA P-256 key to sign events with; created (mode 0600) when missing",
    )
    parser.add_argument(
        "--parse-private-key-file",
        type=Path,
        help="PEM ECDSA P-256 key of the Inbound Parse security policy; created (mode 0600) when missing",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--rate-limit", type=int, help="sends per second before answering 429")
    parser.add_argument("--api-key", help="accept only this API key (default: any bearer token)")
    parser.add_argument(
        "--authenticate",
        action="append",
        default=[],
        metavar="API_KEY=DOMAIN",
        help="start with DOMAIN authenticated (valid) in the account of API_KEY; repeatable",
    )
    parser.add_argument("--webhook-url", help="post processed and delivered events here by themselves")
    parser.add_argument(
        "--auto-events-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="flush those events this often (default 0: never)",
    )
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    pem = load_or_create_private_key(args.private_key_file) if args.private_key_file else None
    parse_pem = load_or_create_private_key(args.parse_private_key_file) if args.parse_private_key_file else None
    domains: dict[str, list[str]] = {}
    for given in args.authenticate:
        key, _, domain = given.partition("=")
        if not key or not domain:
            raise SystemExit(f"--authenticate takes API_KEY=DOMAIN, not {given.split('=')[0][:4]}...")
        domains.setdefault(key, []).append(domain)
    fake = FakeSendGrid(
        engagement=_engagement_from_env(args.webhook_url),
        authenticated_domains=domains,
        private_key_pem=pem,
        parse_private_key_pem=parse_pem,
        latency_seconds=args.latency,
        rate_limit_per_second=args.rate_limit,
        api_key=args.api_key,
        webhook_url=args.webhook_url,
        auto_events_delay_seconds=args.auto_events_delay,
    )

    def announce() -> None:
        print(f"fake SendGrid listening on {fake.url}", flush=True)
        print(f"event webhook public key: {fake.public_key_base64}", flush=True)
        print(f"inbound parse public key: {fake.parse_public_key_base64}", flush=True)

    await fake.serve_until_signal(args.host, args.port, announce=announce)


def _engagement_from_env(webhook_url: str | None) -> EngagementProfile | None:
    given = os.environ.get(PROFILE_ENV, "").strip()
    if not given:
        return None
    try:
        spec = json.loads(given)
        if not isinstance(spec, dict):
            raise ValueError("a JSON object is required")
        return EngagementProfile.from_json(spec, webhook_url=webhook_url)
    except ValueError as exc:
        raise SystemExit(f"{PROFILE_ENV}: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    # On uvloop like the services, so the fake takes less of a shared machine's CPU.
    run_process(_serve(_parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
