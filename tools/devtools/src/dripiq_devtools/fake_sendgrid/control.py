"""The fake's own endpoints, under /_fake/, for tests and other processes to inspect and drive it:
list or forget messages, read counts, post one event, queue failures, slow the answers.

    GET    /_fake/messages    {"messages": [...], "requests_received"} every accepted message
    DELETE /_fake/messages    forget them
    GET    /_fake/stats       {"requests_received", "accepted", "distinct_message_ids",
                              "events_posted", "events_pending", "failed_posts"}
    POST   /_fake/events      {"webhook_url", "x_message_id", "event", "extra"}
                              -> {"status": <webhook's HTTP status>, "event": {...}}; 409 for an
                              open or click SendGrid could not have tracked (a click takes
                              extra.url, one of the message's tracked links; default: the first)
    POST   /_fake/failures    {"status", "count"}: the next sends answer with that status
    POST   /_fake/latency     {"seconds"}: slow every answer from now on
    POST   /_fake/inbound     {"url", "fields": {name: text}} -> {"status": <receiver's HTTP status>}:
                              one mail posted as Inbound Parse posts it, signed with the
                              Parse security policy's key
    GET    /_fake/public-key  {"public_key", "parse_public_key"}: base64 DER SubjectPublicKeyInfo
    POST   /_fake/domains     {"api_key", "domain", "valid" (true), "dns_ready" (= valid), "subuser"}:
                              authenticate a domain in the key's account (or its subuser's)
    POST   /_fake/senders     {"api_key", "from_email", "verified" (true), "subuser"}: a single
                              sender of that account, as if its owner had clicked the link
    POST   /_fake/engagement  an engagement profile (see `engagement.EngagementProfile`: rates,
                              "seed", "delays", "webhook_url" (default: the fake's), "inbound_url")
                              for mail accepted from now on -> the profile; 400 naming a bad field
    DELETE /_fake/engagement  no profile for mail accepted from now on
    GET    /_fake/engagement  {"profile", "planned", "withheld", "posted", "pending", "failed_posts"}
    GET    /_fake/engagement/log  {"posted": [{"kind", "x_message_id", "email", "custom_args", "at"}],
                              "sends": [{"x_message_id", "custom_args", "received_at"}]}: every link
                              taken and every accepted message, with wall-clock times (epoch seconds)
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING, Any, TypeGuard

import aiohttp
from aiohttp import web

from dripiq_devtools.fake_sendgrid.engagement import EngagementProfile
from dripiq_devtools.fake_sendgrid.events import UnreportableEvent, build_reportable_event

if TYPE_CHECKING:
    from dripiq_devtools.fake_sendgrid.server import FakeSendGrid

_TRIGGER_FIELDS = ("webhook_url", "x_message_id", "event")


class ControlEndpoints:
    """The /_fake/* handlers over one fake; the fake's app routes to them."""

    def __init__(self, fake: FakeSendGrid) -> None:
        self._fake = fake

    async def list_messages(self, _request: web.Request) -> web.Response:
        fake = self._fake
        return web.json_response(
            {"messages": [m.to_json() for m in fake.messages], "requests_received": fake.requests_received}
        )

    async def stats(self, _request: web.Request) -> web.Response:
        """Counts without the messages, for runs too large to list."""
        fake = self._fake
        distinct = {m.custom_args.get("message_id") for m in fake.messages}
        return web.json_response(
            {
                "requests_received": fake.requests_received,
                "accepted": len(fake.messages),
                "distinct_message_ids": len(distinct - {None}),
                "events_posted": fake.events_posted,
                "events_pending": fake.events_pending,
                "failed_posts": fake.failed_posts,
            }
        )

    async def clear_messages(self, _request: web.Request) -> web.Response:
        cleared = len(self._fake.messages)
        self._fake.clear()
        return web.json_response({"cleared": cleared})

    async def public_key(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {"public_key": self._fake.public_key_base64, "parse_public_key": self._fake.parse_public_key_base64}
        )

    async def post_inbound(self, request: web.Request) -> web.Response:
        spec = await _json_object(request)
        url, fields = spec.get("url"), spec.get("fields")
        if not (isinstance(url, str) and url and isinstance(fields, dict) and fields):
            return _control_error(HTTPStatus.BAD_REQUEST, "url and fields are required")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items()):
            return _control_error(HTTPStatus.BAD_REQUEST, "fields must map names to text")
        try:
            status = await self._fake.post_inbound(url, fields)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return _control_error(HTTPStatus.BAD_GATEWAY, f"receiver unreachable: {exc!r}")
        return web.json_response({"status": status})

    async def inject_failures(self, request: web.Request) -> web.Response:
        spec = await _json_object(request)
        status, count = spec.get("status"), spec.get("count", 1)
        if not isinstance(status, int) or not isinstance(count, int) or count < 1:
            return _control_error(HTTPStatus.BAD_REQUEST, "expected status and count >= 1")
        try:
            self._fake.fail_next(status, count)
        except ValueError:
            return _control_error(HTTPStatus.BAD_REQUEST, f"unknown HTTP status {status}")
        return web.json_response({"pending": self._fake.failures_pending})

    async def set_latency(self, request: web.Request) -> web.Response:
        """Slow every answer from now on, e.g. to catch a sender in the middle of a call."""
        seconds = (await _json_object(request)).get("seconds")
        if not isinstance(seconds, int | float) or not 0 <= seconds <= 60:
            return _control_error(HTTPStatus.BAD_REQUEST, "expected seconds between 0 and 60")
        self._fake.latency_seconds = float(seconds)
        return web.json_response({"latency_seconds": self._fake.latency_seconds})

    async def add_domain(self, request: web.Request) -> web.Response:
        spec = await _json_object(request)
        api_key, domain, subuser = spec.get("api_key"), spec.get("domain"), spec.get("subuser")
        valid, dns_ready = spec.get("valid", True), spec.get("dns_ready")
        if not (_text(api_key) and _text(domain) and (subuser is None or _text(subuser))):
            return _control_error(HTTPStatus.BAD_REQUEST, "api_key and domain are required; subuser is text")
        if not isinstance(valid, bool) or not (dns_ready is None or isinstance(dns_ready, bool)):
            return _control_error(HTTPStatus.BAD_REQUEST, "valid and dns_ready are booleans")
        entry = self._fake.accounts.authenticate_domain(
            api_key, domain, valid=valid, dns_ready=dns_ready, subuser=subuser
        )
        return web.json_response(entry.to_json(), status=HTTPStatus.CREATED)

    async def add_sender(self, request: web.Request) -> web.Response:
        spec = await _json_object(request)
        api_key, from_email, subuser = spec.get("api_key"), spec.get("from_email"), spec.get("subuser")
        verified = spec.get("verified", True)
        if not (_text(api_key) and _text(from_email) and "@" in from_email and (subuser is None or _text(subuser))):
            return _control_error(HTTPStatus.BAD_REQUEST, "api_key and from_email are required; subuser is text")
        if not isinstance(verified, bool):
            return _control_error(HTTPStatus.BAD_REQUEST, "verified is a boolean")
        sender = self._fake.accounts.add_sender(api_key, from_email, verified=verified, subuser=subuser)
        return web.json_response(sender.to_json(), status=HTTPStatus.CREATED)

    async def set_engagement(self, request: web.Request) -> web.Response:
        try:
            profile = EngagementProfile.from_json(await _json_object(request), webhook_url=self._fake.webhook_url)
        except ValueError as exc:
            return _control_error(HTTPStatus.BAD_REQUEST, str(exc))
        self._fake.engage(profile)
        return web.json_response(profile.to_json())

    async def stop_engagement(self, _request: web.Request) -> web.Response:
        self._fake.engage(None)
        return web.json_response({"profile": None})

    async def engagement_report(self, _request: web.Request) -> web.Response:
        current = self._fake.engagement
        return web.json_response(current.report() if current else {"profile": None})

    async def engagement_log(self, _request: web.Request) -> web.Response:
        fake = self._fake
        return web.json_response(
            {
                "posted": [p.to_json() for e in fake.engagements for p in e.posted],
                "sends": [
                    {
                        "x_message_id": m.x_message_id,
                        "custom_args": m.custom_args,
                        "received_at": m.received_at.timestamp(),
                    }
                    for m in fake.messages
                ],
            }
        )

    async def trigger_event(self, request: web.Request) -> web.Response:
        spec = await _json_object(request)
        webhook_url, x_message_id, event = (spec.get(k) for k in _TRIGGER_FIELDS)
        extra = spec.get("extra") or {}
        if not (
            isinstance(webhook_url, str)
            and webhook_url
            and isinstance(x_message_id, str)
            and x_message_id
            and isinstance(event, str)
            and event
        ):
            required = ", ".join(_TRIGGER_FIELDS)
            return _control_error(HTTPStatus.BAD_REQUEST, f"{required} are required")
        if not isinstance(extra, dict):
            return _control_error(HTTPStatus.BAD_REQUEST, "extra must be an object")
        message = self._fake.find(x_message_id)
        if message is None:
            return _control_error(HTTPStatus.NOT_FOUND, f"no accepted message {x_message_id}")
        try:
            built = build_reportable_event(message, event, **extra)
        except UnreportableEvent as exc:
            return _control_error(HTTPStatus.CONFLICT, str(exc))
        try:
            status = await self._fake.post_events(webhook_url, [built])
        except (aiohttp.ClientError, TimeoutError) as exc:
            return _control_error(HTTPStatus.BAD_GATEWAY, f"webhook unreachable: {exc!r}")
        return web.json_response({"status": status, "event": built})


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        spec = await request.json()
    except ValueError:
        return {}
    return spec if isinstance(spec, dict) else {}


def _text(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value.strip())


def _control_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
