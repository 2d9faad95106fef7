"""A sender identity whose domain lapses at SendGrid, on real PostgreSQL, through the real
`sendgrid` library against the fake SendGrid: the Mail Send 403 for an unverified From marks
the identity unverified with SendGrid's reason, its messages wait for a person (a failure that
is not the message's own, so the campaign goes to needs_attention rather than ending) and stop
going to SendGrid, and once VerifySenderIdentity passes again a resend goes out."""

from __future__ import annotations

import pytest
from dispatch_support import (
    T0,
    command,
    new_dispatcher,
    outcomes,
    received,
    sender_identities,
    stored,
)
from sqlalchemy import select
from verified_senders import fake_with_domains, sender_to_fake, set_domain_valid  # noqa: F401 (fixtures)

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as pb
from dripiq.dispatcher.v1 import messages_pb2
from dripiq_common.clock import ManualClock
from dripiq_common.errors import FailedPrecondition
from dripiq_devtools.fake_sendgrid.accounts import FROM_NOT_VERIFIED
from dripiq_dispatcher.models import sender_identities as identities_table


async def identity_row(engine, tenant_id: str, identity_id: str):  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        query = select(identities_table).where(
            identities_table.c.tenant_id == tenant_id, identities_table.c.id == identity_id
        )
        return (await conn.execute(query)).one()


def failed_outcome(all_outcomes: list[messages_pb2.MessageOutcome], message_id: str) -> messages_pb2.MessageOutcome:
    [outcome] = [o for o in all_outcomes if o.message_id == message_id]
    assert outcome.kind == messages_pb2.OUTCOME_KIND_FAILED
    return outcome


async def test_a_lapsed_identity_is_unverified_by_sendgrids_refusal_and_its_mail_waits_for_a_person(
    engine, fake, sender, tenant_id
):
    identities = sender_identities(engine, ManualClock(T0), fake.url)
    created = await identities.create(pb.CreateSenderIdentityRequest(tenant_id=tenant_id, from_email="sales@acme.test"))
    identity_id = created.sender_identity_id
    assert (await identities.verify(tenant_id, identity_id)).verified is True
    dispatcher = new_dispatcher(engine, sender)

    # The tenant's domain authentication lapses at SendGrid; we have not asked since.
    set_domain_valid(fake, "acme.test", False)
    first = command(tenant_id, identity_id)
    await dispatcher.handle_send(first.SerializeToString())

    # SendGrid refused it with its 403 for an unverified From ...
    assert not received(fake, first.message_id)
    row = await stored(engine, first.message_id)
    assert row.status == "failed" and FROM_NOT_VERIFIED in row.last_error and "403" in row.last_error
    # ... which is not the message's fault: its campaign waits for a person (needs_attention).
    assert failed_outcome(await outcomes(engine, tenant_id), first.message_id).permanent is False
    # The identity is unverified, with SendGrid's reason.
    lapsed = await identity_row(engine, tenant_id, identity_id)
    assert (lapsed.verified, lapsed.verified_by, lapsed.verified_at) == (False, "", None)
    assert FROM_NOT_VERIFIED in lapsed.unverified_reason

    # The next message does not go to SendGrid at all, and waits for a person the same way.
    second = command(tenant_id, identity_id)
    await dispatcher.handle_send(second.SerializeToString())
    assert not received(fake, second.message_id)
    held = await stored(engine, second.message_id)
    assert held.status == "failed" and "is not verified" in held.last_error
    assert failed_outcome(await outcomes(engine, tenant_id), second.message_id).permanent is False

    # While the domain is still lapsed, verifying again fails and nothing changes.
    with pytest.raises(FailedPrecondition, match="domain acme.test"):
        await identities.verify(tenant_id, identity_id)

    # Fixed at SendGrid and verified again: the reason goes, and a resend (RetryStep) goes out.
    set_domain_valid(fake, "acme.test", True)
    again = await identities.verify(tenant_id, identity_id)
    assert again.verified is True
    assert (await identity_row(engine, tenant_id, identity_id)).unverified_reason == ""
    resend = command(tenant_id, identity_id)
    await dispatcher.handle_send(resend.SerializeToString())
    assert received(fake, resend.message_id)
    assert (await stored(engine, resend.message_id)).status == "sent"


async def test_a_refusal_for_another_reason_leaves_the_identity_verified(engine, fake, sender, tenant_id):
    identities = sender_identities(engine, ManualClock(T0), fake.url)
    created = await identities.create(pb.CreateSenderIdentityRequest(tenant_id=tenant_id, from_email="ops@acme.test"))
    await identities.verify(tenant_id, created.sender_identity_id)
    dispatcher = new_dispatcher(engine, sender)

    # A 400 for the message's own content: the message's fault, the identity is fine.
    fake.fail_next(400)
    cmd = command(tenant_id, created.sender_identity_id)
    await dispatcher.handle_send(cmd.SerializeToString())

    assert (await stored(engine, cmd.message_id)).status == "failed"
    assert failed_outcome(await outcomes(engine, tenant_id), cmd.message_id).permanent is True
    kept = await identity_row(engine, tenant_id, created.sender_identity_id)
    assert (kept.verified, kept.unverified_reason) == (True, "")


async def test_an_identity_that_does_not_exist_still_ends_the_campaign(engine, fake, sender, tenant_id):
    dispatcher = new_dispatcher(engine, sender)
    cmd = command(tenant_id, "no-such-identity")

    await dispatcher.handle_send(cmd.SerializeToString())

    assert failed_outcome(await outcomes(engine, tenant_id), cmd.message_id).permanent is True
