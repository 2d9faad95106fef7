"""What the reactor's rules do to a campaign in memory when a timer fires: a timeout, a step
due, a resume.
The rules are given the campaign as `state.load` would lock it, without PostgreSQL or NATS,
and judged by the campaign afterwards and by what the unit of work caused."""

from __future__ import annotations

import pytest
from planner_campaigns import (
    CAMPAIGN,
    DAY,
    NO_OPEN,
    NOW,
    STEP_TIMER,
    TENANT,
    campaign,
    decided,
    message_id,
    near,
    payload,
    rule,
    scheduled,
    send_commands,
    timer_commands,
    unchanged,
)

from dripiq.dispatcher.v1 import messages_pb2 as dispatcher_pb
from dripiq.planner.v1 import timers_pb2
from dripiq_planner import timers
from dripiq_planner.state import CampaignState, UnitOfWork
from dripiq_planner.tenants import TenantDefaults


def fire(
    state: CampaignState,
    timer: timers_pb2.PlannerTimer,
    *,
    already: set[tuple[str, str, str]] | None = None,
    tenant: TenantDefaults | None = None,
) -> UnitOfWork:
    work = UnitOfWork(now=NOW)
    timers.apply(
        {(TENANT, CAMPAIGN): state},
        work,
        set() if already is None else already,
        timers=[timer],
        tenants={TENANT: tenant or TenantDefaults()},
        max_pause_days=30,
    )
    return work


def planner_timer(**kind: object) -> timers_pb2.PlannerTimer:
    return timers_pb2.PlannerTimer(tenant_id=TENANT, campaign_id=CAMPAIGN, **kind)  # type: ignore[arg-type]


def timeout(trigger: str = "no_open_48h") -> timers_pb2.PlannerTimer:
    return planner_timer(trigger_due=timers_pb2.TriggerDue(message_id=message_id(0), step_index=0, trigger=trigger))


def step_due(step_index: int, version: int) -> timers_pb2.PlannerTimer:
    return planner_timer(step_due=timers_pb2.StepDue(step_index=step_index, schedule_version=version))


def test_no_open_in_48_hours_puts_the_next_step_back_a_day_from_its_own_time() -> None:
    state = campaign()
    planned = state.steps[1].scheduled_at

    work = fire(state, timeout())

    assert near(state.steps[1].scheduled_at, planned + DAY)
    assert decided(work) == [("no_open_48h", "reschedule_step", "applied")]
    assert work.decisions[0]["source"] == NO_OPEN


@pytest.mark.parametrize("settled_by", ["open", "click"])
def test_a_timeout_whose_engagement_came_is_canceled_as_moot_and_changes_nothing_else(settled_by: str) -> None:
    state = campaign()

    work = fire(state, timeout(), already={(TENANT, message_id(0), settled_by)})

    assert not state.changed and not any(s.changed for s in state.steps)
    assert decided(work) == [("no_open_48h", "none", f"canceled as moot: {settled_by} came first")]
    [cancel] = [c.cancel for c in timer_commands(work) if c.HasField("cancel")]
    assert (cancel.key, cancel.reason, cancel.include_fired) == (NO_OPEN, f"moot: {settled_by} came first", True)


def test_a_timeout_decided_before_changes_nothing() -> None:
    state = campaign()

    work = fire(state, timeout(), already={(TENANT, message_id(0), "no_open_48h")})

    assert unchanged(state, work)


def test_a_timeout_looks_for_the_engagement_that_settles_it() -> None:
    assert timers.decision_keys([timeout("no_reply_96h")]) == [
        (TENANT, message_id(0), "reply"),
        (TENANT, message_id(0), "auto_reply"),
        (TENANT, message_id(0), "no_reply_96h"),
    ]


def test_a_timeout_with_an_ending_rule_ends_the_campaign() -> None:
    state = campaign(rules=(rule("no_reply_96h", "cancel_campaign", reason="no answer"),))

    fire(state, timeout("no_reply_96h"))

    assert (state.status, state.cancel_reason) == ("canceled", "no answer")


def test_a_due_step_goes_out_once_with_its_text_and_the_tenants_settings() -> None:
    state = campaign()
    tenant = TenantDefaults(postal_address="1 Main Street, Springfield", open_tracking=False)

    work = fire(state, step_due(1, 1), tenant=tenant)

    [send] = send_commands(work)
    assert (state.steps[1].status, state.steps[1].message_id, state.current_step_index) == (
        "sending",
        message_id(1),
        1,
    )
    assert (send.message_id, send.step_index, send.sender_identity_id) == (message_id(1), 1, "sender-1")
    # What the tenant's analytics count the message under.
    assert (send.product_id, send.strategist, send.variant, send.channel) == ("product-1", "request", "", "email")
    assert (send.to_email, send.to_name) == ("ada@example.com", "Ada Lovelace")
    assert (send.subject, send.body_text, list(send.thread_message_ids)) == ("Step 1 for Acme", "Hi Ada", [])
    assert send.postal_address == "1 Main Street, Springfield"
    assert send.tracking == dispatcher_pb.Tracking(opens=False, clicks=True)
    assert send.send_window == dispatcher_pb.ContactWindow(
        weekdays=[1, 2, 3, 4, 5, 6, 7], start_hour=0, end_hour=24, time_zone="UTC"
    )

    again = fire(state, step_due(1, 1), tenant=tenant)

    assert not again.outbox, "a redelivered timer finds the step sending"


def test_a_threaded_step_replies_to_the_email_it_follows() -> None:
    state = campaign()
    state.steps[1].set(thread=True, subject="")

    [send] = send_commands(fire(state, step_due(1, 1)))

    assert (send.subject, list(send.thread_message_ids)) == ("Re: Step 0 for Acme", [message_id(0)])


@pytest.mark.parametrize(
    ("status", "version"),
    [("active", 0), ("paused", 1), ("canceled", 1)],
    ids=["an-older-schedule", "a-paused-campaign", "a-canceled-campaign"],
)
def test_a_step_timer_that_is_not_current_changes_nothing(status: str, version: int) -> None:
    state = campaign(status=status)

    work = fire(state, step_due(1, version))

    assert unchanged(state, work)


def test_a_resume_timer_of_the_current_pause_resumes_and_an_older_one_does_nothing() -> None:
    state = campaign(status="paused", pause_version=2)

    older = fire(state, planner_timer(resume_due=timers_pb2.ResumeDue(pause_version=1)))
    assert unchanged(state, older)

    work = fire(state, planner_timer(resume_due=timers_pb2.ResumeDue(pause_version=2)))

    assert (state.status, state.pause_version) == ("active", 3)
    assert near(state.steps[1].scheduled_at, NOW + 2 * DAY), "its planned time is still ahead"
    assert payload(scheduled(work)[STEP_TIMER]).step_due.step_index == 1
