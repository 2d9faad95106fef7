"""What the send-path tests share: the dispatcher built on the fake SendGrid, a verified sender
identity, a send command, and reading back what SendGrid received, the message row and the
outcomes waiting in the outbox."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as pb
from dripiq.dispatcher.v1 import messages_pb2
from dripiq_common.bus.contract import Subjects
from dripiq_common.clock import Clock, ManualClock
from dripiq_common.tokens import TokenSigner
from dripiq_devtools.fake_sendgrid import AcceptedMessage, FakeSendGrid
from dripiq_dispatcher import campaign_mail, failures, repository
from dripiq_dispatcher.accounts import ProviderAccounts
from dripiq_dispatcher.identities import SenderIdentities
from dripiq_dispatcher.models import messages, outbox
from dripiq_dispatcher.provider import AsyncSendGridSender, MailSender
from dripiq_dispatcher.rate_limits import RateLimits
from dripiq_dispatcher.sender_auth import SendGridSenderChecks, VerifiedBy
from dripiq_dispatcher.sending import Sends
from dripiq_dispatcher.unconfirmed import UnconfirmedSends

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
SIGNER = TokenSigner(b"integration-test-token-secret")
MAIL = campaign_mail.MailSettings("reply.test", "mid.test", "https://u.test/u/")
# Compressed: a real deployment retries for hours (DISPATCHER_RETRY_HORIZON_SECONDS).
RETRY = failures.RetryPolicy(horizon=timedelta(minutes=10), base=timedelta(seconds=30), cap=timedelta(minutes=2))
# The default account's key at the fake SendGrid, where the test identities' domains are authenticated.
TEST_KEY = "SG.test"
TEST_DOMAINS = ("acme.test", "acme-corp.test")
TEST_ACCOUNT = {TEST_KEY: list(TEST_DOMAINS)}
# Nothing listens here: an API whose tests never verify asks no SendGrid.
NO_SENDGRID = "http://127.0.0.1:9"


def new_sender(host: str, *, concurrency: int, timeout_seconds: float) -> MailSender:
    return AsyncSendGridSender(api_key=TEST_KEY, host=host, concurrency=concurrency, timeout_seconds=timeout_seconds)


def fake_with_test_domains() -> FakeSendGrid:
    """A fake SendGrid whose default account has the test identities' domains authenticated."""
    return FakeSendGrid(authenticated_domains=TEST_ACCOUNT)


def sender_identities(
    engine: AsyncEngine, clock: Clock, host: str = NO_SENDGRID, accounts: ProviderAccounts | None = None
) -> SenderIdentities:
    """The identities API, verifying at the SendGrid on `host` with the test key."""
    checks = SendGridSenderChecks(host, TEST_KEY, timeout_seconds=5)
    return SenderIdentities(engine, clock, checks, accounts or ProviderAccounts())


async def mark_verified(engine: AsyncEngine, tenant_id: str, identity_id: str) -> None:
    """Set-up for tests of what comes after verifying: recorded as VerifySenderIdentity would."""
    async with engine.begin() as conn:
        await repository.identities.record_verification(
            conn,
            tenant_id=tenant_id,
            identity_id=identity_id,
            provider_config_id="",
            verified_by=VerifiedBy.DOMAIN.value,
            now=T0,
        )


def new_dispatcher(engine: AsyncEngine, sender: Any, kicks: list[int] | None = None) -> Sends:
    def kick() -> None:
        if kicks is not None:
            kicks.append(1)

    return Sends(engine, ManualClock(T0), sender, SIGNER, MAIL, RETRY, on_outbox=kick)


def rate_limits_of(dispatcher: Sends) -> RateLimits:
    """The budgets API on the send path's database and clock."""
    return RateLimits(dispatcher.engine, dispatcher.clock)


def unconfirmed_of(dispatcher: Sends) -> UnconfirmedSends:
    """The settlement of unknown sends beside the send path, waking the same outbox relay."""
    return UnconfirmedSends(dispatcher.engine, dispatcher.clock, on_outbox=dispatcher.on_outbox)


async def identity(engine: AsyncEngine, tenant_id: str, *, verified: bool = True) -> str:
    identities = sender_identities(engine, ManualClock(T0))
    created = await identities.create(
        pb.CreateSenderIdentityRequest(
            tenant_id=tenant_id,
            from_email=f"sales-{uuid.uuid4().hex[:6]}@acme.test",
            from_name="Acme",
        )
    )
    if verified:
        await mark_verified(engine, tenant_id, created.sender_identity_id)
    return created.sender_identity_id


def command(tenant_id: str, identity_id: str, **overrides: Any) -> messages_pb2.SendMessageCommand:
    fields: dict[str, Any] = {
        "tenant_id": tenant_id,
        "message_id": str(uuid.uuid4()),
        "campaign_id": "camp-1",
        "step_index": 1,
        "contact_id": "contact-1",
        "channel": "email",
        "to_email": "ada@example.com",
        "to_name": "Ada",
        "sender_identity_id": identity_id,
        "subject": "Hello Ada",
        "body_text": "Hi Ada",
        "body_html": "<p>Hi Ada</p>",
        "categories": ["campaign"],
    }
    fields.update(overrides)
    return messages_pb2.SendMessageCommand(**fields)


def received(fake: FakeSendGrid, message_id: str) -> list[AcceptedMessage]:
    return [m for m in fake.messages if m.custom_args.get("message_id") == message_id]


async def stored(engine: AsyncEngine, message_id: str) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(select(messages).where(messages.c.message_id == message_id))).one()


async def outcomes(engine: AsyncEngine, tenant_id: str) -> list[messages_pb2.MessageOutcome]:
    async with engine.connect() as conn:
        payloads = (
            (
                await conn.execute(
                    select(outbox.c.payload)
                    .where(outbox.c.subject == Subjects.message_outcome(tenant_id))
                    .order_by(outbox.c.id)
                )
            )
            .scalars()
            .all()
        )
    return [messages_pb2.MessageOutcome.FromString(p) for p in payloads]
