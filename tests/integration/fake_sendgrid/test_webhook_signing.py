"""Event Webhook signatures: posted events and signed bodies verify with SendGrid's own helper,
and the private key file is created private and reused.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

from fake_sendgrid_support import Receiver, raw_send, valid_payload
from sendgrid.helpers.eventwebhook import EventWebhook

from dripiq_devtools.fake_sendgrid import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    FakeSendGrid,
    build_event,
    load_or_create_private_key,
)


async def test_posted_events_verify_with_sendgrids_helper(fake: FakeSendGrid, receiver: Receiver) -> None:
    await raw_send(fake, valid_payload())
    event = build_event(fake.messages[0], "open")

    status = await fake.post_events(receiver.url, [event])

    assert status == 200
    [posted] = receiver.requests
    assert json.loads(posted.body) == [event]
    signature, timestamp = posted.headers[SIGNATURE_HEADER], posted.headers[TIMESTAMP_HEADER]
    verifier = EventWebhook(fake.public_key_base64)
    assert verifier.verify_signature(posted.body.decode(), signature, timestamp)
    tampered = posted.body.replace(b'"open"', b'"click"').decode()
    assert not verifier.verify_signature(tampered, signature, timestamp)
    assert not verifier.verify_signature(posted.body.decode(), signature, str(int(timestamp) + 1))


def test_sign_matches_what_the_verifier_expects(fake_key: FakeSendGrid) -> None:
    body = b'[{"event":"delivered"}]\r\n'

    signature = fake_key.sign(body, "1600112502")

    assert EventWebhook(fake_key.public_key_base64).verify_signature(body.decode(), signature, "1600112502")


def test_private_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "sendgrid.pem"

    created = load_or_create_private_key(path)
    reused = load_or_create_private_key(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert reused == created
    assert (
        FakeSendGrid(private_key_pem=created).public_key_base64
        == FakeSendGrid(private_key_pem=reused).public_key_base64
    )
