"""The edge's signature and freshness check, and its start-up settings, without a server."""

from __future__ import annotations

import time

import pytest

from dripiq_common.settings import load_settings
from dripiq_devtools.fake_sendgrid import FakeSendGrid
from dripiq_events.edge.proofs import load_verifiers, signature_problem
from dripiq_events.edge.settings import EdgeSettings

FAKE = FakeSendGrid()
VERIFIERS = load_verifiers(FAKE.public_key_base64)
BODY = b'[{"event":"open"}]\r\n'


def check(body: bytes = BODY, *, signed_at: int | None = None, now: float | None = None, **overrides):  # type: ignore[no-untyped-def]
    now = time.time() if now is None else now
    timestamp = str(int(now) if signed_at is None else signed_at)
    fields = {"signature": FAKE.sign(BODY, timestamp), "timestamp": timestamp, **overrides}
    return signature_problem(VERIFIERS, body=body.decode(), now=now, tolerance_seconds=600, **fields)


def test_a_fresh_sendgrid_signature_is_accepted():
    assert check() is None


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"signature": None}, "missing signature headers"),
        ({"timestamp": ""}, "missing signature headers"),
        ({"timestamp": "soon"}, "timestamp is not a number"),
        ({"signature": "%%%not base64"}, "signature does not match"),
        ({"signature": "AAAA"}, "signature does not match"),
        ({"body": b"[]"}, "signature does not match"),
    ],
)
def test_untrusted_requests_say_why(kwargs, reason):
    assert check(**kwargs) == reason


def test_every_configured_key_is_accepted_and_no_other():
    """A real account's key beside the fake's (make run), or the old and new key during a rotation."""
    other = FakeSendGrid()
    both = load_verifiers(f" {other.public_key_base64} , {FAKE.public_key_base64},")
    now = time.time()
    timestamp = str(int(now))
    for signer in (FAKE, other):
        signature = signer.sign(BODY, timestamp)
        assert (
            signature_problem(
                both, body=BODY.decode(), signature=signature, timestamp=timestamp, now=now, tolerance_seconds=600
            )
            is None
        )
    stranger = FakeSendGrid().sign(BODY, timestamp)
    assert (
        signature_problem(
            both, body=BODY.decode(), signature=stranger, timestamp=timestamp, now=now, tolerance_seconds=600
        )
        == "signature does not match"
    )


def test_a_bad_key_among_several_is_named():
    with pytest.raises(ValueError, match="key 2 of 2"):
        load_verifiers(f"{FAKE.public_key_base64},bm90IGEga2V5")
    with pytest.raises(ValueError, match="no key"):
        load_verifiers(" , ")


def test_signatures_outside_the_window_are_refused_either_way():
    now = time.time()
    assert check(signed_at=int(now) - 601, now=now) == "timestamp outside the accepted window"
    assert check(signed_at=int(now) + 601, now=now) == "timestamp outside the accepted window"
    assert check(signed_at=int(now) - 599, now=now) is None


def test_missing_settings_stop_start_up_naming_them(monkeypatch):
    monkeypatch.delenv("SENDGRID_WEBHOOK_PUBLIC_KEY", raising=False)
    monkeypatch.setenv("DRIPIQ_TOKEN_SECRET", "short")
    with pytest.raises(SystemExit) as exc:
        load_settings(EdgeSettings)
    assert "DRIPIQ_TOKEN_SECRET" in str(exc.value)
    monkeypatch.setenv("DRIPIQ_TOKEN_SECRET", "a-long-enough-secret")
    with pytest.raises(SystemExit) as exc:
        load_settings(EdgeSettings)
    assert "SENDGRID_WEBHOOK_PUBLIC_KEY is required" in str(exc.value)


def test_settings_come_from_the_suite_wide_names(monkeypatch):
    monkeypatch.setenv("SENDGRID_WEBHOOK_PUBLIC_KEY", FAKE.public_key_base64)
    monkeypatch.setenv("SENDGRID_PARSE_PUBLIC_KEY", FAKE.parse_public_key_base64)
    monkeypatch.setenv("DRIPIQ_TOKEN_SECRET", "a-long-enough-secret")
    monkeypatch.setenv("NATS_URL", "nats://10.0.0.1:4222")
    monkeypatch.setenv("EDGE_PORT", "9090")
    settings = load_settings(EdgeSettings)
    assert (settings.nats_url, settings.port, settings.max_events_bytes, settings.metrics_port) == (
        "nats://10.0.0.1:4222",
        9090,
        5 * 1024 * 1024,
        9105,
    )
