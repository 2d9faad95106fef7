"""One message id, at most one provider call, even when the dispatcher dies mid-call.

The fake SendGrid holds its answer; the dispatcher is SIGKILLed after it committed `sending`
and while the request is at the provider. When JetStream redelivers the send command to the
restarted dispatcher, it never calls again; the provider's own `processed` event proves the
send and settles it as `sent`, whether it comes before that delivery or after it parked the
message as `unknown`.
"""

from __future__ import annotations

from support import ALWAYS, channel, eventually, http_json, log_events, sent_mail, sql, verified_sender

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.planner.v1 import campaign_service_pb2_grpc as pb_grpc
from dripiq_devtools.suite import Suite

TENANT = "initech-crash"


def test_a_dispatcher_killed_mid_call_never_sends_twice(suite: Suite) -> None:
    fake = suite.env["SENDGRID_API_HOST"]
    sender = verified_sender(suite, TENANT, "ops@initech.example")
    http_json(f"{fake}/_fake/latency", {"seconds": 3})
    try:
        with channel(suite, "PLANNER_GRPC_PORT") as ch:
            campaign = (
                pb_grpc.CampaignServiceStub(ch)
                .CreateCampaign(
                    pb.CreateCampaignRequest(
                        tenant_id=TENANT,
                        lead=pb.Lead(lead_id="l-1"),
                        contact=pb.Contact(contact_id="c-1", email="milton@initech.example", first_name="Milton"),
                        product=pb.Product(product_id="p-1", name="Stapler"),
                        sender_identity_id=sender,
                        send_window=ALWAYS,
                        strategy=pb.Strategy(
                            outreach_campaign=[
                                pb.OutreachStep(type="email", timing="Day 0", subject="Your stapler", content="Red."),
                                pb.OutreachStep(type="email", timing="Day 5", subject="Again", content="Still red."),
                            ]
                        ),
                    ),
                    timeout=10,
                )
                .campaign
            )
        cid = campaign.campaign_id
        before = http_json(f"{fake}/_fake/messages")["requests_received"]
        eventually(
            lambda: (
                sql(suite, f"SELECT status FROM dispatcher.messages WHERE campaign_id = '{cid}'") == [["sending"]]
                and http_json(f"{fake}/_fake/messages")["requests_received"] > before
            ),
            what="the dispatcher committed `sending` and its request is at the provider",
        )
        suite.kill("dispatcher")
    finally:
        http_json(f"{fake}/_fake/latency", {"seconds": 0})
    suite.restart("dispatcher")

    # SendGrid's own `processed` event (the fake posts it by itself) settles the send, whether
    # it comes before JetStream delivers the command again (after its 30 s ack wait) or after
    # that delivery parked the message as unknown: the call is never repeated.
    mail = sent_mail(suite, cid, 0)  # exactly one request reached the provider
    eventually(
        lambda: (
            sql(suite, f"SELECT status, provider_message_id FROM dispatcher.messages WHERE campaign_id = '{cid}'")
            == [["sent", mail["x_message_id"]]]
        ),
        what="SendGrid's event settles the send",
        timeout=60,
    )
    # JetStream delivers the command again to the restarted dispatcher: it finds the message
    # settled (or `sending`, then parks it) and calls nobody.
    message_id = mail["custom_args"]["message_id"]
    eventually(
        lambda: any(
            e.get("message_id") == message_id
            and e.get("event") in ("send.redelivered_settled", "send.found_sending_marked_unknown")
            for e in log_events(suite, "dispatcher")
        ),
        what="the command delivered again after the restart",
        timeout=60,
    )
    assert sent_mail(suite, cid, 0)["x_message_id"] == mail["x_message_id"]
    with channel(suite, "PLANNER_GRPC_PORT") as ch:
        campaigns = pb_grpc.CampaignServiceStub(ch)
        eventually(
            lambda: (
                campaigns.GetCampaign(pb.GetCampaignRequest(tenant_id=TENANT, campaign_id=cid), timeout=10)
                .campaign.steps[0]
                .status
                == pb.STEP_STATUS_SENT
            ),
            what="the planner hears the step went out",
        )
