"""Prometheus metrics: the exporter every service can start, on its own port.

Metric objects live in the default registry of `prometheus_client`, defined once per
service module (e.g. `dripiq_scheduler.metrics`); this module only serves them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from threading import Thread
from wsgiref.simple_server import WSGIServer

import structlog
from prometheus_client import REGISTRY, start_http_server
from prometheus_client.registry import CollectorRegistry

log = structlog.get_logger(__name__)


@dataclass
class MetricsExporter:
    server: WSGIServer
    thread: Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def stop(self) -> None:
        """Blocks for up to half a second (the server's poll interval): call it off the event loop."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_exporter(*, host: str, port: int, registry: CollectorRegistry = REGISTRY) -> MetricsExporter | None:
    """Serve `/metrics` on host:port in a daemon thread; None when the port is 0 (off).

    A port already in use is logged and skipped: metrics are not worth refusing to run for
    (two local suites on one machine would otherwise stop each other from starting).
    """
    if port <= 0:
        return None
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        log.error("metrics.exporter_unavailable", address=f"{host}:{port}", error=str(exc))
        return None
    exporter = MetricsExporter(server, thread)
    log.info("metrics.serving", address=f"{host}:{exporter.port}")
    return exporter


def stop_exporter(exporter: MetricsExporter | None) -> None:
    if exporter is not None:
        with contextlib.suppress(Exception):
            exporter.stop()
