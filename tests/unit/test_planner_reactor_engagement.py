"""What the reactor's rules do to a campaign in memory on engagement facts: open, click, reply,
unsubscribe, bounce, spam report and out of office, under the default rules and a strategy's own.
The rules are given the campaign as `state.load` would lock it, without PostgreSQL or NATS,
and judged by the campaign afterwards and by what the unit of work caused."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from planner_campaigns import (
    CAMPAIGN,
    DAY,
    HOUR,
    NO_OPEN,
    NOW,
    RESUME_TIMER,
    STEP_TIMER,
    TENANT,
    campaign,
    canceled_groups,
    canceled_keys,
    decided,
    fire_at,
    message_id,
    near,
    payload,
    rule,
    scheduled,
    status_facts,
    statuses,
    unchanged,
)

from dripiq.events.v1.messages_pb2 import EngagementEvent
from dripiq.planner.v1 import timers_pb2
from dripiq_common.windows import MAX_JITTER_SECONDS
from dripiq_planner import engagements
from dripiq_planner.state import CampaignState, UnitOfWork
from dripiq_planner.tenants import TenantDefaults


def event(event_type: str, *, event_id: str = "e-1", **fields: object) -> EngagementEvent:
    """An engagement with step 0's email (sent a day ago)."""
    return EngagementEvent(
        tenant_id=TENANT,
        event_id=event_id,
        message_id=message_id(0),
        campaign_id=CAMPAIGN,
        step_index=0,
        event_type=event_type,
        **fields,  # type: ignore[arg-type]
    )


def engage(
    state: CampaignState,
    *events: EngagementEvent,
    already: set[tuple[str, str, str]] | None = None,
    tenant: TenantDefaults | None = None,
) -> UnitOfWork:
    work = UnitOfWork(now=NOW)
    engagements.apply(
        {(TENANT, CAMPAIGN): state},
        work,
        set() if already is None else already,
        facts=engagements.facts_of(events, count_machine_opens=False),
        tenants={TENANT: tenant} if tenant else {},
        max_pause_days=30,
    )
    return work


def test_an_open_brings_the_next_step_to_one_or_two_days_from_now_and_settles_no_open() -> None:
    state = campaign()

    work = engage(state, event("open"))

    step = state.steps[1]
    assert step.status == "scheduled" and step.schedule_version == 2
    assert NOW + DAY <= step.scheduled_at <= NOW + 2 * DAY + timedelta(seconds=MAX_JITTER_SECONDS)
    timer = scheduled(work)[STEP_TIMER]
    assert fire_at(timer) == step.scheduled_at
    assert payload(timer).step_due == timers_pb2.StepDue(step_index=1, schedule_version=2)
    assert canceled_keys(work) == [NO_OPEN]
    assert decided(work) == [("open", "schedule_next_step", "applied")]


def test_a_click_brings_the_next_step_to_an_hour_from_now_and_settles_no_open_too() -> None:
    state = campaign()

    work = engage(state, event("click"))

    assert near(state.steps[1].scheduled_at, NOW + HOUR)
    assert canceled_keys(work) == [NO_OPEN], "a click proves an open (images may be blocked)"


def test_a_click_skips_to_the_step_its_rule_names() -> None:
    state = campaign("sent", "scheduled", "pending", "pending", rules=(rule("click", "skip_to_step", stepIndex=2),))

    work = engage(state, event("click"))

    assert statuses(state) == ("active", ["sent", "skipped", "scheduled", "pending"])
    assert state.steps[2].scheduled_at == NOW, "no delay: it goes now"
    assert payload(scheduled(work)[STEP_TIMER]).step_due.step_index == 2


def test_a_skip_to_a_step_that_is_no_longer_open_changes_no_step() -> None:
    state = campaign("sent", "sent", "scheduled", rules=(rule("click", "skip_to_step", stepIndex=1),))

    work = engage(state, event("click"))

    assert statuses(state) == ("active", ["sent", "sent", "scheduled"])
    assert STEP_TIMER not in scheduled(work)
    assert decided(work) == [("click", "skip_to_step", "applied")]


def test_a_reschedule_rule_counts_from_the_steps_own_time_not_from_now() -> None:
    state = campaign(rules=(rule("open", "reschedule_step", delaySeconds=7200),))
    planned = state.steps[1].scheduled_at

    engage(state, event("open"))

    assert near(state.steps[1].scheduled_at, planned + 2 * HOUR)


@pytest.mark.parametrize(
    ("event_type", "fields", "trigger", "reason"),
    [
        ("reply", {}, "reply", "reply"),
        ("unsubscribe", {}, "unsubscribe", "unsubscribe"),
        ("group_unsubscribe", {}, "unsubscribe", "unsubscribe"),
        ("bounce", {"reason": "bounce"}, "bounce", "bounce"),
        ("spamreport", {}, "spamreport", "spamreport"),
        ("reply", {"reply_class": "unsubscribe_request"}, "reply:unsubscribe_request", "unsubscribe request by reply"),
    ],
)
def test_a_reply_an_unsubscribe_a_bounce_or_a_spam_report_cancels_the_campaign(
    event_type: str, fields: dict[str, str], trigger: str, reason: str
) -> None:
    state = campaign()

    work = engage(state, event(event_type, **fields))

    assert statuses(state) == ("canceled", ["sent", "canceled", "canceled"])
    assert (state.cancel_reason, state.ended_at) == (reason, NOW)
    assert canceled_groups(work) == [f"campaign:{CAMPAIGN}"], "every timer of the campaign goes"
    [fact] = status_facts(work)
    assert (fact.status, fact.version, fact.reason) == ("canceled", 1, reason)
    assert decided(work) == [(trigger, "cancel_campaign", "applied")]


