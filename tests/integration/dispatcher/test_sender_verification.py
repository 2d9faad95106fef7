"""Sender identities verified by SendGrid (the fake, through the real `sendgrid` library), each in
the account its provider_config_id names: a domain authenticated only in tenant B's account
verifies nothing for tenant A, subusers are reached with On-Behalf-Of, keys come from files
that may be rotated, and an unreachable SendGrid changes nothing."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from dispatch_support import T0, TEST_KEY, command, new_dispatcher, received, stored
from verified_senders import fake_with_domains, sender_to_fake  # noqa: F401 (fixtures)

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as pb
from dripiq_common.clock import ManualClock
from dripiq_common.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from dripiq_devtools.fake_sendgrid import FakeSendGrid
from dripiq_dispatcher.accounts import ProviderAccounts
from dripiq_dispatcher.identities import SenderIdentities
from dripiq_dispatcher.sender_auth import SendGridSenderChecks


class FakeClock:
    """A monotonic clock the test moves, for the key cache."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def identities_at(engine, host: str, accounts: ProviderAccounts) -> SenderIdentities:  # type: ignore[no-untyped-def]
    return SenderIdentities(engine, ManualClock(T0), SendGridSenderChecks(host, TEST_KEY, timeout_seconds=5), accounts)


async def create(identities: SenderIdentities, tenant_id: str, from_email: str, config_id: str = "") -> str:
    created = await identities.create(
        pb.CreateSenderIdentityRequest(tenant_id=tenant_id, from_email=from_email, provider_config_id=config_id)
    )
    return created.sender_identity_id


async def test_an_unauthenticated_domain_is_refused_naming_it(engine, fake, tenant_id):
    identities = identities_at(engine, fake.url, ProviderAccounts())
    identity_id = await create(identities, tenant_id, "ceo@tenant-b.test")

    with pytest.raises(FailedPrecondition) as refused:
        await identities.verify(tenant_id, identity_id)

    assert "domain tenant-b.test is not authenticated at SendGrid" in str(refused.value)
    assert "ceo@tenant-b.test is not a verified sender" in str(refused.value)
    assert (await identities.get(tenant_id, identity_id)).verified is False


async def test_an_authenticated_domain_verifies_and_is_recorded(engine, fake, tenant_id):
    identities = identities_at(engine, fake.url, ProviderAccounts())
    identity_id = await create(identities, tenant_id, "Sales@Acme.test")

    verified = await identities.verify(tenant_id, identity_id)

    assert (verified.verified, verified.verified_by) == (True, "domain")
    assert verified.verified_at.ToDatetime().replace(tzinfo=T0.tzinfo) == T0


async def test_a_domain_whose_dns_is_now_in_place_is_validated(engine, fake, tenant_id):
    fake.accounts.authenticate_domain(TEST_KEY, "late.test", valid=False, dns_ready=True)
    fake.accounts.authenticate_domain(TEST_KEY, "never.test", valid=False, dns_ready=False)
    identities = identities_at(engine, fake.url, ProviderAccounts())

    late = await identities.verify(tenant_id, await create(identities, tenant_id, "hi@late.test"))
    with pytest.raises(FailedPrecondition) as refused:
        await identities.verify(tenant_id, await create(identities, tenant_id, "hi@never.test"))

    assert late.verified_by == "domain"
    assert "domain never.test is authenticated but its DNS records do not validate" in str(refused.value)


async def test_a_verified_single_sender_verifies_only_that_address(engine, fake, tenant_id):
    fake.accounts.add_sender(TEST_KEY, "founder@gmail.test")
    fake.accounts.add_sender(TEST_KEY, "pending@gmail.test", verified=False)
    identities = identities_at(engine, fake.url, ProviderAccounts())

    founder = await identities.verify(tenant_id, await create(identities, tenant_id, "founder@gmail.test"))

    assert (founder.verified, founder.verified_by) == (True, "single_sender")
    for address in ("pending@gmail.test", "other@gmail.test"):
        with pytest.raises(FailedPrecondition, match="domain gmail.test is not authenticated"):
            await identities.verify(tenant_id, await create(identities, tenant_id, address))


