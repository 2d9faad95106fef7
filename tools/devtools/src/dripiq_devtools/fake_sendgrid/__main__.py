"""The fake SendGrid run as a process until SIGTERM: `python -m dripiq_devtools.fake_sendgrid`.

    python -m dripiq_devtools.fake_sendgrid --port 8025 --private-key-file .run/sendgrid.pem \
        --webhook-url http://127.0.0.1:8080/webhooks/sendgrid/events --auto-events-delay 1
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dripiq_common.service import run_process
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


def main(argv: list[str] | None = None) -> int:
    # On uvloop like the services, so the fake takes less of a shared machine's CPU.
    run_process(_serve(_parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
