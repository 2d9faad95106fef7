"""The thin path through all five processes, each its own OS process, as `make run` starts them.

CreateCampaign over gRPC -> step-0 timer in the scheduler, fired onto JetStream -> planner
issues the send -> dispatcher sends through the `sendgrid` library to the fake SendGrid ->
the fake posts a signed `open` to the edge -> events stores it and publishes engagement ->
planner applies the open rule to step 1 -> an Inbound Parse reply reaches the edge -> the
campaign is canceled with its timers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as dpb
from dripiq.dispatcher.v1 import dispatcher_service_pb2_grpc as dpb_grpc
from dripiq.events.v1 import events_service_pb2 as epb
from dripiq.events.v1 import events_service_pb2_grpc as epb_grpc
from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.planner.v1 import campaign_service_pb2_grpc as pb_grpc
from dripiq_devtools.servers import pg_bin
from dripiq_devtools.suite import Suite

T = TypeVar("T")
TENANT = "acme-e2e"


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


@pytest.fixture(scope="module")
def suite() -> Iterator[Suite]:
    root = Path(tempfile.mkdtemp(prefix="dripiq-e2e-"))
    running = Suite(
        run_dir=root / "run",
        ephemeral_ports=True,
        log_format="json",
        log_dir=root / "logs",
        extra_env={
            "SCHEDULER_POLL_SECONDS": "0.1",
            "PLANNER_OUTBOX_POLL_SECONDS": "0.2",
            "DISPATCHER_OUTBOX_POLL_SECONDS": "0.2",
            "EVENTS_OUTBOX_POLL_SECONDS": "0.2",
        },
    )
    try:
        running.start()
    except BaseException:
        for log in sorted((root / "logs").glob("*.log")):
            print(f"--- {log.name}\n{log.read_text()[-4000:]}")
        raise
    yield running
    running.stop()
    if running.dead_children() and any(c.returncode not in (0, -15) for c in running.children.values()):
        for log in sorted((root / "logs").glob("*.log")):
            print(f"--- {log.name}\n{log.read_text()[-4000:]}")
    shutil.rmtree(root, ignore_errors=True)


def channel(suite: Suite, port_env: str) -> grpc.Channel:
    return grpc.insecure_channel(f"127.0.0.1:{suite.port(port_env)}")


def test_grpcurl_lists_every_service(suite: Suite) -> None:
    grpcurl = Path(sys.executable).parent / "grpcurl"
    expected = {
        "PLANNER_GRPC_PORT": "dripiq.planner.v1.CampaignService",
        "DISPATCHER_GRPC_PORT": "dripiq.dispatcher.v1.SenderIdentityService",
        "EVENTS_GRPC_PORT": "dripiq.events.v1.EventsService",
        "SCHEDULER_GRPC_PORT": "dripiq.scheduler.v1.SchedulerService",
    }
    for port_env, service in expected.items():
        listed = subprocess.run(
            [str(grpcurl), "-plaintext", f"127.0.0.1:{suite.port(port_env)}", "list"],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.split()
        assert service in listed
        assert "grpc.health.v1.Health" in listed


def test_invalid_email_is_invalid_argument_naming_the_field(suite: Suite) -> None:
    with channel(suite, "PLANNER_GRPC_PORT") as ch:
        with pytest.raises(grpc.RpcError) as exc:
            pb_grpc.CampaignServiceStub(ch).CreateCampaign(
                pb.CreateCampaignRequest(
                    tenant_id=TENANT,
                    lead=pb.Lead(lead_id="l"),
                    product=pb.Product(product_id="p"),
                    sender_identity_id="s",
                    contact=pb.Contact(contact_id="c", email="nobody-at-example"),
                ),
                timeout=10,
            )
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(exc.value)
    detail = error_details_pb2.BadRequest()
    status.details[0].Unpack(detail)
    assert detail.field_violations[0].field == "contact.email"


def test_thin_path(suite: Suite) -> None:
    fake = suite.env["SENDGRID_API_HOST"]
    edge = f"http://127.0.0.1:{suite.port('EDGE_PORT')}"

    with channel(suite, "DISPATCHER_GRPC_PORT") as ch:
        identities = dpb_grpc.SenderIdentityServiceStub(ch)
        identity = identities.CreateSenderIdentity(
            dpb.CreateSenderIdentityRequest(tenant_id=TENANT, from_email="sales@acme.example", from_name="Acme Sales"),
            timeout=10,
        ).sender_identity
        identities.VerifySenderIdentity(
            dpb.VerifySenderIdentityRequest(tenant_id=TENANT, sender_identity_id=identity.sender_identity_id),
            timeout=10,
        )

    with channel(suite, "PLANNER_GRPC_PORT") as ch:
        campaigns = pb_grpc.CampaignServiceStub(ch)
        campaign = campaigns.CreateCampaign(
            pb.CreateCampaignRequest(
                tenant_id=TENANT,
                request_id="e2e-1",
                lead=pb.Lead(lead_id="lead-1", company_name="Globex"),
                contact=pb.Contact(contact_id="contact-1", email="ada@globex.example", first_name="Ada"),
                product=pb.Product(product_id="product-1", name="Widget"),
                sender_identity_id=identity.sender_identity_id,
                # Any day, any hour: the test must not wait for office hours.
                send_window=pb.SendWindow(weekdays=[1, 2, 3, 4, 5, 6, 7], start_hour=0, end_hour=24),
                strategy=pb.Strategy(
                    outreach_campaign=[
                        pb.OutreachStep(
                            type="email",
                            timing="Day 0",
                            subject="Hello {{first_name}}",
                            content="About {{product_name}}",
                        ),
                        pb.OutreachStep(type="email", timing="Day 3", subject="Following up", content="Still there?"),
                    ]
                ),
            ),
            timeout=10,
        ).campaign
        cid = campaign.campaign_id

        # Send: the fake SendGrid received exactly one request, with our custom args.
        sent = eventually(
            lambda: [
                m for m in http_json(f"{fake}/_fake/messages")["messages"] if m["custom_args"].get("campaign_id") == cid
            ],
            what="step 0 at SendGrid",
        )
        assert len(sent) == 1
        mail = sent[0]
        message_id = mail["custom_args"]["message_id"]
        assert mail["custom_args"] == {
            "tenant_id": TENANT,
            "campaign_id": cid,
            "step_index": "0",
            "message_id": message_id,
        }
        assert mail["to_emails"] == ["ada@globex.example"] and mail["subject"] == "Hello Ada"

        # Sent: planner marks step 0 and schedules step 1 by its delay.
        def step_state() -> pb.Campaign:
            return campaigns.GetCampaign(pb.GetCampaignRequest(tenant_id=TENANT, campaign_id=cid), timeout=10).campaign

        after_send = eventually(
            lambda: (c := step_state()).steps[0].status == pb.STEP_STATUS_SENT and c, what="step 0 marked sent"
        )
        first_plan = after_send.steps[1].scheduled_at.ToDatetime(tzinfo=UTC)
        planned_gap = first_plan - after_send.steps[0].sent_at.ToDatetime(tzinfo=UTC)
        assert timedelta(days=3) <= planned_gap < timedelta(days=3, minutes=15)

        # Webhook: the fake posts a signed open to the edge.
        posted = http_json(
            f"{fake}/_fake/events",
            {"webhook_url": f"{edge}/webhooks/sendgrid/events", "x_message_id": mail["x_message_id"], "event": "open"},
        )
        assert posted["status"] == 200

        with channel(suite, "EVENTS_GRPC_PORT") as ech:
            events = epb_grpc.EventsServiceStub(ech)
            eventually(
                lambda: [
                    e
                    for e in events.ListMessageEvents(
                        epb.ListMessageEventsRequest(tenant_id=TENANT, message_id=message_id), timeout=10
                    ).events
                    if e.event_type == "open"
                ],
                what="open stored by the events service",
            )

        # React: the open rule moves step 1 to 1-2 days from the open.
        moved = eventually(
            lambda: (c := step_state()).steps[1].scheduled_at.ToDatetime(tzinfo=UTC) != first_plan and c,
            what="open rule applied to step 1",
        )
        new_plan = moved.steps[1].scheduled_at.ToDatetime(tzinfo=UTC)
        now = datetime.now(UTC)
        assert now + timedelta(hours=23) < new_plan < now + timedelta(days=2, minutes=20)

        # Reply: Inbound Parse posts the reply to the reply-to address that carries the token.
        reply_to = mail["reply_to"]
        fields = {
            "to": reply_to,
            "from": "Ada <ada@globex.example>",
            "subject": "Re: Hello Ada",
            "text": "Sounds good, call me.",
            "envelope": json.dumps({"to": [reply_to], "from": "ada@globex.example"}),
            "headers": f"From: ada@globex.example\nTo: {reply_to}\nSubject: Re: Hello Ada\n",
            "charsets": json.dumps({"to": "UTF-8", "text": "UTF-8", "subject": "UTF-8", "from": "UTF-8"}),
        }
        boundary = "xYzZY"
        body = (
            "".join(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields.items()
            )
            + f"--{boundary}--\r\n"
        )
        request = urllib.request.Request(
            f"{edge}/webhooks/sendgrid/inbound",
            data=body.encode(),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200

        canceled = eventually(
            lambda: (c := step_state()).status == pb.CAMPAIGN_STATUS_CANCELED and c,
            what="campaign canceled by the reply",
        )
        assert canceled.cancel_reason == "reply"
        assert [s.status for s in canceled.steps] == [pb.STEP_STATUS_SENT, pb.STEP_STATUS_CANCELED]

    # Every schema tells the same story.
    eventually(
        lambda: (
            sql(
                suite, f"SELECT count(*) FROM scheduler.timers WHERE group_key = 'campaign:{cid}' AND status = 'active'"
            )
            == [["0"]]
        ),
        what="campaign timers canceled",
    )
    assert sql(suite, f"SELECT status, version FROM scheduler.timers WHERE key = '{cid}:step'") == [["canceled", "3"]]
    assert sql(
        suite, f"SELECT status, provider_message_id FROM dispatcher.messages WHERE message_id = '{message_id}'"
    ) == [["sent", mail["x_message_id"]]]
    assert sorted(
        r[0] for r in sql(suite, f"SELECT event_type FROM events.message_events WHERE message_id = '{message_id}'")
    ) == ["open", "reply"]
    assert sorted(
        r[0] for r in sql(suite, f"SELECT trigger FROM planner.rule_decisions WHERE campaign_id = '{cid}'")
    ) == ["open", "reply"]
    assert len(http_json(f"{fake}/_fake/messages")["messages"]) == 1, "step 1 was never sent"