async def test_tenant_a_cannot_verify_or_send_as_tenant_bs_domain(engine, fake, sender, tenant_id):
    tenant_b = f"{tenant_id}-b"
    fake.accounts.authenticate_domain(TEST_KEY, "tenant-b.test", subuser="b-mail")
    accounts = ProviderAccounts(config_tenants={"subuser:b-mail": tenant_b})
    identities = identities_at(engine, fake.url, accounts)

    # A, on the default (parent) account: B's subuser domain is not A's, though the parent sees it.
    as_a = await create(identities, tenant_id, "ceo@tenant-b.test")
    with pytest.raises(FailedPrecondition, match="domain tenant-b.test is not authenticated"):
        await identities.verify(tenant_id, as_a)
    # A naming B's subuser is refused at the API, worded as for an unknown config id.
    with pytest.raises(InvalidArgument) as named:
        await create(identities, tenant_id, "cfo@tenant-b.test", "subuser:b-mail")
    assert named.value.field == "provider_config_id" and "not a provider configuration of this tenant" in str(
        named.value
    )
    # B verifies through its own subuser.
    as_b = await create(identities, tenant_b, "ceo@tenant-b.test", "subuser:b-mail")
    assert (await identities.verify(tenant_b, as_b)).verified is True

    # A's unverified identity sends nothing; the fake would refuse it anyway.
    dispatcher = new_dispatcher(engine, sender)
    dispatcher.accounts = accounts
    refused = command(tenant_id, as_a)
    await dispatcher.handle_send(refused.SerializeToString())
    assert not received(fake, refused.message_id)
    row = await stored(engine, refused.message_id)
    assert row.status == "failed" and "is not verified" in row.last_error


async def test_a_send_through_a_subuser_carries_on_behalf_of_and_lands_in_its_account(engine, fake, sender, tenant_id):
    fake.accounts.authenticate_domain(TEST_KEY, "sub.test", subuser="x")
    accounts = ProviderAccounts(config_tenants={"subuser:x": tenant_id})
    identities = identities_at(engine, fake.url, accounts)
    identity_id = await create(identities, tenant_id, "hello@sub.test", "subuser:x")
    await identities.verify(tenant_id, identity_id)
    dispatcher = new_dispatcher(engine, sender)
    dispatcher.accounts = accounts

    cmd = command(tenant_id, identity_id)
    await dispatcher.handle_send(cmd.SerializeToString())

    [mail] = received(fake, cmd.message_id)
    assert mail.account == "x"
    assert (await stored(engine, cmd.message_id)).status == "sent"


async def test_a_key_from_a_secret_file_is_used_and_a_rotated_one_picked_up(
    engine, fake, sender, tenant_id, tmp_path: Path
):
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "globex").write_text("SG.globex-old\n")
    fake.accounts.authenticate_domain("SG.globex-old", "globex.test")
    fake.accounts.authenticate_domain("SG.globex-new", "globex.test")
    clock = FakeClock()
    accounts = ProviderAccounts(config_tenants={"key:globex": tenant_id}, keys_dir=keys, monotonic=clock)
    identities = identities_at(engine, fake.url, accounts)
    identity_id = await create(identities, tenant_id, "sales@globex.test", "key:globex")
    await identities.verify(tenant_id, identity_id)
    dispatcher = new_dispatcher(engine, sender)
    dispatcher.accounts = accounts

    first = command(tenant_id, identity_id)
    await dispatcher.handle_send(first.SerializeToString())
    (keys / "globex").write_text("SG.globex-new\n")
    clock.now += accounts.key_cache_seconds + 1
    second = command(tenant_id, identity_id)
    await dispatcher.handle_send(second.SerializeToString())

    [old] = received(fake, first.message_id)
    [new] = received(fake, second.message_id)
    assert old.account == fake.accounts.parent("SG.globex-old").username
    assert new.account == fake.accounts.parent("SG.globex-new").username
    assert old.account != new.account


