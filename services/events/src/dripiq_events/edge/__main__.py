"""python -m dripiq_events.edge: the HTTP edge process.

Shutdown on SIGTERM/SIGINT: /readyz turns 503, the listener closes, requests in flight finish
(each waits for its PubAck), then NATS drains.
"""

from __future__ import annotations

import asyncio
import signal

import structlog
from aiohttp import web

from dripiq_common.bus.access import streams_used
from dripiq_common.bus.client import connect, drain, ensure_streams
from dripiq_common.bus.contract import Streams
from dripiq_common.logging import configure_logging
from dripiq_common.service import run_process
from dripiq_common.settings import load_settings
from dripiq_events.edge.app import EVENTS_PATH, INBOUND_PATH, Edge, OAuthClient, load_verifiers
from dripiq_events.edge.settings import EdgeSettings

log = structlog.get_logger(__name__)


async def serve(settings: EdgeSettings) -> None:
    try:
        verifiers = load_verifiers(settings.sendgrid_webhook_public_key)
    except ValueError as exc:
        raise SystemExit(f"EdgeSettings: SENDGRID_WEBHOOK_PUBLIC_KEY: {exc}") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    nc = await connect(settings.nats_url, name="edge", ca_file=settings.nats_ca_file)
    js = nc.jetstream()
    await ensure_streams(
        js,
        Streams.all() if settings.bus_setup else streams_used("edge"),
        replicas=settings.jetstream_replicas,
        duplicate_window_seconds=settings.jetstream_duplicate_window_seconds,
        manage=settings.bus_setup,
    )
    edge = Edge(
        js=js,
        nc=nc,
        verifiers=verifiers,
        signer=settings.token_signer(),
        max_body_bytes=settings.max_body_bytes,
        signature_tolerance_seconds=settings.signature_tolerance_seconds,
        publish_timeout_seconds=settings.publish_timeout_seconds,
        oauth=(
            OAuthClient(
                settings.oauth_client_id,
                settings.oauth_client_secret.get_secret_value(),
                settings.oauth_token_ttl_seconds,
            )
            if settings.oauth_client_id and settings.oauth_client_secret
            else None
        ),
        require_signature=settings.require_signature,
    )
    if edge.body_limit < settings.max_body_bytes:
        log.warning(
            "edge.body_limit_lowered",
            max_body_bytes=settings.max_body_bytes,
            body_limit=edge.body_limit,
            nats_max_payload=nc.max_payload,
            hint="raise the NATS server's max_payload to accept larger webhook bodies",
        )
    runner = web.AppRunner(edge.app(), access_log=None, shutdown_timeout=settings.shutdown_grace_seconds)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    base = f"http://{settings.host}:{settings.port}"
    log.info(
        "edge.serving",
        event_webhook_url=base + EVENTS_PATH,
        inbound_parse_url=base + INBOUND_PATH,
        unsubscribe_url=base + "/u/<token>",
    )

    await stop.wait()
    log.info("edge.stopping")
    edge.stopping = True
    await runner.cleanup()
    await drain(nc, grace_seconds=settings.shutdown_grace_seconds)
    log.info("edge.stopped")


def main() -> None:
    settings = load_settings(EdgeSettings)
    configure_logging("edge", log_format=settings.log_format, level=settings.log_level)
    run_process(serve(settings))


if __name__ == "__main__":
    main()
