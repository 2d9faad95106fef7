"""The planner's adaptive rules on real PostgreSQL, the decision log: every decision the rules
take is recorded with its trigger, source, action and result.

Handlers get the bytes JetStream would deliver; what they cause is read from the outbox.
"""

from __future__ import annotations

from datetime import timedelta

from helpers import HOUR, campaign_row, decisions, rule, sent, start


async def test_every_decision_is_recorded(engine, creator, reactor, clock, tenant_id):
    campaign_id = await start(creator, tenant_id, rule("no_click_72h", "schedule_next_step", delaySeconds=60))
    s = await sent(engine, reactor, clock, tenant_id, campaign_id)

    clock.advance(HOUR)
    await reactor.on_engagement(s.event("delivered", event_id="d-1"))
    await reactor.on_engagement(s.event("open", event_id="o-1"))
    clock.advance(timedelta(hours=47))
    await reactor.on_timer(s.timer("no_open_48h"))  # settled by the open: canceled as moot
    clock.advance(timedelta(hours=24))
    await reactor.on_timer(s.timer("no_click_72h"))
    await reactor.on_engagement(s.event("reply", event_id="r-1"))
    await reactor.on_engagement(s.event("click", event_id="c-1"))

    rows = await decisions(engine, tenant_id, campaign_id)
    assert [(d.trigger, d.source, d.action, d.result) for d in rows] == [
        ("delivered", "event:d-1", "none", "no rule"),
        ("open", "event:o-1", "schedule_next_step", "applied"),
        ("no_open_48h", s.key("no_open_48h"), "none", "canceled as moot: open came first"),
        # The open had already brought step 1 closer than the timeout's rule would.
        ("no_click_72h", s.key("no_click_72h"), "schedule_next_step", rows[3].result),
        ("reply", "event:r-1", "cancel_campaign", "applied"),
        ("click", "event:c-1", "schedule_next_step", "campaign canceled"),
    ]
    assert rows[3].result.startswith("applied: step 1 kept at ")
    assert {(d.message_id, d.step_index, d.campaign_id) for d in rows} == {(s.message_id, 0, campaign_id)}
    assert rows[1].rule_json == {"type": "schedule_next_step", "payload": {"delaySeconds": [86400, 172800]}}
    assert (await campaign_row(engine, campaign_id)).status == "canceled"
