"""python -m dripiq_events.edge: the HTTP edge process.

Shutdown on SIGTERM/SIGINT: /readyz turns 503, the listener closes, requests in flight finish
(each waits for its PubAck), then NATS drains.
"""

from __future__ import annotations

import asyncio
import signal

import structlog
from aiohttp import web
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from sendgrid.helpers.eventwebhook import EventWebhook

from dripiq_common.bus.access import streams_used
from dripiq_common.bus.client import connect, drain, ensure_streams
from dripiq_common.bus.contract import Streams
from dripiq_common.logging import configure_logging
from dripiq_common.service import run_process
from dripiq_common.settings import load_settings
from dripiq_events.edge.app import EVENTS_PATH, INBOUND_PATH, Edge
from dripiq_events.edge.proofs import OAuthClient, ParseAuth, load_verifiers
from dripiq_events.edge.settings import EdgeSettings

log = structlog.get_logger(__name__)


def build_edge(settings: EdgeSettings, *, js: JetStreamContext, nc: NATS) -> Edge:
    """The edge as the settings describe it; SystemExit naming the setting when it would fail open."""
    try:
        edge = Edge(
            js=js,
            nc=nc,
            verifiers=_verifiers(settings.sendgrid_webhook_public_key),
            signer=settings.token_signer(),
            limits=settings.body_limits,
            max_in_flight=settings.max_in_flight,
            retry_after_seconds=settings.retry_after_seconds,
            signature_tolerance_seconds=settings.signature_tolerance_seconds,
            publish_timeout_seconds=settings.publish_timeout_seconds,
            oauth=(
                OAuthClient(
                    settings.oauth_client_id,
                    settings.oauth_client_secret.get_secret_value(),
                    settings.oauth_token_ttl_seconds,
                )
                if settings.oauth_client_id is not None and settings.oauth_client_secret is not None
                else None
            ),
            require_signature=settings.require_signature,
            parse_auth=ParseAuth(
                verifiers=_verifiers(settings.sendgrid_parse_public_key),
                oauth=settings.parse_oauth,
                url_secret=settings.parse_url_secret.get_secret_value() if settings.parse_url_secret else "",
            ),
        )
    except ValueError as exc:
        raise SystemExit(f"EdgeSettings: {exc}") from None
    for route, limit in vars(settings.body_limits).items():
        if edge.body_limit(limit) < limit:
            log.warning(
                "edge.body_limit_lowered",
                route=route,
                configured=limit,
                body_limit=edge.body_limit(limit),
                nats_max_payload=nc.max_payload,
                hint="raise the NATS server's max_payload to accept larger webhook bodies",
            )
    return edge


def _verifiers(keys: str) -> tuple[EventWebhook, ...]:
    # The settings checked every key already; none given is a mechanism turned off.
    return load_verifiers(keys) if keys.strip() else ()


async def serve(settings: EdgeSettings) -> None:
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
    edge = build_edge(settings, js=js, nc=nc)
    runner = web.AppRunner(edge.app(), access_log=None, shutdown_timeout=settings.shutdown_grace_seconds)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    metrics_runner = None
    if settings.metrics_port:
        metrics_runner = web.AppRunner(edge.metrics_app(), access_log=None)
        await metrics_runner.setup()
        await web.TCPSite(metrics_runner, settings.metrics_host, settings.metrics_port).start()
    base = f"http://{settings.host}:{settings.port}"
    log.info(
        "edge.serving",
        event_webhook_url=base + EVENTS_PATH,
        inbound_parse_url=base + INBOUND_PATH + ("/<EDGE_PARSE_URL_SECRET>" if settings.parse_url_secret else ""),
        unsubscribe_url=base + "/u/<token>",
        metrics_url=f"http://{settings.metrics_host}:{settings.metrics_port}/metrics" if metrics_runner else None,
    )

    await stop.wait()
    log.info("edge.stopping")
    edge.stopping = True
    await runner.cleanup()
    if metrics_runner is not None:
        await metrics_runner.cleanup()
    await drain(nc, grace_seconds=settings.shutdown_grace_seconds)
    log.info("edge.stopped")


def main() -> None:
    settings = load_settings(EdgeSettings)
    configure_logging("edge", log_format=settings.log_format, level=settings.log_level)
    run_process(serve(settings))


if __name__ == "__main__":
    main()
