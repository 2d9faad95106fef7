"""The dispatcher's gRPC APIs over a real grpc.aio server: sender identities, suppressions and
messages, with the status codes and field names a caller sees, and tenants kept apart."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import grpc
import pytest
import pytest_asyncio
from dispatch_support import fake_with_test_domains, sender_identities
from grpc_support import dispatcher_api, violated_fields

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as pb
from dripiq.dispatcher.v1 import dispatcher_service_pb2_grpc as pb_grpc
from dripiq.dispatcher.v1 import messages_pb2
from dripiq_common.clock import ManualClock
from dripiq_common.tokens import TokenSigner
from dripiq_devtools.fake_sendgrid import FakeSendGrid
from dripiq_dispatcher import campaign_mail, failures
from dripiq_dispatcher.provider import AsyncSendGridSender
from dripiq_dispatcher.sending import Sends

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


@pytest_asyncio.fixture(scope="module")
async def fake() -> AsyncIterator[FakeSendGrid]:
    async with fake_with_test_domains() as server:
        yield server


@pytest_asyncio.fixture(scope="module")
async def dispatcher(engine, fake: FakeSendGrid) -> AsyncIterator[Sends]:
    sender = AsyncSendGridSender(api_key="SG.test", host=fake.url, concurrency=2, timeout_seconds=5)
    yield Sends(
        engine,
        ManualClock(T0),
        sender,
        TokenSigner(b"integration-test-token-secret"),
        campaign_mail.MailSettings("reply.test", "mid.test", "https://u.test/u/"),
        retry=failures.RetryPolicy(),
    )
    await sender.aclose()


@pytest_asyncio.fixture(scope="module")
async def channel(engine, dispatcher: Sends, fake: FakeSendGrid) -> AsyncIterator[grpc.aio.Channel]:
    clock = ManualClock(T0)
    identities = sender_identities(engine, clock, fake.url)
    async with dispatcher_api(engine, dispatcher, clock, identities=identities) as chan:
        yield chan


@pytest.fixture
def identities(channel: grpc.aio.Channel) -> pb_grpc.SenderIdentityServiceStub:
    return pb_grpc.SenderIdentityServiceStub(channel)


@pytest.fixture
def suppressions(channel: grpc.aio.Channel) -> pb_grpc.SuppressionServiceStub:
    return pb_grpc.SuppressionServiceStub(channel)


async def test_identity_is_created_unverified_then_verified(identities, tenant_id):
    created = (
        await identities.CreateSenderIdentity(
            pb.CreateSenderIdentityRequest(
                tenant_id=tenant_id,
                from_email="Sales@Acme.test",
                from_name="Acme Sales",
            )
        )
    ).sender_identity
    assert uuid.UUID(created.sender_identity_id)
    assert (created.tenant_id, created.from_email, created.verified) == (
        tenant_id,
        "sales@acme.test",
        False,
    )
    assert created.created_at.ToDatetime(tzinfo=UTC) == T0

    got = await identities.GetSenderIdentity(
        pb.GetSenderIdentityRequest(tenant_id=tenant_id, sender_identity_id=created.sender_identity_id)
    )
    assert got.sender_identity == created

    for _ in range(2):  # verifying twice is harmless
        verified = await identities.VerifySenderIdentity(
            pb.VerifySenderIdentityRequest(tenant_id=tenant_id, sender_identity_id=created.sender_identity_id)
        )
        assert verified.sender_identity.verified is True
        assert verified.sender_identity.verified_by == "domain"
        assert verified.sender_identity.verified_at.ToDatetime(tzinfo=UTC) == T0


@pytest.mark.parametrize(
    ("tenant", "from_email", "field"),
    [
        ("", "sales@acme.test", "tenant_id"),
        ("bad tenant!", "sales@acme.test", "tenant_id"),
        ("t-ok", "", "from_email"),
        ("t-ok", "not-an-address", "from_email"),
    ],
)
async def test_invalid_identity_names_the_field(identities, tenant, from_email, field):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await identities.CreateSenderIdentity(pb.CreateSenderIdentityRequest(tenant_id=tenant, from_email=from_email))

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (raised.value.details() or "")
    assert violated_fields(raised.value) == [field]


async def test_duplicate_from_email_is_already_exists_naming_the_existing_one(identities, tenant_id):
    first = (
        await identities.CreateSenderIdentity(
            pb.CreateSenderIdentityRequest(tenant_id=tenant_id, from_email="hello@acme.test")
        )
    ).sender_identity

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await identities.CreateSenderIdentity(
            pb.CreateSenderIdentityRequest(tenant_id=tenant_id, from_email="HELLO@acme.test")
        )

    assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert first.sender_identity_id in (raised.value.details() or "")
    # The same address is free for another tenant.
    other = await identities.CreateSenderIdentity(
        pb.CreateSenderIdentityRequest(tenant_id=f"{tenant_id}-b", from_email="hello@acme.test")
    )
    assert other.sender_identity.sender_identity_id != first.sender_identity_id


async def test_another_tenants_identity_is_not_found(identities, tenant_id):
    created = (
        await identities.CreateSenderIdentity(
            pb.CreateSenderIdentityRequest(tenant_id=tenant_id, from_email="private@acme.test")
        )
    ).sender_identity

    for call, request in (
        (
            identities.GetSenderIdentity,
            pb.GetSenderIdentityRequest(tenant_id=f"{tenant_id}-b", sender_identity_id=created.sender_identity_id),
        ),
        (
            identities.VerifySenderIdentity,
            pb.VerifySenderIdentityRequest(tenant_id=f"{tenant_id}-b", sender_identity_id=created.sender_identity_id),
        ),
        (
            identities.GetSenderIdentity,
            pb.GetSenderIdentityRequest(tenant_id=tenant_id, sender_identity_id=str(uuid.uuid4())),
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call(request)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND

    still = await identities.GetSenderIdentity(
        pb.GetSenderIdentityRequest(tenant_id=tenant_id, sender_identity_id=created.sender_identity_id)
    )
    assert still.sender_identity.verified is False


async def test_suppressions_are_per_tenant_and_case_blind(suppressions, tenant_id):
    added = (
        await suppressions.AddSuppression(pb.AddSuppressionRequest(tenant_id=tenant_id, address="Bob@Example.com"))
    ).suppression
    assert (added.address, added.reason) == ("bob@example.com", "manual")
    again = await suppressions.AddSuppression(
        pb.AddSuppressionRequest(tenant_id=tenant_id, address="bob@example.com", reason="manual")
    )
    assert again.suppression == added

    checked = await suppressions.CheckSuppressions(
        pb.CheckSuppressionsRequest(
            tenant_id=tenant_id,
            addresses=["BOB@example.com", "bob@example.com", "carol@example.com"],
        )
    )
    assert sorted((s.address, s.reason) for s in checked.suppressed) == [
        ("BOB@example.com", "manual"),
        ("bob@example.com", "manual"),
    ]
    elsewhere = await suppressions.CheckSuppressions(
        pb.CheckSuppressionsRequest(tenant_id=f"{tenant_id}-b", addresses=["bob@example.com"])
    )
    assert list(elsewhere.suppressed) == []

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await suppressions.AddSuppression(pb.AddSuppressionRequest(tenant_id=tenant_id, address="bob"))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(raised.value) == ["address"]


async def test_get_message_shows_a_sent_message_to_its_tenant_only(channel, identities, dispatcher, tenant_id):
    identity = (
        await identities.CreateSenderIdentity(
            pb.CreateSenderIdentityRequest(tenant_id=tenant_id, from_email="news@acme.test")
        )
    ).sender_identity
    await identities.VerifySenderIdentity(
        pb.VerifySenderIdentityRequest(tenant_id=tenant_id, sender_identity_id=identity.sender_identity_id)
    )
    message_id = str(uuid.uuid4())
    await dispatcher.handle_send(
        messages_pb2.SendMessageCommand(
            tenant_id=tenant_id,
            message_id=message_id,
            campaign_id="camp-9",
            step_index=3,
            contact_id="c-9",
            channel="email",
            to_email="dora@example.com",
            sender_identity_id=identity.sender_identity_id,
            subject="Hi",
            body_text="Hello Dora",
        ).SerializeToString()
    )
    messages = pb_grpc.DispatcherServiceStub(channel)

    got = (await messages.GetMessage(pb.GetMessageRequest(tenant_id=tenant_id, message_id=message_id))).message

    assert got.status == pb.MESSAGE_STATUS_SENT
    assert (got.campaign_id, got.step_index, got.to_email, got.from_email) == (
        "camp-9",
        3,
        "dora@example.com",
        "news@acme.test",
    )
    assert got.provider == "sendgrid" and got.provider_message_id and got.attempt_count == 1
    assert got.sent_at.ToDatetime(tzinfo=UTC) == T0
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await messages.GetMessage(pb.GetMessageRequest(tenant_id=f"{tenant_id}-b", message_id=message_id))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
