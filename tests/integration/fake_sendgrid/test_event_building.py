"""Events built for an accepted message are shaped like SendGrid's, with unique ids, extras
overriding, and personalization custom args winning over the top-level ones.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fake_sendgrid_support import RECIPIENT, valid_payload

from dripiq_devtools.fake_sendgrid import AcceptedMessage, build_event


def accepted(**payload_overrides: Any) -> AcceptedMessage:
    payload = valid_payload(categories=["onboarding"], **payload_overrides)
    return AcceptedMessage("W86EgYT6SQKk0lRflfLRsA", payload, datetime.now(UTC))


@pytest.mark.parametrize(
    ("event", "expected_keys"),
    [
        ("open", {"sg_machine_open", "useragent", "ip"}),
        ("click", {"url", "useragent", "ip"}),
        ("bounce", {"type", "reason", "status", "bounce_classification"}),
        ("delivered", {"response"}),
        ("processed", set()),
    ],
)
def test_build_event_is_shaped_like_sendgrids(event: str, expected_keys: set[str]) -> None:
    message = accepted()

    built = build_event(message, event)

    assert built["event"] == event
    assert built["email"] == RECIPIENT
    assert isinstance(built["timestamp"], int)
    assert built["sg_message_id"].startswith("W86EgYT6SQKk0lRflfLRsA.recvd-")
    assert built["smtp-id"].startswith("<W86EgYT6SQKk0lRflfLRsA@")
    assert built["campaign_id"] == "camp-1"
    assert built["contact_id"] == "c-1"
    assert built["category"] == ["onboarding"]
    assert expected_keys <= set(built)
    if event == "open":
        assert built["sg_machine_open"] is False


def test_build_event_ids_are_unique_and_extras_override() -> None:
    message = accepted()

    first = build_event(message, "click", url="https://dripiq.test/pricing", contact_id="c-9")
    second = build_event(message, "click")

    assert first["sg_event_id"] != second["sg_event_id"]
    assert first["url"] == "https://dripiq.test/pricing"
    assert first["contact_id"] == "c-9"


def test_personalization_custom_args_win_over_top_level() -> None:
    message = accepted(custom_args={"campaign_id": "camp-1", "contact_id": "top"})

    assert message.custom_args == {"campaign_id": "camp-1", "contact_id": "c-1"}