async def test_a_missing_key_file_fails_the_send_for_a_person(engine, fake, sender, tenant_id, tmp_path: Path):
    accounts = ProviderAccounts(config_tenants={"key:gone": tenant_id}, keys_dir=tmp_path)
    identities = identities_at(engine, fake.url, accounts)
    identity_id = await create(identities, tenant_id, "sales@acme.test", "key:gone")
    with pytest.raises(FailedPrecondition, match="key file .* cannot be read"):
        await identities.verify(tenant_id, identity_id)


async def test_provider_down_during_verify_is_unavailable_and_changes_nothing(engine, fake, tenant_id):
    up = identities_at(engine, fake.url, ProviderAccounts())
    identity_id = await create(up, tenant_id, "sales@acme.test")
    before = await up.verify(tenant_id, identity_id)

    fake.fail_next(503)
    with pytest.raises(Unavailable):
        await up.verify(tenant_id, identity_id)
    down = identities_at(engine, "http://127.0.0.1:9", ProviderAccounts())
    with pytest.raises(Unavailable):
        await down.verify(tenant_id, identity_id)

    assert await up.get(tenant_id, identity_id) == before


async def test_a_slow_provider_is_unavailable_within_the_timeout(engine, tenant_id):
    async with FakeSendGrid(latency_seconds=2) as slow:
        identities = SenderIdentities(
            engine,
            ManualClock(T0),
            SendGridSenderChecks(slow.url, TEST_KEY, timeout_seconds=0.2),
            ProviderAccounts(),
        )
        identity_id = await create(identities, tenant_id, "sales@acme.test")
        with pytest.raises(Unavailable, match="unreachable"):
            await identities.verify(tenant_id, identity_id)
        assert (await identities.get(tenant_id, identity_id)).verified is False


async def test_a_key_sendgrid_refuses_is_a_failed_precondition(engine, tenant_id):
    async with FakeSendGrid(api_key="SG.the-only-one") as strict:
        identities = identities_at(engine, strict.url, ProviderAccounts())
        identity_id = await create(identities, tenant_id, "sales@acme.test")
        with pytest.raises(FailedPrecondition, match="SendGrid refused the credentials of the default account"):
            await identities.verify(tenant_id, identity_id)


async def test_moving_to_another_account_unverifies(engine, fake, tenant_id):
    accounts = ProviderAccounts(config_tenants={"subuser:eu": tenant_id})
    identities = identities_at(engine, fake.url, accounts)
    identity_id = await create(identities, tenant_id, "sales@acme.test")
    await identities.verify(tenant_id, identity_id)

    moved = await identities.update(
        pb.UpdateSenderIdentityRequest(
            sender_identity=pb.SenderIdentity(
                tenant_id=tenant_id, sender_identity_id=identity_id, provider_config_id="subuser:eu"
            ),
            update_mask={"paths": ["provider_config_id"]},
        )
    )

    assert (moved.verified, moved.verified_by, moved.HasField("verified_at")) == (False, "", False)


async def test_the_default_account_may_be_closed_to_a_tenant(engine, fake, tenant_id):
    identities = identities_at(engine, fake.url, ProviderAccounts(default_tenants=frozenset({"someone-else"})))
    with pytest.raises(InvalidArgument, match="DISPATCHER_DEFAULT_ACCOUNT_TENANTS"):
        await create(identities, tenant_id, "sales@acme.test")


async def test_an_unknown_identity_is_not_found(engine, fake, tenant_id):
    with pytest.raises(NotFound):
        await identities_at(engine, fake.url, ProviderAccounts()).verify(tenant_id, str(uuid.uuid4()))
