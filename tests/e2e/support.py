"""What the end-to-end tests share: bounded waiting, HTTP and SQL probes, common set-up."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc
from waiting import eventually_blocking as eventually

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as dpb
from dripiq.dispatcher.v1 import dispatcher_service_pb2_grpc as dpb_grpc
from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.scheduler.v1 import scheduler_service_pb2 as spb
from dripiq.scheduler.v1 import scheduler_service_pb2_grpc as spb_grpc
from dripiq_devtools.fake_sendgrid import FakeSendGrid
from dripiq_devtools.servers import pg_bin
from dripiq_devtools.suite import FAKE_ACCOUNT_KEY, Suite

T = TypeVar("T")

# The key pair of a real SendGrid account, whose verification key a user sets to receive its
# webhooks while `make run` sends to the fake.
USER_ACCOUNT = FakeSendGrid()

# Any day, any hour: a test must not wait for office hours.
ALWAYS = pb.SendWindow(weekdays=[1, 2, 3, 4, 5, 6, 7], start_hour=0, end_hour=24)


def http_json(url: str, payload: dict | None = None) -> Any:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def log_events(suite: Suite, process: str) -> list[dict[str, Any]]:
    """What a process of the suite logged (JSON lines), every run of it."""
    assert suite.log_dir is not None
    path = suite.log_dir / f"{process}.log"
    events = []
    for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


def sql(suite: Suite, query: str) -> list[list[str]]:
    """Read rows with psql, the operator's tool, so the test touches no service's code."""
    out = subprocess.run(
        [pg_bin("psql"), suite.env["DATABASE_URL"], "-tA", "-F", "\t", "-c", query],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def channel(suite: Suite, port_env: str, *, token: str | None = None) -> grpc.Channel:
    """TLS to a service's public port; every call carries `token`, the operator's by default."""
    return suite.blocking_channel(port_env, token=token)


def verified_sender(suite: Suite, tenant_id: str, from_email: str, *, forward_to: str = "") -> str:
    """An identity the dispatcher verified at the fake SendGrid, where its domain is first
    authenticated in the dispatcher's account, as the tenant would have done at SendGrid."""
    domain = from_email.rpartition("@")[2]
    http_json(f"{suite.env['SENDGRID_API_HOST']}/_fake/domains", {"api_key": FAKE_ACCOUNT_KEY, "domain": domain})
    with channel(suite, "DISPATCHER_GRPC_PORT") as ch:
        identities = dpb_grpc.SenderIdentityServiceStub(ch)
        identity = identities.CreateSenderIdentity(
            dpb.CreateSenderIdentityRequest(
                tenant_id=tenant_id, from_email=from_email, from_name="Sales", forward_to=forward_to
            ),
            timeout=10,
        ).sender_identity
        identities.VerifySenderIdentity(
            dpb.VerifySenderIdentityRequest(tenant_id=tenant_id, sender_identity_id=identity.sender_identity_id),
            timeout=10,
        )
    return identity.sender_identity_id


def sent_mail(suite: Suite, campaign_id: str, step_index: int) -> dict[str, Any]:
    """What the fake SendGrid received for one step of a campaign (exactly one request)."""
    fake = suite.env["SENDGRID_API_HOST"]

    def probe() -> list[dict[str, Any]]:
        return [
            m
            for m in http_json(f"{fake}/_fake/messages")["messages"]
            if m["custom_args"].get("campaign_id") == campaign_id
            and m["custom_args"].get("step_index") == str(step_index)
        ]

    found = eventually(probe, what=f"step {step_index} of {campaign_id} at SendGrid")
    assert len(found) == 1, f"step {step_index} was sent {len(found)} times"
    return found[0]


def trigger_event(
    suite: Suite, mail: dict[str, Any], event: str, extra: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    """Ask the fake SendGrid for one engagement event on a message it accepted: (200, what it
    posted to the edge), or (409, why) for an open or click SendGrid could not have tracked."""
    edge = f"http://127.0.0.1:{suite.port('EDGE_PORT')}"
    payload = {"webhook_url": f"{edge}/webhooks/sendgrid/events", "x_message_id": mail["x_message_id"], "event": event}
    if extra:
        payload["extra"] = extra
    try:
        return 200, http_json(f"{suite.env['SENDGRID_API_HOST']}/_fake/events", payload)
    except urllib.error.HTTPError as refused:
        with refused:
            return refused.code, json.loads(refused.read())


def post_event(suite: Suite, mail: dict[str, Any], event: str, extra: dict[str, Any] | None = None) -> None:
    """The fake SendGrid posts a signed Event Webhook batch to the edge, as SendGrid would."""
    status, posted = trigger_event(suite, mail, event, extra)
    assert status == 200 and posted["status"] == 200, posted


def fire_now(suite: Suite, tenant_id: str, key: str) -> None:
    """Move a pending timer to now through the scheduler's API, as an operator may: the same
    payload with a new fire time is a new version, fired at once."""
    timer = active_timer(suite, tenant_id, key)
    timer.fire_at.FromDatetime(datetime.now(UTC))
    with channel(suite, "SCHEDULER_GRPC_PORT") as ch:
        spb_grpc.SchedulerServiceStub(ch).ScheduleTimer(spb.ScheduleTimerRequest(timer=timer), timeout=10)


def active_timer(suite: Suite, tenant_id: str, key: str) -> spb.Timer:
    """The scheduler's active timer under this key, once the planner's outbox got it there."""
    with channel(suite, "SCHEDULER_GRPC_PORT") as ch:
        scheduler = spb_grpc.SchedulerServiceStub(ch)

        def active() -> spb.Timer | None:
            try:
                timer = scheduler.GetTimer(spb.GetTimerRequest(tenant_id=tenant_id, key=key), timeout=10).timer
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                return None
            return timer if timer.status == spb.TIMER_STATUS_ACTIVE else None

        return eventually(active, what=f"timer {key} held by the scheduler")


def post_reply(
    suite: Suite,
    mail: dict[str, Any],
    sender: str,
    text: str,
    *,
    subject: str | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    """An Inbound Parse post of a reply to the reply-to address that carries the token, made by
    the fake SendGrid and signed with its Parse security policy's key, as SendGrid posts it."""
    reply_to = mail["reply_to"]
    subject = subject if subject is not None else f"Re: {mail['subject']}"
    extra_headers = "".join(f"{name}: {value}\n" for name, value in (headers or {}).items())
    fields = {
        "to": reply_to,
        "from": sender,
        "subject": subject,
        "text": text,
        "envelope": json.dumps({"to": [reply_to], "from": sender}),
        "headers": f"From: {sender}\nTo: {reply_to}\nSubject: {subject}\n{extra_headers}",
        "charsets": json.dumps({"to": "UTF-8", "text": "UTF-8", "subject": "UTF-8", "from": "UTF-8"}),
    }
    edge = f"http://127.0.0.1:{suite.port('EDGE_PORT')}/webhooks/sendgrid/inbound"
    posted = http_json(
        f"http://127.0.0.1:{suite.port('FAKE_SENDGRID_PORT')}/_fake/inbound", {"url": edge, "fields": fields}
    )
    assert posted == {"status": 200}, posted
