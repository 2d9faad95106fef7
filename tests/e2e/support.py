"""What the end-to-end tests share: bounded waiting, HTTP and SQL probes, common set-up."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as dpb
from dripiq.dispatcher.v1 import dispatcher_service_pb2_grpc as dpb_grpc
from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq_devtools.fake_sendgrid import FakeSendGrid
from dripiq_devtools.servers import pg_bin
from dripiq_devtools.suite import Suite

T = TypeVar("T")

# The key pair of a real SendGrid account, whose verification key a user sets to receive its
# webhooks while `make run` sends to the fake.
USER_ACCOUNT = FakeSendGrid()

# Any day, any hour: a test must not wait for office hours.
ALWAYS = pb.SendWindow(weekdays=[1, 2, 3, 4, 5, 6, 7], start_hour=0, end_hour=24)


def eventually(probe: Callable[[], T | None], *, what: str, timeout: float = 30.0) -> T:
    """Poll until probe returns something truthy; bounded, and says what it waited for."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for: {what}")


def http_json(url: str, payload: dict | None = None) -> Any:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def sql(suite: Suite, query: str) -> list[list[str]]:
    """Read rows with psql, the operator's tool, so the test touches no service's code."""
    out = subprocess.run(
        [pg_bin("psql"), suite.env["DATABASE_URL"], "-tA", "-F", "\t", "-c", query],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def channel(suite: Suite, port_env: str) -> grpc.Channel:
    return grpc.insecure_channel(f"127.0.0.1:{suite.port(port_env)}")


def verified_sender(suite: Suite, tenant_id: str, from_email: str) -> str:
    with channel(suite, "DISPATCHER_GRPC_PORT") as ch:
        identities = dpb_grpc.SenderIdentityServiceStub(ch)
        identity = identities.CreateSenderIdentity(
            dpb.CreateSenderIdentityRequest(tenant_id=tenant_id, from_email=from_email, from_name="Sales"), timeout=10
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


def post_event(suite: Suite, mail: dict[str, Any], event: str) -> None:
    """The fake SendGrid posts a signed Event Webhook batch to the edge, as SendGrid would."""
    edge = f"http://127.0.0.1:{suite.port('EDGE_PORT')}"
    posted = http_json(
        f"{suite.env['SENDGRID_API_HOST']}/_fake/events",
        {"webhook_url": f"{edge}/webhooks/sendgrid/events", "x_message_id": mail["x_message_id"], "event": event},
    )
    assert posted["status"] == 200, posted


def post_reply(suite: Suite, mail: dict[str, Any], sender: str, text: str) -> None:
    """An Inbound Parse post of a reply to the reply-to address that carries the token."""
    reply_to = mail["reply_to"]
    fields = {
        "to": reply_to,
        "from": sender,
        "subject": f"Re: {mail['subject']}",
        "text": text,
        "envelope": json.dumps({"to": [reply_to], "from": sender}),
        "headers": f"From: {sender}\nTo: {reply_to}\nSubject: Re: {mail['subject']}\n",
        "charsets": json.dumps({"to": "UTF-8", "text": "UTF-8", "subject": "UTF-8", "from": "UTF-8"}),
    }
    boundary = "xYzZY"
    body = (
        "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields.items())
        + f"--{boundary}--\r\n"
    )
    request = urllib.request.Request(
        f"http://127.0.0.1:{suite.port('EDGE_PORT')}/webhooks/sendgrid/inbound",
        data=body.encode(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
