"""Open and click tracking: which opens and clicks SendGrid could report for a message (the
request's tracking settings, then the account's), which links it rewrites, and why not when not.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fake_sendgrid_support import HTML_LINKS, TEXT_LINKS, multipart, valid_payload

from dripiq_devtools.fake_sendgrid import AcceptedMessage, UnreportableEvent, build_reportable_event


def sent(payload: dict[str, Any], **account_tracking: bool) -> AcceptedMessage:
    return AcceptedMessage("W86EgYT6SQKk0lRflfLRsA", payload, datetime.now(UTC), **account_tracking)


def test_no_open_without_an_html_part_whatever_the_tracking() -> None:
    message = sent(valid_payload(tracking_settings={"open_tracking": {"enable": True}}), account_open_tracking=True)

    reason = message.open_untracked_reason()

    assert reason is not None and "text/html" in reason


@pytest.mark.parametrize(
    ("tracking_settings", "account_open_tracking", "untracked_because"),
    [
        ({"open_tracking": {"enable": True}}, False, None),
        ({}, True, None),
        ({}, False, "the request leaves open_tracking to the account, where it is off"),
        ({"open_tracking": {"enable": False}}, True, "tracking_settings.open_tracking.enable is false"),
        ({"open_tracking": {"enable": True, "substitution_tag": "%open%"}}, False, "substitution_tag '%open%'"),
    ],
)
def test_open_tracking_follows_the_request_then_the_account(
    tracking_settings: dict[str, Any], account_open_tracking: bool, untracked_because: str | None
) -> None:
    message = sent(multipart(**tracking_settings), account_open_tracking=account_open_tracking)

    reason = message.open_untracked_reason()

    if untracked_because is None:
        assert reason is None
    else:
        assert reason is not None and untracked_because in reason


def test_open_tracking_substitution_tag_in_the_html_is_where_the_pixel_goes() -> None:
    payload = multipart(open_tracking={"enable": True, "substitution_tag": "%open%"})
    payload["content"][1]["value"] += "%open%"

    assert sent(payload).open_untracked_reason() is None


def test_tracked_links_are_the_html_anchors_sendgrid_rewrites() -> None:
    message = sent(multipart(click_tracking={"enable": True}))

    assert message.tracked_links() == HTML_LINKS
    assert message.click_untracked_reason() is None


def test_text_links_are_tracked_only_with_enable_text() -> None:
    message = sent(multipart(click_tracking={"enable": True, "enable_text": True}))

    assert message.tracked_links() == HTML_LINKS + TEXT_LINKS


@pytest.mark.parametrize(
    ("payload", "account_click_tracking", "untracked_because"),
    [
        (multipart(), False, "the request leaves click_tracking to the account, where it is off"),
        (multipart(click_tracking={"enable": False, "enable_text": True}), True, "click_tracking.enable is false"),
        (valid_payload(tracking_settings={"click_tracking": {"enable": True}}), False, "enable_text"),
    ],
)
def test_no_click_where_sendgrid_rewrote_no_link(
    payload: dict[str, Any], account_click_tracking: bool, untracked_because: str
) -> None:
    message = sent(payload, account_click_tracking=account_click_tracking)

    reason = message.click_untracked_reason()

    assert message.tracked_links() == []
    assert reason is not None and untracked_because in reason


def test_account_click_tracking_applies_where_the_request_is_silent() -> None:
    assert sent(multipart(), account_click_tracking=True).tracked_links() == HTML_LINKS


def test_reportable_click_says_which_link_and_where_it_sits() -> None:
    message = sent(multipart(click_tracking={"enable": True, "enable_text": True}))

    first = build_reportable_event(message, "click")
    chosen = build_reportable_event(message, "click", url="http://dripiq.test/docs")

    assert (first["url"], first["url_offset"]) == ("https://dripiq.test/pricing", {"index": 0, "type": "html"})
    assert (chosen["url"], chosen["url_offset"]) == ("http://dripiq.test/docs", {"index": 1, "type": "text"})
    assert chosen["contact_id"] == "c-1"


def test_unreportable_events_say_why() -> None:
    tracked = sent(multipart(click_tracking={"enable": True}))

    with pytest.raises(UnreportableEvent, match="^SendGrid could not report an open for this message: "):
        build_reportable_event(sent(valid_payload()), "open")
    with pytest.raises(UnreportableEvent, match="^SendGrid could not report a click for this message: "):
        build_reportable_event(sent(valid_payload()), "click")
    with pytest.raises(UnreportableEvent, match="https://dripiq.test/unsubscribe") as raised:
        build_reportable_event(tracked, "click", url="https://dripiq.test/unsubscribe")
    assert "https://dripiq.test/pricing (html #0)" in str(raised.value)
    assert build_reportable_event(sent(valid_payload()), "bounce")["event"] == "bounce"
