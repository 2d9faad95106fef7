"""Fixtures for the events service tests.

The production durable consumers are never created here (the NATS server is shared with other
services' tests): tests call the handlers with the bytes JetStream would deliver.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import pytest
from events_helpers import MAIL_DOMAIN, SECRET, T0, Sent, accepted_message, outcome

from dripiq_common.clock import ManualClock
from dripiq_common.tokens import TokenSigner, rfc_message_id
from dripiq_devtools.fake_sendgrid import new_message_id
from dripiq_events.ingest import EventIngest


@pytest.fixture
def signer() -> TokenSigner:
    return TokenSigner(SECRET)


@pytest.fixture
def ingest(engine, signer) -> EventIngest:  # type: ignore[no-untyped-def]
    return EventIngest(engine, ManualClock(T0), signer)


@pytest.fixture
def send(ingest: EventIngest) -> Callable[..., Awaitable[Sent]]:
    """Record a sent message through the outcome consumer's handler (unless recorded=False)."""

    async def _send(tenant_id: str, *, custom_args: bool = True, recorded: bool = True) -> Sent:
        message_id, x_message_id = str(uuid.uuid4()), new_message_id()
        sent = Sent(
            tenant_id,
            message_id,
            x_message_id,
            rfc_message_id(message_id, MAIL_DOMAIN),
            accepted_message(tenant_id, message_id, x_message_id, custom_args=custom_args),
        )
        if recorded:
            assert await ingest.record_outcome(outcome(sent))
        return sent

    return _send
