"""The reply-forwarding APIs over gRPC: forward_to on sender identities (set, kept by an empty
mask, changed by name, validated, per tenant) and the tenant's catch-all (set, read, cleared,
validated). The dispatcher's services are served in-process on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from forwarding_support import MAIL, SIGNER, T0
from google.protobuf.field_mask_pb2 import FieldMask
from grpc_support import dispatcher_api, violated_fields

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as pb
from dripiq.dispatcher.v1 import dispatcher_service_pb2_grpc as pb_grpc
from dripiq_common.clock import ManualClock
from dripiq_dispatcher import failures
from dripiq_dispatcher.provider import MailSender
from dripiq_dispatcher.sending import Sends


@pytest_asyncio.fixture(scope="module")
async def channel(engine, sender: MailSender) -> AsyncIterator[grpc.aio.Channel]:
    dispatcher = Sends(engine, ManualClock(T0), sender, SIGNER, MAIL, failures.RetryPolicy())
    async with dispatcher_api(engine, dispatcher, ManualClock(T0)) as chan:
        yield chan


@pytest.fixture
def identities(channel: grpc.aio.Channel) -> pb_grpc.SenderIdentityServiceStub:
    return pb_grpc.SenderIdentityServiceStub(channel)


@pytest.fixture
def api(channel: grpc.aio.Channel) -> pb_grpc.DispatcherServiceStub:
    return pb_grpc.DispatcherServiceStub(channel)


async def invalid(call, request) -> list[str]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return violated_fields(raised.value)


async def test_forward_to_is_set_at_create_kept_by_an_empty_mask_and_changed_by_name(identities, tenant_id):
    created = (
        await identities.CreateSenderIdentity(
            pb.CreateSenderIdentityRequest(
                tenant_id=tenant_id, from_email="sam@acme.test", from_name="Sam", forward_to=" Sam@Acme-Corp.test "
            )
        )
    ).sender_identity
    assert created.forward_to == "Sam@Acme-Corp.test"
    got = await identities.GetSenderIdentity(
        pb.GetSenderIdentityRequest(tenant_id=tenant_id, sender_identity_id=created.sender_identity_id)
    )
    assert got.sender_identity.forward_to == "Sam@Acme-Corp.test"

    # An empty mask updates what it always did; a caller unaware of forward_to never clears it.
    renamed = (
        await identities.UpdateSenderIdentity(
            pb.UpdateSenderIdentityRequest(
                sender_identity=pb.SenderIdentity(
                    tenant_id=tenant_id, sender_identity_id=created.sender_identity_id, from_name="Samuel"
                )
            )
        )
    ).sender_identity
    assert (renamed.from_name, renamed.forward_to) == ("Samuel", "Sam@Acme-Corp.test")

    def update(forward_to: str) -> pb.UpdateSenderIdentityRequest:
        return pb.UpdateSenderIdentityRequest(
            sender_identity=pb.SenderIdentity(
                tenant_id=tenant_id, sender_identity_id=created.sender_identity_id, forward_to=forward_to
            ),
            update_mask=FieldMask(paths=["forward_to"]),
        )

    moved = (await identities.UpdateSenderIdentity(update("inbox@acme-corp.test"))).sender_identity
    assert (moved.from_name, moved.forward_to) == ("Samuel", "inbox@acme-corp.test")
    cleared = (await identities.UpdateSenderIdentity(update(""))).sender_identity
    assert cleared.forward_to == ""

    assert await invalid(identities.UpdateSenderIdentity, update("not-an-address")) == ["sender_identity.forward_to"]
    listed = await identities.ListSenderIdentities(pb.ListSenderIdentitiesRequest(tenant_id=tenant_id))
    assert [i.forward_to for i in listed.sender_identities] == [""]


async def test_an_invalid_forward_to_at_create_names_the_field(identities, tenant_id):
    request = pb.CreateSenderIdentityRequest(tenant_id=tenant_id, from_email="sam@acme.test", forward_to="sam at acme")
    assert await invalid(identities.CreateSenderIdentity, request) == ["forward_to"]


async def test_another_tenants_identity_forward_to_is_not_found(identities, tenant_id):
    created = (
        await identities.CreateSenderIdentity(
            pb.CreateSenderIdentityRequest(tenant_id=tenant_id, from_email="s@a.test")
        )
    ).sender_identity
    request = pb.UpdateSenderIdentityRequest(
        sender_identity=pb.SenderIdentity(
            tenant_id=f"{tenant_id}-x", sender_identity_id=created.sender_identity_id, forward_to="x@elsewhere.test"
        ),
        update_mask=FieldMask(paths=["forward_to"]),
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await identities.UpdateSenderIdentity(request)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    got = await identities.GetSenderIdentity(
        pb.GetSenderIdentityRequest(tenant_id=tenant_id, sender_identity_id=created.sender_identity_id)
    )
    assert got.sender_identity.forward_to == ""


async def test_reply_forwarding_is_set_read_and_cleared_per_tenant(api, tenant_id):
    async def get(tenant: str) -> pb.ReplyForwarding:
        return (await api.GetReplyForwarding(pb.GetReplyForwardingRequest(tenant_id=tenant))).reply_forwarding

    def set_(tenant: str, catch_all: str) -> pb.SetReplyForwardingRequest:
        return pb.SetReplyForwardingRequest(reply_forwarding=pb.ReplyForwarding(tenant_id=tenant, catch_all=catch_all))

    assert await get(tenant_id) == pb.ReplyForwarding(tenant_id=tenant_id, catch_all="")
    answer = await api.SetReplyForwarding(set_(tenant_id, " replies@acme-corp.test "))
    assert answer.reply_forwarding == pb.ReplyForwarding(tenant_id=tenant_id, catch_all="replies@acme-corp.test")
    assert (await get(tenant_id)).catch_all == "replies@acme-corp.test"
    # Another tenant sees nothing of it.
    assert (await get(f"{tenant_id}-x")).catch_all == ""

    await api.SetReplyForwarding(set_(tenant_id, ""))
    assert (await get(tenant_id)).catch_all == ""

    assert await invalid(api.SetReplyForwarding, set_(tenant_id, "replies-at-acme")) == ["reply_forwarding.catch_all"]
    assert await invalid(api.SetReplyForwarding, set_("", "replies@acme-corp.test")) == ["reply_forwarding.tenant_id"]
    assert await invalid(api.GetReplyForwarding, pb.GetReplyForwardingRequest(tenant_id="bad tenant!")) == ["tenant_id"]
    # A refused change leaves what was there.
    assert (await get(tenant_id)).catch_all == ""
