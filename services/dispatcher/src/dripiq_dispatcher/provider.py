"""SendGrid behind an async face.

The `sendgrid` client is synchronous (urllib), so calls run on a bounded thread pool and the
event loop keeps serving gRPC and acking JetStream while requests are in flight. Each thread
keeps its own client: python_http_client mutates request headers per call.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol
from urllib.parse import urlparse

from sendgrid import SendGridAPIClient

from dripiq_dispatcher.settings import DispatcherSettings

MESSAGE_ID_HEADER = "X-Message-Id"
# Sent to a local fake that accepts any bearer token; SendGrid itself would answer 401.
PLACEHOLDER_API_KEY = "SG.dripiq-local-fake"


class MailSender(Protocol):
    async def send(self, mail: dict[str, Any]) -> str | None:
        """Hand one Mail Send body to the provider; its message id, when it gave one."""
        ...


def api_key_for(settings: DispatcherSettings) -> str:
    """The key to send with. Without SENDGRID_API_KEY only a local fake may be the host, so a
    forgotten key stops start-up instead of every send failing with 401."""
    if settings.sendgrid_api_key is not None:
        return settings.sendgrid_api_key.get_secret_value()
    host = urlparse(settings.sendgrid_api_host).hostname or ""
    if host == "sendgrid.com" or host.endswith(".sendgrid.com"):
        raise SystemExit(
            f"SENDGRID_API_KEY is not set and SENDGRID_API_HOST is SendGrid itself "
            f"({settings.sendgrid_api_host}); set the key, or point SENDGRID_API_HOST at the "
            "local fake (python -m dripiq_devtools.fake_sendgrid)"
        )
    return PLACEHOLDER_API_KEY


class SendGridSender:
    def __init__(self, *, api_key: str, host: str, concurrency: int, timeout_seconds: float) -> None:
        self._api_key = api_key
        self._host = host.rstrip("/")
        self._timeout = timeout_seconds
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="sendgrid")
        self._local = threading.local()

    async def send(self, mail: dict[str, Any]) -> str | None:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._send_blocking, mail)

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    def _send_blocking(self, mail: dict[str, Any]) -> str | None:
        response = self._client().send(mail)
        message_id = response.headers.get(MESSAGE_ID_HEADER)
        return str(message_id) if message_id else None

    def _client(self) -> SendGridAPIClient:
        client: SendGridAPIClient | None = getattr(self._local, "client", None)
        if client is None:
            client = SendGridAPIClient(self._api_key, host=self._host)
            # Without a timeout urllib waits forever on a silent connection.
            client.client.timeout = self._timeout
            self._local.client = client
        return client
