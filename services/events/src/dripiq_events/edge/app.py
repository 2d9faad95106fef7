"""The edge's HTTP endpoints.

Nothing here parses more than it must to decide whether to accept a request: what is
accepted goes to JetStream as received, and the answer is 2xx only after JetStream has it
(the PubAck), so SendGrid retries anything we did not durably take.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import nats.errors
import structlog
from aiohttp import web
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from sendgrid.helpers.eventwebhook import EventWebhook

from dripiq.events.v1 import messages_pb2
from dripiq_common.bus.contract import Subjects
from dripiq_common.clock import Clock, SystemClock
from dripiq_common.errors import InvalidArgument
from dripiq_common.tokens import InvalidToken, TokenSigner
from dripiq_events.domain import unsubscribe_request
from dripiq_events.edge.pages import OTHER_WAY, page, refused_link
from dripiq_events.edge.proofs import (
    MIN_SECRET_CHARS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    OAuthClient,
    ParseAuth,
    bearer_problem,
    client_credentials,
    signature_problem,
)
from dripiq_events.storable import loads_json

log = structlog.get_logger(__name__)

RawWebhook = messages_pb2.RawWebhook

EVENTS_PATH = "/webhooks/sendgrid/events"
INBOUND_PATH = "/webhooks/sendgrid/inbound"
# Inbound Parse for an account without a security policy: the secret in the URL is the proof.
INBOUND_SECRET_PATH = INBOUND_PATH + "/{secret}"
UNSUBSCRIBE_PATH = "/u/{token}"
TOKEN_PATH = "/oauth/token"
# Room for the RawWebhook envelope and headers around a body inside one NATS message.
ENVELOPE_BYTES = 4096
_CHUNK = 64 * 1024
# Probes answer however busy the edge is: a busy edge is not a dead one.
_UNLIMITED_PATHS = frozenset({"/healthz", "/readyz"})


REQUESTS = Counter(
    "dripiq_edge_requests",
    "HTTP requests answered, by route and status; not those shed past EDGE_MAX_IN_FLIGHT (dripiq_edge_shed)",
    ["route", "status"],
)
# Deliberate 503s, counted apart so that a 5xx in dripiq_edge_requests always means a failure.
SHED = Counter("dripiq_edge_shed", "Requests refused at once with 503 past EDGE_MAX_IN_FLIGHT, by route", ["route"])
# Marks a response as shed for the counting middleware, which sits outside the limit.
_SHED = web.ResponseKey("dripiq_edge_shed", bool)
EVENTS_ACCEPTED = Counter("dripiq_edge_events_accepted", "SendGrid events in batches queued on JetStream")
REJECTED = Counter("dripiq_edge_rejected", "Requests refused, by reason", ["reason"])
IN_FLIGHT = Gauge("dripiq_edge_requests_in_flight", "Requests being answered")
PUBLISH_SECONDS = Histogram(
    "dripiq_edge_publish_seconds",
    "From publish to PubAck",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


@dataclass(frozen=True)
class BodyLimits:
    """The largest body each route reads, in bytes; past it the answer is 413."""

    events: int = 5 * 1024 * 1024
    inbound: int = 5 * 1024 * 1024
    unsubscribe: int = 4096
    token: int = 4096

    @classmethod
    def all(cls, limit: int) -> BodyLimits:
        return cls(limit, limit, limit, limit)


@dataclass
class Edge:
    js: JetStreamContext
    nc: NATS
    # Every key SendGrid may sign with: the account's, and during a rotation the next one too.
    verifiers: Sequence[EventWebhook]
    signer: TokenSigner
    signature_tolerance_seconds: float
    # Inbound Parse is refused unless at least one of its proofs is configured.
    parse_auth: ParseAuth
    limits: BodyLimits = field(default_factory=BodyLimits)
    # Requests answered at once; past it a 503 with Retry-After, which SendGrid retries.
    max_in_flight: int = 64
    retry_after_seconds: int = 10
    publish_timeout_seconds: float = 5.0
    clock: Clock = field(default_factory=SystemClock)
    # With OAuth, every Event Webhook batch must carry a bearer token we issued; the signature
    # is then checked too unless require_signature is off ("instead of or besides").
    oauth: OAuthClient | None = None
    require_signature: bool = True
    # Set at shutdown so that /readyz sends load balancers elsewhere while requests drain.
    stopping: bool = False
    in_flight: int = 0

    def __post_init__(self) -> None:
        # Fail closed: an edge that would take unauthenticated webhooks does not start.
        if self.require_signature and not self.verifiers:
            raise ValueError("the Event Webhook signature is required, and no public key is given")
        if not self.require_signature and self.oauth is None:
            raise ValueError("without the Event Webhook signature, OAuth is required")
        if self.oauth is not None and len(self.oauth.client_secret) < MIN_SECRET_CHARS:
            raise ValueError(f"the OAuth client secret must be at least {MIN_SECRET_CHARS} characters")
        if not self.parse_auth.configured:
            raise ValueError("Inbound Parse needs a signature key, OAuth or a URL secret")
        if self.parse_auth.oauth and self.oauth is None:
            raise ValueError("Inbound Parse OAuth needs the OAuth client configured")
        if self.parse_auth.url_secret and len(self.parse_auth.url_secret) < MIN_SECRET_CHARS:
            raise ValueError(f"the Inbound Parse URL secret must be at least {MIN_SECRET_CHARS} characters")

    def body_limit(self, route_limit: int) -> int:
        """A body must also fit one NATS message (the server's max_payload, 1 MiB by default)."""
        return min(route_limit, self.nc.max_payload - ENVELOPE_BYTES)

    def app(self) -> web.Application:
        """The public routes; /metrics is served apart (metrics_app) on a port of its own."""
        largest = max(self.limits.events, self.limits.inbound, self.limits.unsubscribe, self.limits.token)
        app = web.Application(client_max_size=largest, middlewares=[_count_requests, self._limit_in_flight])
        app.router.add_post(EVENTS_PATH, self.sendgrid_events)
        app.router.add_post(TOKEN_PATH, self.oauth_token)
        app.router.add_post(INBOUND_PATH, self.sendgrid_inbound)
        app.router.add_post(INBOUND_SECRET_PATH, self.sendgrid_inbound)
        app.router.add_get(UNSUBSCRIBE_PATH, self.unsubscribe_page)
        app.router.add_post(UNSUBSCRIBE_PATH, self.unsubscribe)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        return app

    def metrics_app(self) -> web.Application:
        app = web.Application(client_max_size=1024)
        app.router.add_get("/metrics", self.metrics)
        return app

    @web.middleware
    async def _limit_in_flight(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Past max_in_flight, refuse at once rather than queue: a queue of 5 MiB bodies is
        memory the edge does not have, and SendGrid retries a 503."""
        if request.path in _UNLIMITED_PATHS:
            return await handler(request)
        if self.in_flight >= self.max_in_flight:
            REJECTED.labels("busy").inc()
            shed = web.json_response(
                {"error": f"more than {self.max_in_flight} requests in flight; retry later"},
                status=503,
                headers={"Retry-After": str(self.retry_after_seconds)},
            )
            shed[_SHED] = True
            return shed
        self.in_flight += 1
        IN_FLIGHT.inc()
        try:
            return await handler(request)
        finally:
            self.in_flight -= 1
            IN_FLIGHT.dec()

    async def sendgrid_events(self, request: web.Request) -> web.Response:
        body = await self._read_body(request, self.limits.events)
        if isinstance(body, web.Response):
            return body
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return _json_error(400, "body is not UTF-8")
        if self.oauth is not None:
            problem = bearer_problem(
                self.signer,
                self.oauth,
                now=self.clock.now().timestamp(),
                authorization=request.headers.get("Authorization", ""),
            )
            if problem is not None:
                REJECTED.labels("bearer").inc()
                log.warning("edge.webhook_rejected", reason=problem, remote=request.remote)
                return web.json_response(
                    {"error": problem}, status=401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
                )
        signature = request.headers.get(SIGNATURE_HEADER)
        if self.require_signature:
            problem = signature_problem(
                self.verifiers,
                body=text,
                signature=signature,
                timestamp=request.headers.get(TIMESTAMP_HEADER),
                now=self.clock.now().timestamp(),
                tolerance_seconds=self.signature_tolerance_seconds,
            )
            if problem is not None:
                REJECTED.labels("signature").inc()
                log.warning("edge.webhook_rejected", reason=problem, remote=request.remote)
                return _json_error(403, problem)
        try:
            events = loads_json(text)
        except ValueError as exc:
            return _json_error(400, f"body is not JSON: {exc}")
        if not isinstance(events, list):
            return _json_error(400, "body is not a JSON array")
        # A SendGrid retry of the same batch carries the same signature and body.
        msg_id = hashlib.sha256((signature or "").encode() + body).hexdigest()
        raw = RawWebhook(kind=RawWebhook.KIND_SENDGRID_EVENTS, body=body)
        if not await self._publish(Subjects.EDGE_SENDGRID_EVENTS, raw, msg_id):
            return self._busy("could not queue the batch; retry later")
        EVENTS_ACCEPTED.inc(len(events))
        return web.json_response({"accepted": len(events)})

    async def oauth_token(self, request: web.Request) -> web.Response:
        """OAuth 2.0 client credentials (RFC 6749 4.4), the flow SendGrid uses: the client
        authenticates with HTTP Basic or with form fields, and gets a bearer token."""
        if self.oauth is None:
            return _json_error(404, "OAuth is not configured")
        body = await self._read_body(request, self.limits.token)
        if isinstance(body, web.Response):
            return body
        form = dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace"), max_num_fields=16))
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type")
        client_id, client_secret = client_credentials(request.headers.get("Authorization", ""), form)
        if not (
            hmac.compare_digest(client_id.encode(), self.oauth.client_id.encode())
            and hmac.compare_digest(client_secret.encode(), self.oauth.client_secret.encode())
        ):
            REJECTED.labels("client_credentials").inc()
            return _oauth_error(401, "invalid_client")
        expires_at = int(self.clock.now().timestamp()) + self.oauth.token_ttl_seconds
        return web.json_response(
            {
                "access_token": self.signer.access_token(client_id, expires_at),
                "token_type": "Bearer",
                "expires_in": self.oauth.token_ttl_seconds,
            },
            headers={"Cache-Control": "no-store"},
        )

    async def metrics(self, _request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest())
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response

    async def sendgrid_inbound(self, request: web.Request) -> web.Response:
        if not request.content_type.startswith("multipart/"):
            return _json_error(400, "expected multipart/form-data")
        # What needs no body first: an unauthenticated post is refused before it is read.
        problem = self._parse_credentials_problem(request)
        if problem is not None:
            return _inbound_refused(request, problem)
        body = await self._read_body(request, self.limits.inbound)
        if isinstance(body, web.Response):
            return body
        problem = self._parse_signature_problem(request, body)
        if problem is not None:
            return _inbound_refused(request, problem)
        raw = RawWebhook(
            kind=RawWebhook.KIND_SENDGRID_INBOUND,
            body=body,
            # With its boundary: the events service cannot split the body without it.
            content_type=request.headers.get("Content-Type", ""),
        )
        # The Content-Type carries the boundary: the same bytes under another one are another post.
        msg_id = "inbound:" + hashlib.sha256(raw.content_type.encode("utf-8", "replace") + b"\n" + body).hexdigest()
        if not await self._publish(Subjects.EDGE_SENDGRID_INBOUND, raw, msg_id):
            return self._busy("could not queue the mail; retry later")
        return web.json_response({"accepted": 1})

    def _parse_credentials_problem(self, request: web.Request) -> str | None:
        auth = self.parse_auth
        given = request.match_info.get("secret")
        if auth.url_secret:
            if given is None:
                return "Inbound Parse is taken only at its secret URL"
            if not hmac.compare_digest(given.encode(), auth.url_secret.encode()):
                return "wrong Inbound Parse URL secret"
        elif given is not None:
            return "no Inbound Parse URL secret is configured"
        if auth.oauth:
            return bearer_problem(
                self.signer,
                self.oauth,
                now=self.clock.now().timestamp(),
                authorization=request.headers.get("Authorization", ""),
            )
        return None

    def _parse_signature_problem(self, request: web.Request, body: bytes) -> str | None:
        if not self.parse_auth.verifiers:
            return None
        return signature_problem(
            self.parse_auth.verifiers,
            body=body,
            signature=request.headers.get(SIGNATURE_HEADER),
            timestamp=request.headers.get(TIMESTAMP_HEADER),
            now=self.clock.now().timestamp(),
            tolerance_seconds=self.signature_tolerance_seconds,
        )

    async def unsubscribe_page(self, request: web.Request) -> web.Response:
        """GET only asks: mail scanners open links, and must not unsubscribe anyone."""
        target = self._unsubscribe_target(request.match_info["token"])
        if isinstance(target, web.Response):
            return target
        return page(
            200,
            "Unsubscribe",
            "Do you want to stop receiving these emails?",
            form='<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
            '<button type="submit">Unsubscribe</button></form>',
        )

    async def unsubscribe(self, request: web.Request) -> web.Response:
        """RFC 8058 one-click: mail clients POST `List-Unsubscribe=One-Click` without cookies.

        "Unsubscribed" only for a link we signed, naming a tenant and message the events service
        can record, once JetStream holds the request: from there it is honoured, with or without
        the events service's record of the message (the dispatcher resolves the address)."""
        body = await self._read_body(request, self.limits.unsubscribe)
        if isinstance(body, web.Response):
            return body
        target = self._unsubscribe_target(request.match_info["token"])
        if isinstance(target, web.Response):
            return target
        tenant_id, message_id = target
        raw = RawWebhook(kind=RawWebhook.KIND_UNSUBSCRIBE, fields={"tenant_id": tenant_id, "message_id": message_id})
        if not await self._publish(Subjects.EDGE_UNSUBSCRIBE, raw, f"unsub:{message_id}"):
            retry = page(503, "Please try again", "We could not record your request just now. Please try again.")
            retry.headers["Retry-After"] = str(self.retry_after_seconds)
            return retry
        return page(200, "Unsubscribed", "You are unsubscribed and will not receive these emails again.")

    def _unsubscribe_target(self, token: str) -> tuple[str, str] | web.Response:
        """(tenant_id, message_id) of a link that can be honoured, else the page saying why not."""
        try:
            return unsubscribe_request(*self.signer.read_unsubscribe_token(token))
        except InvalidToken as exc:
            REJECTED.labels(f"unsubscribe_{exc.problem}").inc()
            log.info("edge.unsubscribe_refused", problem=str(exc.problem), detail=exc.detail)
            return refused_link(exc.problem)
        except InvalidArgument as exc:
            # Signed by us, yet naming what could never be recorded.
            REJECTED.labels("unsubscribe_unusable").inc()
            log.warning("edge.unsubscribe_refused", problem="unusable", detail=str(exc))
            return page(400, "Link not valid", f"This unsubscribe link cannot be used ({exc}). {OTHER_WAY}")

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, _request: web.Request) -> web.Response:
        if self.stopping or not self.nc.is_connected:
            return web.json_response({"status": "not ready"}, status=503)
        return web.json_response({"status": "ready"})

    async def _read_body(self, request: web.Request, route_limit: int) -> bytes | web.Response:
        """The raw body, never holding more than the limit and one byte (also for chunked
        requests without a length, whose size is known only at their end)."""
        limit = self.body_limit(route_limit)
        if request.content_length is not None and request.content_length > limit:
            REJECTED.labels("too_large").inc()
            return _json_error(413, f"body larger than {limit} bytes")
        body = bytearray()
        while chunk := await request.content.read(min(_CHUNK, limit + 1 - len(body))):
            body += chunk
            if len(body) > limit:
                REJECTED.labels("too_large").inc()
                return _json_error(413, f"body larger than {limit} bytes")
        return bytes(body)

    def _busy(self, reason: str) -> web.Response:
        return web.json_response({"error": reason}, status=503, headers={"Retry-After": str(self.retry_after_seconds)})

    async def _publish(self, subject: str, raw: RawWebhook, msg_id: str) -> bool:
        """True once JetStream holds the message (a duplicate inside its window counts)."""
        raw.received_at.FromDatetime(self.clock.now())
        started = time.perf_counter()
        try:
            ack = await self.js.publish(
                subject,
                raw.SerializeToString(),
                timeout=self.publish_timeout_seconds,
                headers={"Nats-Msg-Id": msg_id},
            )
        except (nats.errors.Error, OSError) as exc:
            log.error("edge.publish_failed", subject=subject, error=repr(exc))
            return False
        PUBLISH_SECONDS.observe(time.perf_counter() - started)
        log.info("edge.published", subject=subject, seq=ack.seq, duplicate=bool(ack.duplicate))
        return True


@web.middleware
async def _count_requests(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        REQUESTS.labels(route, str(exc.status)).inc()
        raise
    if response.get(_SHED):
        SHED.labels(route).inc()
    else:
        REQUESTS.labels(route, str(response.status)).inc()
    return response


def _inbound_refused(request: web.Request, problem: str) -> web.Response:
    REJECTED.labels("inbound_auth").inc()
    log.warning("edge.inbound_rejected", reason=problem, remote=request.remote)
    return _json_error(403, problem)


def _oauth_error(status: int, error: str) -> web.Response:
    return web.json_response({"error": error}, status=status, headers={"Cache-Control": "no-store"})


def _json_error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)
