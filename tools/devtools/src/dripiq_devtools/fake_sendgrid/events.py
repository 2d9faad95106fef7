"""Event Webhook entries for an accepted message, shaped as SendGrid posts them (delivered, open,
click, bounce, ...), and refused for an open or click SendGrid could not have tracked."""

from __future__ import annotations

import base64
import secrets
import string
import time
from typing import Any

from dripiq_devtools.fake_sendgrid.messages import AcceptedMessage
from dripiq_devtools.fake_sendgrid.tracking import TrackedLink

_BROWSER = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
)
_EVENT_DEFAULTS: dict[str, dict[str, Any]] = {
    "processed": {},
    "deferred": {"response": "400 try again later", "attempt": "1"},
    "delivered": {"response": "250 OK", "tls": 1},
    "open": {"sg_machine_open": False, "useragent": _BROWSER, "ip": "203.0.113.7"},
    "click": {
        "url": "https://example.com/",
        "url_offset": {"index": 0, "type": "html"},
        "useragent": _BROWSER,
        "ip": "203.0.113.7",
    },
    "bounce": {
        "type": "bounce",
        "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
        "status": "5.1.1",
        "bounce_classification": "Invalid Address",
    },
    "dropped": {"reason": "Bounced Address", "status": "5.0.0"},
    "spamreport": {},
    "unsubscribe": {},
    "group_unsubscribe": {"useragent": _BROWSER, "ip": "203.0.113.7"},
    "group_resubscribe": {"useragent": _BROWSER, "ip": "203.0.113.7"},
}


def build_event(message: AcceptedMessage, event: str, **extra: Any) -> dict[str, Any]:
    """One Event Webhook entry for `message` shaped as SendGrid posts it; `extra` wins.

    Custom args sit at the top level of the event, beside SendGrid's own keys, which is where
    the receiving service must look for them. `email` in `extra` picks the recipient.
    """
    email = str(extra.get("email") or (message.to_emails or [""])[0])
    now = int(time.time())
    built: dict[str, Any] = {**message.custom_args_for(email)}
    built.update(
        email=email,
        timestamp=now,
        event=event,
        sg_event_id=_sg_event_id(event, message.x_message_id),
        sg_message_id=f"{message.x_message_id}.{_filter_suffix(now)}",
    )
    built["smtp-id"] = f"<{message.x_message_id}@ismtpd0001p1iad1.sendgrid.net>"
    if message.categories:
        built["category"] = message.categories
    asm = message.payload.get("asm")
    if isinstance(asm, dict) and "group_id" in asm:
        built["asm_group_id"] = asm["group_id"]
    built.update(_EVENT_DEFAULTS.get(event, {}))
    built.update(extra)
    return built


class UnreportableEvent(ValueError):
    """SendGrid could not have posted this event for this message."""


def build_reportable_event(message: AcceptedMessage, event: str, **extra: Any) -> dict[str, Any]:
    """`build_event`, but only for an open or click SendGrid could have tracked.

    A click is on `extra["url"]`, which must be one of `message.tracked_links()`, or on the
    first of them; its url_offset says where that link sits. Other events pass through.
    Raises UnreportableEvent saying why not.
    """
    if event == "open":
        reason = message.open_untracked_reason()
        if reason is not None:
            raise UnreportableEvent(f"SendGrid could not report an open for this message: {reason}")
    if event == "click":
        link = _clicked_link(message, extra.get("url"))
        extra = {**extra, "url": link.url, "url_offset": link.url_offset}
    return build_event(message, event, **extra)


def _clicked_link(message: AcceptedMessage, url: Any) -> TrackedLink:
    links = message.tracked_links()
    if not links:
        raise UnreportableEvent(
            f"SendGrid could not report a click for this message: {message.click_untracked_reason()}"
        )
    if url is None:
        return links[0]
    for link in links:
        if link.url == url:
            return link
    tracked = ", ".join(f"{link.url} ({link.part} #{link.index})" for link in links)
    raise UnreportableEvent(f"SendGrid could not report a click on {url} for this message: it rewrote only {tracked}")


def _sg_event_id(event: str, x_message_id: str) -> str:
    """Unique per event, base64url like SendGrid's (which encodes event, ids and a counter)."""
    raw = f"{event}-{secrets.randbelow(10**9)}-{x_message_id}-{secrets.randbelow(100)}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _filter_suffix(now: int) -> str:
    """The mail-filter part SendGrid appends to X-Message-Id to form sg_message_id."""
    pod = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(5))
    return f"recvd-{secrets.token_hex(5)[:9]}-{pod}-1-{now:X}-{secrets.randbelow(256):X}.0"
