"""Administering sender identities and suppressions over a real grpc.aio server: list with
keyset paging, update with a field mask, delete, remove, import; tenants kept apart."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
import pytest_asyncio
from dispatch_support import sender_identities
from google.protobuf.field_mask_pb2 import FieldMask
from grpc_support import dispatcher_api, violated_fields

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as pb
from dripiq.dispatcher.v1 import dispatcher_service_pb2_grpc as pb_grpc
from dripiq_common.clock import ManualClock
from dripiq_common.tokens import TokenSigner
from dripiq_devtools.fake_sendgrid import FakeSendGrid
from dripiq_dispatcher import campaign_mail, failures
from dripiq_dispatcher.accounts import ProviderAccounts
from dripiq_dispatcher.provider import AsyncSendGridSender
from dripiq_dispatcher.sending import Sends

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
# Which tenant each provider config id belongs to; a test binds its own tenant's.
BOUND: dict[str, str] = {}


def bind(tenant_id: str, *config_ids: str) -> None:
    for config_id in config_ids:
        BOUND[config_id] = tenant_id


@pytest.fixture(scope="module")
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest_asyncio.fixture(scope="module")
async def channel(engine, fake: FakeSendGrid, clock: ManualClock) -> AsyncIterator[grpc.aio.Channel]:
    sender = AsyncSendGridSender(api_key="SG.test", host=fake.url, concurrency=1, timeout_seconds=5)
    dispatcher = Sends(
        engine,
        clock,
        sender,
        TokenSigner(b"integration-test-token-secret"),
        campaign_mail.MailSettings("reply.test", "mid.test", "https://u.test/u/"),
        retry=failures.RetryPolicy(),
    )
    identities = sender_identities(engine, clock, fake.url, ProviderAccounts(config_tenants=BOUND))
    async with dispatcher_api(engine, dispatcher, clock, identities=identities) as chan:
        yield chan
    await sender.aclose()


@pytest.fixture
def identities(channel: grpc.aio.Channel) -> pb_grpc.SenderIdentityServiceStub:
    return pb_grpc.SenderIdentityServiceStub(channel)


@pytest.fixture
def suppressions(channel: grpc.aio.Channel) -> pb_grpc.SuppressionServiceStub:
    return pb_grpc.SuppressionServiceStub(channel)


async def invalid(call, request) -> list[str]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return violated_fields(raised.value)


async def not_found(call, request) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(request)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def create_identity(identities, tenant_id: str, from_email: str, **fields: str) -> pb.SenderIdentity:  # type: ignore[no-untyped-def]
    request = pb.CreateSenderIdentityRequest(tenant_id=tenant_id, from_email=from_email, **fields)
    return (await identities.CreateSenderIdentity(request)).sender_identity


# -- sender identities ------------------------------------------------------------------


async def test_list_identities_pages_through_every_row_once_and_only_the_tenants(identities, clock, tenant_id):
    created = []
    for i in range(7):
        created.append(await create_identity(identities, tenant_id, f"sender{i}@acme.test"))
        if i % 3 == 0:  # some rows share created_at, so the id breaks the tie
            clock.advance(timedelta(seconds=1))
    await create_identity(identities, f"{tenant_id}-b", "sender0@acme.test")

    seen: list[pb.SenderIdentity] = []
    token = ""
    pages = 0
    while True:
        page = await identities.ListSenderIdentities(
            pb.ListSenderIdentitiesRequest(tenant_id=tenant_id, page_size=3, page_token=token)
        )
        assert len(page.sender_identities) <= 3
        seen.extend(page.sender_identities)
        pages += 1
        token = page.next_page_token
        if not token:
            break

    assert pages == 3
    assert sorted(s.sender_identity_id for s in seen) == sorted(c.sender_identity_id for c in created)
    assert len({s.sender_identity_id for s in seen}) == len(seen)
    assert {s.tenant_id for s in seen} == {tenant_id}
    keys = [(s.created_at.ToDatetime(), s.sender_identity_id) for s in seen]
    assert keys == sorted(keys)

    everything = await identities.ListSenderIdentities(pb.ListSenderIdentitiesRequest(tenant_id=tenant_id))
    assert list(everything.sender_identities) == seen
    assert everything.next_page_token == ""


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.ListSenderIdentitiesRequest(), "tenant_id"),
        (pb.ListSenderIdentitiesRequest(tenant_id="t-ok", page_size=-1), "page_size"),
        (pb.ListSenderIdentitiesRequest(tenant_id="t-ok", page_token="garbage"), "page_token"),
        # ["yesterday", "m-1"]: the right shape, no time in it (it was INTERNAL once).
        (pb.ListSenderIdentitiesRequest(tenant_id="t-ok", page_token="WyJ5ZXN0ZXJkYXkiLCJtLTEiXQ"), "page_token"),
    ],
)
async def test_list_identities_rejects_bad_input(identities, request_, field):
    assert await invalid(identities.ListSenderIdentities, request_) == [field]


async def test_update_identity_follows_the_mask(identities, tenant_id):
    bind(tenant_id, "subuser:main", "subuser:eu", "subuser:two")
    created = await create_identity(
        identities, tenant_id, "team@acme.test", from_name="Team", provider_config_id="subuser:main"
    )

    def update(mask: list[str], **fields: str) -> pb.UpdateSenderIdentityRequest:
        return pb.UpdateSenderIdentityRequest(
            sender_identity=pb.SenderIdentity(
                tenant_id=tenant_id, sender_identity_id=created.sender_identity_id, **fields
            ),
            update_mask=FieldMask(paths=mask),
        )

    named = (await identities.UpdateSenderIdentity(update(["from_name"], from_name="Acme Team"))).sender_identity
    assert (named.from_name, named.provider_config_id, named.from_email) == (
        "Acme Team",
        "subuser:main",
        "team@acme.test",
    )

    moved = (
        await identities.UpdateSenderIdentity(update(["provider_config_id"], provider_config_id="subuser:eu"))
    ).sender_identity
    assert (moved.from_name, moved.provider_config_id) == ("Acme Team", "subuser:eu")

    # An empty mask updates both, blanks included.
    both = (
        await identities.UpdateSenderIdentity(update([], from_name="", provider_config_id="subuser:two"))
    ).sender_identity
    assert (both.from_name, both.provider_config_id) == ("", "subuser:two")

    got = await identities.GetSenderIdentity(
        pb.GetSenderIdentityRequest(tenant_id=tenant_id, sender_identity_id=created.sender_identity_id)
    )
    assert got.sender_identity == both


async def test_update_identity_rejects_bad_input(identities, tenant_id):
    bind(tenant_id, "subuser:main")
    created = await create_identity(identities, tenant_id, "ops@acme.test", provider_config_id="subuser:main")
    key = f"SG.{uuid.uuid4().hex}.{uuid.uuid4().hex}"

    def update(mask: list[str], **fields: str) -> pb.UpdateSenderIdentityRequest:
        values = {"tenant_id": tenant_id, "sender_identity_id": created.sender_identity_id, **fields}
        return pb.UpdateSenderIdentityRequest(
            sender_identity=pb.SenderIdentity(**values), update_mask=FieldMask(paths=mask)
        )

    assert await invalid(identities.UpdateSenderIdentity, update(["from_email"], from_email="x@acme.test")) == [
        "update_mask"
    ]
    assert await invalid(identities.UpdateSenderIdentity, update(["from_name", "verified"])) == ["update_mask"]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await identities.UpdateSenderIdentity(update(["provider_config_id"], provider_config_id=key))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(raised.value) == ["sender_identity.provider_config_id"]
    assert key not in (raised.value.details() or "")  # a leaked key is not echoed back
    assert await invalid(identities.UpdateSenderIdentity, update([], provider_config_id=key)) == [
        "sender_identity.provider_config_id"
    ]
    assert await invalid(identities.UpdateSenderIdentity, update(["from_name"], tenant_id="")) == [
        "sender_identity.tenant_id"
    ]
    assert await invalid(identities.UpdateSenderIdentity, update(["from_name"], sender_identity_id="")) == [
        "sender_identity.sender_identity_id"
    ]

    # Nothing changed, and the key was not stored.
    got = await identities.GetSenderIdentity(
        pb.GetSenderIdentityRequest(tenant_id=tenant_id, sender_identity_id=created.sender_identity_id)
    )
    assert got.sender_identity == created


async def test_update_another_tenants_identity_is_not_found(identities, tenant_id):
    created = await create_identity(identities, tenant_id, "mine@acme.test", from_name="Mine")

    for tenant, identity_id in ((f"{tenant_id}-b", created.sender_identity_id), (tenant_id, str(uuid.uuid4()))):
        await not_found(
            identities.UpdateSenderIdentity,
            pb.UpdateSenderIdentityRequest(
                sender_identity=pb.SenderIdentity(tenant_id=tenant, sender_identity_id=identity_id, from_name="Theirs"),
                update_mask=FieldMask(paths=["from_name"]),
            ),
        )

    got = await identities.GetSenderIdentity(
        pb.GetSenderIdentityRequest(tenant_id=tenant_id, sender_identity_id=created.sender_identity_id)
    )
    assert got.sender_identity.from_name == "Mine"


async def test_delete_identity(identities, tenant_id):
    created = await create_identity(identities, tenant_id, "gone@acme.test")
    other_tenant = pb.DeleteSenderIdentityRequest(
        tenant_id=f"{tenant_id}-b", sender_identity_id=created.sender_identity_id
    )
    await not_found(identities.DeleteSenderIdentity, other_tenant)

    request = pb.DeleteSenderIdentityRequest(tenant_id=tenant_id, sender_identity_id=created.sender_identity_id)
    assert await identities.DeleteSenderIdentity(request) == pb.DeleteSenderIdentityResponse()

    await not_found(
        identities.GetSenderIdentity,
        pb.GetSenderIdentityRequest(tenant_id=tenant_id, sender_identity_id=created.sender_identity_id),
    )
    await not_found(identities.DeleteSenderIdentity, request)  # absent now
    assert await invalid(identities.DeleteSenderIdentity, pb.DeleteSenderIdentityRequest(tenant_id=tenant_id)) == [
        "sender_identity_id"
    ]
    assert await invalid(identities.DeleteSenderIdentity, pb.DeleteSenderIdentityRequest(sender_identity_id="x")) == [
        "tenant_id"
    ]
    # The address is free to be an identity again.
    again = await create_identity(identities, tenant_id, "gone@acme.test")
    assert again.sender_identity_id != created.sender_identity_id


# -- suppressions -----------------------------------------------------------------------


async def add(suppressions, tenant_id: str, address: str, reason: str = "") -> None:  # type: ignore[no-untyped-def]
    await suppressions.AddSuppression(pb.AddSuppressionRequest(tenant_id=tenant_id, address=address, reason=reason))


async def list_all(suppressions, tenant_id: str, reason: str = "", page_size: int = 0) -> list[pb.Suppression]:  # type: ignore[no-untyped-def]
    seen: list[pb.Suppression] = []
    token = ""
    while True:
        page = await suppressions.ListSuppressions(
            pb.ListSuppressionsRequest(tenant_id=tenant_id, reason=reason, page_size=page_size, page_token=token)
        )
        if page_size:
            assert len(page.suppressions) <= page_size
        seen.extend(page.suppressions)
        token = page.next_page_token
        if not token:
            return seen


async def test_remove_one_reason_or_all(suppressions, tenant_id):
    await add(suppressions, tenant_id, "pat@example.com", "manual")
    await add(suppressions, tenant_id, "pat@example.com", "bounce")
    await add(suppressions, tenant_id, "pat@example.com", "unsubscribe")
    await add(suppressions, f"{tenant_id}-b", "pat@example.com", "manual")

    def remove(address: str, reason: str = "", tenant: str = tenant_id) -> pb.RemoveSuppressionRequest:
        return pb.RemoveSuppressionRequest(tenant_id=tenant, address=address, reason=reason)

    assert (await suppressions.RemoveSuppression(remove(" PAT@Example.com ", "Bounce"))).removed_count == 1
    assert sorted(s.reason for s in await list_all(suppressions, tenant_id)) == ["manual", "unsubscribe"]
    assert (await suppressions.RemoveSuppression(remove("pat@example.com"))).removed_count == 2
    assert (await suppressions.RemoveSuppression(remove("pat@example.com"))).removed_count == 0
    assert await list_all(suppressions, tenant_id) == []
    # The other tenant's suppression is untouched.
    assert [s.address for s in await list_all(suppressions, f"{tenant_id}-b")] == ["pat@example.com"]

    assert await invalid(suppressions.RemoveSuppression, remove("pat")) == ["address"]
    assert await invalid(suppressions.RemoveSuppression, remove("pat@example.com", tenant="")) == ["tenant_id"]


async def test_list_suppressions_pages_filters_and_keeps_tenants_apart(suppressions, clock, tenant_id):
    expected = set()
    for i in range(8):
        reason = "bounce" if i % 2 else "manual"
        await add(suppressions, tenant_id, f"User{i}@Example.com", reason)
        expected.add((f"user{i}@example.com", reason))
        if i % 3 == 0:
            clock.advance(timedelta(seconds=1))
    await add(suppressions, f"{tenant_id}-b", "stranger@example.com")

    seen = await list_all(suppressions, tenant_id, page_size=3)
    assert len(seen) == 8
    assert {(s.address, s.reason) for s in seen} == expected
    assert {s.tenant_id for s in seen} == {tenant_id}
    times = [s.created_at.ToDatetime() for s in seen]
    assert times == sorted(times)

    bounces = await list_all(suppressions, tenant_id, reason="bounce", page_size=2)
    assert sorted(s.address for s in bounces) == [f"user{i}@example.com" for i in (1, 3, 5, 7)]
    assert {s.reason for s in bounces} == {"bounce"}

    assert await invalid(suppressions.ListSuppressions, pb.ListSuppressionsRequest()) == ["tenant_id"]
    assert await invalid(
        suppressions.ListSuppressions, pb.ListSuppressionsRequest(tenant_id=tenant_id, page_token="nope")
    ) == ["page_token"]


async def test_import_reports_bad_addresses_and_imports_the_rest_once(suppressions, tenant_id):
    request = pb.ImportSuppressionsRequest(
        tenant_id=tenant_id,
        suppressions=[
            pb.Suppression(address="Ann@Example.com"),
            pb.Suppression(address="not-an-address"),
            pb.Suppression(address="bob@example.com", reason="Bounce", tenant_id=tenant_id),
            pb.Suppression(address=""),
            pb.Suppression(address="ann@example.com"),  # the same as the first, once normalized
        ],
    )

    first = await suppressions.ImportSuppressions(request)
    assert first.imported_count == 2
    assert len(first.rejected) == 2
    assert first.rejected[0].startswith("suppressions[1].address: ")
    assert first.rejected[1].startswith("suppressions[3].address: ")
    assert sorted((s.address, s.reason) for s in await list_all(suppressions, tenant_id)) == [
        ("ann@example.com", "manual"),
        ("bob@example.com", "bounce"),
    ]
    assert await list_all(suppressions, f"{tenant_id}-b") == []

    second = await suppressions.ImportSuppressions(request)
    assert second.imported_count == 0
    assert len(second.rejected) == 2
    assert len(await list_all(suppressions, tenant_id)) == 2


async def test_import_of_ten_thousand_goes_in_one_statement(suppressions, tenant_id):
    items = [pb.Suppression(address=f"user{i}@example.com") for i in range(10_000)]
    result = await suppressions.ImportSuppressions(
        pb.ImportSuppressionsRequest(tenant_id=tenant_id, suppressions=items)
    )
    assert (result.imported_count, list(result.rejected)) == (10_000, [])

    too_many = pb.ImportSuppressionsRequest(tenant_id=tenant_id, suppressions=[*items, items[0]])
    assert await invalid(suppressions.ImportSuppressions, too_many) == ["suppressions"]


async def test_import_rejects_another_tenants_items(suppressions, tenant_id):
    request = pb.ImportSuppressionsRequest(
        tenant_id=tenant_id,
        suppressions=[
            pb.Suppression(address="ann@example.com"),
            pb.Suppression(address="eve@example.com", tenant_id=f"{tenant_id}-b"),
        ],
    )
    assert await invalid(suppressions.ImportSuppressions, request) == ["suppressions[1].tenant_id"]
    assert await list_all(suppressions, tenant_id) == []
    assert await invalid(suppressions.ImportSuppressions, pb.ImportSuppressionsRequest()) == ["tenant_id"]