def test_a_classified_reply_answers_to_its_class_rule_and_without_one_to_the_reply_rule() -> None:
    interested = rule("reply:interested", "complete_campaign", reason="interested")
    state = campaign(rules=(interested,))

    work = engage(state, event("reply", reply_class="interested"))

    assert (state.status, state.cancel_reason) == ("completed", "interested")
    assert decided(work) == [("reply:interested", "complete_campaign", "applied")]

    other = campaign(rules=(interested,))
    work = engage(other, event("reply", reply_class="question"))

    assert (other.status, other.cancel_reason) == ("canceled", "reply")
    assert decided(work) == [("reply", "cancel_campaign", "applied")]


def test_a_trigger_without_a_rule_is_recorded_and_changes_nothing_else() -> None:
    state = campaign()

    work = engage(state, event("delivered"))

    assert statuses(state) == ("active", ["sent", "scheduled", "pending"]) and not state.changed
    assert decided(work) == [("delivered", "none", "no rule")]
    assert not work.outbox


def test_a_fact_already_decided_changes_nothing() -> None:
    state = campaign()

    work = engage(state, event("open"), already={(TENANT, message_id(0), "open")})

    assert unchanged(state, work)


def test_the_same_fact_twice_in_one_batch_applies_once() -> None:
    state = campaign()

    work = engage(state, event("open"), event("open"))

    assert decided(work) == [("open", "schedule_next_step", "applied")]
    assert state.steps[1].schedule_version == 2


def test_a_paused_campaign_keeps_its_plan_but_a_reply_still_ends_it() -> None:
    state = campaign(status="paused")

    work = engage(state, event("open"))

    assert state.steps[1].schedule_version == 1 and STEP_TIMER not in scheduled(work)
    assert decided(work) == [("open", "schedule_next_step", "campaign paused")]

    work = engage(state, event("reply", event_id="e-2"))

    assert statuses(state) == ("canceled", ["sent", "canceled", "canceled"])


def test_a_pause_rule_stops_the_step_timer_and_arms_a_resume() -> None:
    state = campaign(rules=(rule("click", "pause_campaign", resumeAfterSeconds=3600),))

    work = engage(state, event("click"))

    assert (state.status, state.pause_version) == ("paused", 1)
    assert STEP_TIMER in canceled_keys(work)
    resume = scheduled(work)[RESUME_TIMER]
    assert fire_at(resume) == NOW + HOUR
    assert payload(resume).resume_due.pause_version == 1


def test_an_out_of_office_reply_pauses_until_the_return_day_in_the_contacts_zone() -> None:
    state = campaign(time_zone="Europe/Paris")

    work = engage(state, event("auto_reply", return_date="2030-03-11"))

    assert state.status == "paused"
    assert fire_at(scheduled(work)[RESUME_TIMER]) == datetime(2030, 3, 11, tzinfo=ZoneInfo("Europe/Paris"))
    [(trigger, action, result)] = decided(work)
    assert (trigger, action) == ("auto_reply", "pause_campaign")
    assert result == "applied: paused until 2030-03-11 (the return date in the auto-reply)"


def test_an_out_of_office_reply_without_a_date_pauses_for_the_tenants_default_within_the_cap() -> None:
    state = campaign()
    work = engage(state, event("auto_reply"), tenant=TenantDefaults(auto_reply_pause_days=3))
    assert fire_at(scheduled(work)[RESUME_TIMER]) == NOW + 3 * DAY

    far = campaign()
    work = engage(far, event("auto_reply", return_date="2031-01-01"))
    assert fire_at(scheduled(work)[RESUME_TIMER]) == NOW + 30 * DAY, "the reactor's cap"


def test_only_engagement_with_our_messages_that_stands_for_a_trigger_reaches_the_rules() -> None:
    events = [
        event("open"),
        event("open", machine_open=True),
        event("bounce", reason="blocked"),  # a soft bounce: the address still exists
        event("processed"),
        EngagementEvent(tenant_id=TENANT, event_id="e-x", message_id="m", event_type="click"),  # not a campaign's
    ]

    assert [f.trigger for f in engagements.facts_of(events, count_machine_opens=False)] == ["open"]
    assert [f.trigger for f in engagements.facts_of(events, count_machine_opens=True)] == ["open", "open"]


def test_a_classified_reply_looks_for_decisions_by_its_class_too() -> None:
    facts = engagements.facts_of([event("reply", reply_class="question")], count_machine_opens=False)

    assert engagements.decision_keys(facts) == [
        (TENANT, message_id(0), "reply"),
        (TENANT, message_id(0), "reply:question"),
    ]
