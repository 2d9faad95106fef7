"""The periodic re-check of sender identities, on real PostgreSQL, through the real `sendgrid`
library against the fake SendGrid: a domain whose authentication lapsed marks its identity
unverified before any of its mail is refused; SendGrid failing, hanging or unreachable changes
nothing; a lapsed identity found valid again is verified again and its held messages are
released once; replicas never ask about the same identity twice; a round is bounded.

Every identity the re-check claims is due by the clock, across tenants: each test runs at its
own time, earlier than every test before it, so identities other tests left are never due."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from dispatch_support import (
    MAIL,
    NO_SENDGRID,
    RETRY,
    SIGNER,
    TEST_KEY,
    command,
    outcomes,
    received,
    stored,
)
from sqlalchemy import select
from verified_senders import fake_with_domains, sender_to_fake, set_domain_valid  # noqa: F401 (fixtures)

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as pb
from dripiq.dispatcher.v1 import messages_pb2
from dripiq_common.clock import ManualClock
from dripiq_devtools.fake_sendgrid import FakeSendGrid
from dripiq_dispatcher.accounts import ProviderAccount, ProviderAccounts
from dripiq_dispatcher.identities import SenderIdentities
from dripiq_dispatcher.identity_holds import HeldSends
from dripiq_dispatcher.identity_recheck import IdentityRecheck
from dripiq_dispatcher.models import identity_holds
from dripiq_dispatcher.models import sender_identities as identities_table
from dripiq_dispatcher.sender_auth import SenderCheck, SendGridSenderChecks
from dripiq_dispatcher.sending import Sends

DAY = timedelta(hours=24)
_YEARS = itertools.count(1990, -1)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(next(_YEARS), 6, 1, 12, 0, tzinfo=UTC))


@dataclass
class CountedChecks:
    """The real SendGrid checks, counting who was asked about (the replicas test)."""

    checks: SendGridSenderChecks
    asked: list[str] = field(default_factory=list)

    async def check(self, from_email: str, account: ProviderAccount) -> SenderCheck:
        self.asked.append(from_email)
        return await self.checks.check(from_email, account)


def checks(host: str, timeout: float = 5) -> SendGridSenderChecks:
    return SendGridSenderChecks(host, TEST_KEY, timeout_seconds=timeout)


def recheck(engine, clock, host: str, *, batch: int = 50, timeout: float = 5, kicks: list[int] | None = None):  # type: ignore[no-untyped-def]
    return IdentityRecheck(
        engine,
        clock,
        checks(host, timeout),
        ProviderAccounts(),
        every=DAY,
        batch=batch,
        on_verified=lambda: kicks.append(1) if kicks is not None else None,
    )


async def verified_identity(engine, clock, fake: FakeSendGrid, tenant_id: str, local: str = "sales") -> str:  # type: ignore[no-untyped-def]
    identities = SenderIdentities(engine, clock, checks(fake.url), ProviderAccounts())
    created = await identities.create(
        pb.CreateSenderIdentityRequest(tenant_id=tenant_id, from_email=f"{local}@acme.test")
    )
    assert (await identities.verify(tenant_id, created.sender_identity_id)).verified is True
    return created.sender_identity_id


async def identity_row(engine, identity_id: str):  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        return (await conn.execute(select(identities_table).where(identities_table.c.id == identity_id))).one()


async def holds_of(engine, tenant_id: str) -> list[str]:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        query = select(identity_holds.c.message_id).where(identity_holds.c.tenant_id == tenant_id)
        return list((await conn.execute(query)).scalars())


def dispatcher(engine, sender, clock) -> Sends:  # type: ignore[no-untyped-def]
    return Sends(engine, clock, sender, SIGNER, MAIL, RETRY)


async def test_a_lapsed_domain_is_found_by_the_recheck_before_any_send_is_refused(
    engine, fake, sender, tenant_id, clock
):
    identity_id = await verified_identity(engine, clock, fake, tenant_id)
    set_domain_valid(fake, "acme.test", False)

    # Not due yet: the identity is not asked about, and stays verified.
    clock.advance(timedelta(hours=1))
    assert await recheck(engine, clock, fake.url).recheck() == 0
    assert (await identity_row(engine, identity_id)).verified is True

    # A day on, the re-check asks SendGrid and finds the domain no longer validates.
    clock.advance(DAY)
    assert await recheck(engine, clock, fake.url).recheck() == 1
    lapsed = await identity_row(engine, identity_id)
    assert (lapsed.verified, lapsed.verified_by, lapsed.last_checked_at) == (False, "", clock.now())
    assert lapsed.unverified_reason.startswith("re-check at ")
    assert "domain acme.test is authenticated but its DNS records do not validate" in lapsed.unverified_reason
    # No mail was refused to find it: nothing was sent at all.
    assert fake.messages == []

    # The next send fails at admission without reaching SendGrid, and is held for the identity.
    cmd = command(tenant_id, identity_id)
    await dispatcher(engine, sender, clock).handle_send(cmd.SerializeToString())
    assert not received(fake, cmd.message_id)
    assert (await stored(engine, cmd.message_id)).status == "failed"
    assert await holds_of(engine, tenant_id) == [cmd.message_id]


@pytest.mark.parametrize("fault", ["503", "hangs", "unreachable"])
async def test_sendgrid_not_answering_changes_nothing(engine, fake, tenant_id, clock, fault):
    identity_id = await verified_identity(engine, clock, fake, tenant_id)
    before = await identity_row(engine, identity_id)
    set_domain_valid(fake, "acme.test", False)
    host, timeout = fake.url, 5.0
    if fault == "503":
        fake.fail_next(503, 10)
    elif fault == "hangs":
        fake.latency_seconds, timeout = 3.0, 0.5
    else:
        host = NO_SENDGRID
    clock.advance(DAY * 2)

    assert await recheck(engine, clock, host, timeout=timeout).recheck() == 0

    after = await identity_row(engine, identity_id)
    assert (after.verified, after.verified_by, after.unverified_reason) == (True, before.verified_by, "")
    # Not stamped as checked either: the next round asks again.
    assert after.last_checked_at == before.last_checked_at
    fake.latency_seconds = 0
    fake.clear_failures()
    assert await recheck(engine, clock, fake.url).recheck() == 1
    assert (await identity_row(engine, identity_id)).verified is False


async def test_a_lapsed_identity_found_valid_again_is_verified_and_its_held_messages_released_once(
    engine, fake, sender, tenant_id, clock
):
    identity_id = await verified_identity(engine, clock, fake, tenant_id)
    set_domain_valid(fake, "acme.test", False)
    # Lapsed by SendGrid's 403 on a send, then a second message refused at admission.
    refused, waiting = command(tenant_id, identity_id), command(tenant_id, identity_id)
    sends = dispatcher(engine, sender, clock)
    await sends.handle_send(refused.SerializeToString())
    await sends.handle_send(waiting.SerializeToString())
    assert sorted(await holds_of(engine, tenant_id)) == sorted([refused.message_id, waiting.message_id])
    held = HeldSends(engine, clock)
    await held.release()
    assert not [o for o in await outcomes(engine, tenant_id) if o.kind == messages_pb2.OUTCOME_KIND_RELEASED]

    # Fixed at SendGrid: the next re-check verifies it again and says so.
    set_domain_valid(fake, "acme.test", True)
    clock.advance(DAY * 2)
    kicks: list[int] = []
    assert await recheck(engine, clock, fake.url, kicks=kicks).recheck() == 1
    again = await identity_row(engine, identity_id)
    assert (again.verified, again.verified_by, again.unverified_reason) == (True, "domain", "")
    assert kicks == [1]

    await held.release()
    await held.release()
    released = [o for o in await outcomes(engine, tenant_id) if o.kind == messages_pb2.OUTCOME_KIND_RELEASED]
    assert sorted(o.message_id for o in released) == sorted([refused.message_id, waiting.message_id])
    assert {o.reason for o in released} == {f"sender identity {identity_id} verified again"}
    assert {(o.campaign_id, o.step_index, o.sender_identity_id) for o in released} == {("camp-1", 1, identity_id)}
    assert await holds_of(engine, tenant_id) == []


async def test_replicas_never_ask_about_one_identity_twice_and_a_round_is_bounded(engine, fake, tenant_id, clock):
    ids = [await verified_identity(engine, clock, fake, tenant_id, f"rep{i}") for i in range(5)]
    clock.advance(DAY * 2)
    counted = [CountedChecks(checks(fake.url)) for _ in range(2)]
    replicas = [IdentityRecheck(engine, clock, c, ProviderAccounts(), every=DAY, batch=2) for c in counted]

    first = await asyncio.gather(*(r.recheck() for r in replicas))
    assert sorted(first) == [2, 2]
    for _ in range(5):
        if sum(await asyncio.gather(*(r.recheck() for r in replicas))) == 0:
            break

    asked = [email for c in counted for email in c.asked]
    assert sorted(asked) == sorted(f"rep{i}@acme.test" for i in range(5))
    assert [(await identity_row(engine, i)).last_checked_at for i in ids] == [clock.now()] * len(ids)


async def test_a_moved_or_deleted_identity_keeps_no_holds(engine, fake, sender, tenant_id, clock):
    identity_id = await verified_identity(engine, clock, fake, tenant_id)
    set_domain_valid(fake, "acme.test", False)
    cmd = command(tenant_id, identity_id)
    await dispatcher(engine, sender, clock).handle_send(cmd.SerializeToString())
    assert await holds_of(engine, tenant_id) == [cmd.message_id]

    await SenderIdentities(engine, clock, checks(fake.url), ProviderAccounts()).delete(tenant_id, identity_id)

    assert await holds_of(engine, tenant_id) == []
