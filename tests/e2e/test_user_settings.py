"""`make run` respects what the user set: a webhook key of their own stays valid beside the fake's."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from support import USER_ACCOUNT

from dripiq_devtools import running
from dripiq_devtools.fake_sendgrid import FakeSendGrid
from dripiq_devtools.suite import Suite


def post_signed(suite: Suite, signer: FakeSendGrid) -> int:
    body = json.dumps(
        [
            {
                "email": "someone@example.com",
                "event": "delivered",
                "timestamp": int(time.time()),
                "sg_event_id": f"user-key-{time.time_ns()}",
                "sg_message_id": "not-ours.filter0001",
            }
        ]
    ).encode()
    timestamp = str(int(time.time()))
    request = urllib.request.Request(
        f"http://127.0.0.1:{suite.port('EDGE_PORT')}/webhooks/sendgrid/events",
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": signer.sign(body, timestamp),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_batch_signed_with_the_users_key_is_accepted_beside_the_fakes(suite: Suite) -> None:
    assert post_signed(suite, USER_ACCOUNT) == 200
    assert post_signed(suite, FakeSendGrid()) == 403, "a key nobody configured is still refused"
    summary = running.summary(suite)
    assert f"SENDGRID_WEBHOOK_PUBLIC_KEY (...{USER_ACCOUNT.public_key_base64[-8:]})" in summary
    assert "the fake's" in summary and "sendgrid    fake" in summary
