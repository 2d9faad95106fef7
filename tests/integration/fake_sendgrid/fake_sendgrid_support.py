"""Shared by the fake SendGrid tests: a valid Mail Send payload and its variants, the webhook
receiver stand-in, a raw Mail Send request, and HTML and text parts full of links.

Everything runs over real HTTP on 127.0.0.1 with ephemeral ports; no database or NATS needed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from dripiq_devtools.fake_sendgrid import FakeSendGrid, TrackedLink

API_KEY = "SG.local-test-key"
SENDER = "campaigns@dripiq.test"
# The account of API_KEY has SENDER's domain authenticated: SendGrid sends from nothing else.
SENDER_ACCOUNT = {API_KEY: ["dripiq.test"]}
RECIPIENT = "ada@example.com"


def valid_payload(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "personalizations": [{"to": [{"email": RECIPIENT}], "custom_args": {"contact_id": "c-1"}}],
        "from": {"email": SENDER},
        "subject": "Hello",
        "content": [{"type": "text/plain", "value": "Hi Ada"}],
        "custom_args": {"campaign_id": "camp-1"},
    }
    payload.update(overrides)
    return payload


@dataclass
class Captured:
    body: bytes
    headers: dict[str, str]


@dataclass
class Receiver:
    """A stand-in for the events service's webhook endpoint that keeps the raw request.

    It answers 500 to the next `refusals` requests (keeping them all the same), then 200.
    """

    url: str
    requests: list[Captured] = field(default_factory=list)
    refusals: int = 0

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event it was posted, in arrival order, refused batches included."""
        return [event for captured in self.requests for event in json.loads(captured.body)]


async def raw_send(
    fake: FakeSendGrid, body: bytes | dict[str, Any], *, auth: str | None = f"Bearer {API_KEY}"
) -> tuple[int, Any, dict[str, str]]:
    """A Mail Send request without the sendgrid client, to control headers and body bytes."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": auth} if auth else {})}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{fake.url}/v3/mail/send", data=data, headers=headers) as resp:
            raw = await resp.read()
            return resp.status, json.loads(raw) if raw else None, dict(resp.headers)


def personalized(**fields: Any) -> dict[str, Any]:
    """A valid payload whose first personalization carries `fields`."""
    payload = valid_payload()
    payload["personalizations"][0].update(fields)
    return payload


def recipients(count: int) -> list[dict[str, str]]:
    return [{"email": f"reader-{n}@example.com"} for n in range(count)]


HTML_WITH_LINKS = (
    '<p>Hi Ada, see <a href="https://dripiq.test/pricing">pricing</a>,'
    ' <a href="mailto:help@dripiq.test">write</a>,'
    ' <a clicktracking="off" href="https://dripiq.test/unsubscribe">unsubscribe</a>,'
    " <a href=https://dripiq.test/raw clicktracking=off>raw</a>"
    ' and <A HREF="http://dripiq.test/docs?a=1&amp;b=2">docs</A>.</p>'
)
TEXT_WITH_LINKS = "Hi Ada, see https://dripiq.test/pricing (or http://dripiq.test/docs)."
HTML_LINKS = [
    TrackedLink("https://dripiq.test/pricing", "html", 0),
    TrackedLink("http://dripiq.test/docs?a=1&b=2", "html", 1),
]
TEXT_LINKS = [TrackedLink("https://dripiq.test/pricing", "text", 0), TrackedLink("http://dripiq.test/docs", "text", 1)]


def multipart(**tracking_settings: Any) -> dict[str, Any]:
    """A valid payload with text and HTML parts full of links, tracked as given."""
    content = [{"type": "text/plain", "value": TEXT_WITH_LINKS}, {"type": "text/html", "value": HTML_WITH_LINKS}]
    return valid_payload(content=content, tracking_settings=tracking_settings)
