"""SendGrid behind an async face.

`AsyncSendGridSender` posts the Mail Send JSON with aiohttp over a pool of keep-alive
connections, on the event loop itself (the `sendgrid` library's own client, on a thread pool,
sent about a quarter as fast and is gone: one transport, tested once).

It fails the way the `sendgrid` library does, so `failures.classify_failure` judges it as it
would: python_http_client's HTTPError for an error answer, urllib's URLError when the request
never left (nothing can have been sent), anything else (a timeout, a reset) when it may have
been accepted.
"""

from __future__ import annotations

import json
import urllib.error
from typing import Any, Protocol
from urllib.parse import urlparse

import aiohttp
from python_http_client.exceptions import HTTPError, err_dict
from sendgrid import __version__ as sendgrid_version

from dripiq_dispatcher.accounts import ProviderAccount
from dripiq_dispatcher.settings import DispatcherSettings

MESSAGE_ID_HEADER = "X-Message-Id"
# How a parent account acts for its subuser (SendGrid's "On-Behalf-Of"; the library sends it so).
ON_BEHALF_OF_HEADER = "On-Behalf-Of"
# Sent to a local fake that accepts any bearer token; SendGrid itself would answer 401.
PLACEHOLDER_API_KEY = "SG.dripiq-local-fake"
MAIL_SEND_PATH = "/v3/mail/send"
USER_AGENT = f"sendgrid/{sendgrid_version};python"
# Idle pooled connections are dropped well before a server would close them (aiohttp's
# server waits 75 s): a POST written onto a connection the server just closed cannot be told
# apart from one it received, and would park its message as unknown.
KEEPALIVE_SECONDS = 15.0


def encode_mail(mail: dict[str, Any]) -> bytes:
    """The Mail Send body as sent: one place, so a benchmark's bare client posts the same bytes."""
    return json.dumps(mail).encode("utf-8")


class MailSender(Protocol):
    async def send(self, mail: dict[str, Any], account: ProviderAccount | None = None) -> str | None:
        """Hand one Mail Send body to the provider, through `account` (None: the default one);
        its message id, when it gave one."""
        ...

    async def aclose(self) -> None:
        """Release connections or threads; called once, on the loop that sent."""
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


class AsyncSendGridSender:
    """The Mail Send call on the event loop: one aiohttp session, at most `concurrency`
    keep-alive connections. Sends the same headers and JSON the `sendgrid` client would."""

    def __init__(
        self,
        *,
        api_key: str,
        host: str,
        concurrency: int,
        timeout_seconds: float,
        connect_timeout_seconds: float = 5.0,
    ) -> None:
        self._url = host.rstrip("/") + MAIL_SEND_PATH
        self._concurrency = concurrency
        self._api_key = api_key
        self._headers = {
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
            "Content-Type": "application/json",
        }
        # sock_connect alone bounds connecting, so its expiry is known to be before the request
        # left; total bounds the whole call. No `connect`: it would also count the wait for a
        # pooled connection, which the worker's concurrency (= the pool size) keeps at zero.
        self._timeout = aiohttp.ClientTimeout(
            total=timeout_seconds, sock_connect=min(connect_timeout_seconds, timeout_seconds)
        )
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._concurrency, limit_per_host=self._concurrency, keepalive_timeout=KEEPALIVE_SECONDS
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, headers=self._headers, auto_decompress=False
            )
        return self._session

    def _account_headers(self, account: ProviderAccount | None) -> dict[str, str]:
        """Per request, so one pool serves every tenant's account."""
        key = account.api_key if account is not None and account.api_key is not None else self._api_key
        headers = {"Authorization": f"Bearer {key}"}
        if account is not None and account.on_behalf_of:
            headers[ON_BEHALF_OF_HEADER] = account.on_behalf_of
        return headers

    async def send(self, mail: dict[str, Any], account: ProviderAccount | None = None) -> str | None:
        body = encode_mail(mail)
        headers = self._account_headers(account)
        try:
            async with self._client().post(self._url, data=body, headers=headers, allow_redirects=False) as response:
                payload = await response.read()
                status = response.status
                if not 200 <= status < 300:
                    error = err_dict.get(status, HTTPError)
                    raise error(status, response.reason or "", payload, dict(response.headers))
                message_id = response.headers.get(MESSAGE_ID_HEADER)
                return str(message_id) if message_id else None
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # Never connected: nothing was sent, as urllib's URLError means on the sync path.
            raise urllib.error.URLError(exc) from exc
        except aiohttp.SocketTimeoutError as exc:
            raise TimeoutError(f"no answer within {self._timeout.total} s: {exc}") from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
