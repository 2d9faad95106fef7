"""Replies at one company at the same moment, on real PostgreSQL: with reply_stops=company each
reply's transaction ends the other's campaigns. Both transactions are held at the same point
(a third one holds the table both read next) and let go together; neither may deadlock, and
every campaign ends once."""

from __future__ import annotations

import asyncio

from google.protobuf import field_mask_pb2
from helpers import campaign_row, canceled_groups, drain_outbox, sent, start, timer_commands
from sqlalchemy import text
from waiting import eventually

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq_planner.tenant_settings import TenantSettingsService


async def _company(engine, clock, tenant_id: str) -> None:  # type: ignore[no-untyped-def]
    service = TenantSettingsService(engine, clock)
    settings = pb.TenantSettings(tenant_id=tenant_id, reply_stops=pb.REPLY_STOPS_COMPANY)
    mask = field_mask_pb2.FieldMask(paths=["reply_stops"])
    await service.update(pb.UpdateTenantSettingsRequest(settings=settings, update_mask=mask))


def _contact(contact_id: str) -> pb.Contact:
    return pb.Contact(contact_id=contact_id, email=f"{contact_id}@example.com", first_name=contact_id.title())


async def _waiting_on_locks(engine) -> int:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                    )
                )
            ).scalar_one()
        )


async def _held_at_decisions(engine, replies):  # type: ignore[no-untyped-def]
    """Run the replies while another transaction holds planner.rule_decisions (each reply's
    transaction reads it right after locking its campaigns), and let go once every reply waits
    on a lock: each has locked what it locks first before any goes on."""
    async with engine.connect() as holder:
        await holder.execute(text("BEGIN"))
        await holder.execute(text("LOCK TABLE planner.rule_decisions IN ACCESS EXCLUSIVE MODE"))
        tasks = [asyncio.create_task(reply) for reply in replies]
        try:
            await eventually(lambda: _waiting_on_locks_is(engine, len(tasks)), f"{len(tasks)} replies waiting on locks")
        finally:
            await holder.execute(text("COMMIT"))
        return await asyncio.gather(*tasks, return_exceptions=True)


async def _waiting_on_locks_is(engine, n: int) -> bool:  # type: ignore[no-untyped-def]
    return await _waiting_on_locks(engine) >= n


async def test_two_replies_at_one_company_at_once_end_every_campaign_without_a_deadlock(
    engine, creator, reactor, clock, tenant_id
):
    await _company(engine, clock, tenant_id)
    ada = await start(creator, tenant_id, contact=_contact("ada"))
    bob = await start(creator, tenant_id, contact=_contact("bob"))
    cy = await start(creator, tenant_id, contact=_contact("cy"))
    elsewhere = await start(
        creator, tenant_id, contact=_contact("dee"), lead=pb.Lead(lead_id="lead-2", company_name="Other Co")
    )
    ada_step = await sent(engine, reactor, clock, tenant_id, ada)
    bob_step = await sent(engine, reactor, clock, tenant_id, bob)
    await drain_outbox(engine, tenant_id)

    results = await _held_at_decisions(
        engine, [reactor.on_engagement(ada_step.event("reply")), reactor.on_engagement(bob_step.event("reply"))]
    )

    assert results == [None, None]  # neither transaction was aborted
    rows = {c: await campaign_row(engine, c) for c in (ada, bob, cy)}
    assert {c: r.status for c, r in rows.items()} == dict.fromkeys((ada, bob, cy), "canceled")
    # Whichever reply went first ended the others; the second found its campaign ended.
    reasons = {rows[ada].cancel_reason, rows[bob].cancel_reason}
    assert any("reply_stops=company" in r for r in reasons)
    assert rows[cy].cancel_reason in (
        f"reply to campaign {ada} (reply_stops=company)",
        f"reply to campaign {bob} (reply_stops=company)",
    )
    assert (await campaign_row(engine, elsewhere)).status == "active"
    # One cancel of each campaign's timers reached the outbox, not one per reply.
    groups = canceled_groups(timer_commands(await drain_outbox(engine, tenant_id)))
    for campaign_id in (ada, bob, cy):
        assert groups.count(f"campaign:{campaign_id}") == 1, groups


async def test_many_companies_replying_at_once_all_settle(engine, creator, reactor, clock, tenant_id):
    """Pairs of colleagues replying together at several companies, all in flight at once."""
    await _company(engine, clock, tenant_id)
    pairs = []
    for n in range(4):
        lead = pb.Lead(lead_id=f"lead-{n}", company_name=f"Co {n}")
        first = await start(creator, tenant_id, contact=_contact(f"a{n}"), lead=lead)
        second = await start(creator, tenant_id, contact=_contact(f"b{n}"), lead=lead)
        third = await start(creator, tenant_id, contact=_contact(f"c{n}"), lead=lead)
        pairs.append(
            (
                await sent(engine, reactor, clock, tenant_id, first),
                await sent(engine, reactor, clock, tenant_id, second),
                third,
            )
        )
    await drain_outbox(engine, tenant_id)

    results = await _held_at_decisions(
        engine, [reactor.on_engagement(step.event("reply")) for first, second, _ in pairs for step in (first, second)]
    )

    assert results == [None] * 8
    for first, second, third in pairs:
        for campaign_id in (first.campaign_id, second.campaign_id, third):
            assert (await campaign_row(engine, campaign_id)).status == "canceled"
