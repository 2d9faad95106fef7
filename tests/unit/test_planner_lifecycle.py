"""A campaign's state changes and the commands they cause, without PostgreSQL or NATS: message
ids, placing steps in the send window, (re)scheduling, pausing and resuming, ending, and
holding a campaign for a person and retrying its failed step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from planner_campaigns import (
    CAMPAIGN,
    DAY,
    HOUR,
    NOW,
    TENANT,
    campaign,
    canceled_groups,
    canceled_keys,
    fire_at,
    message_id,
    near,
    payload,
    scheduled,
    status_facts,
    statuses,
)

from dripiq.planner.v1 import timers_pb2
from dripiq.scheduler.v1 import scheduler_service_pb2
from dripiq_common.bus.contract import Subjects
from dripiq_planner import lifecycle
from dripiq_planner.state import UnitOfWork
from dripiq_scheduler import convert

STEP_TIMER = f"{CAMPAIGN}:step"
RESUME_TIMER = f"{CAMPAIGN}:resume"
NEW_YORK = ZoneInfo("America/New_York")
BUSINESS_HOURS = {"weekdays": [1, 2, 3, 4, 5], "start_hour": 9, "end_hour": 17}


# -- ids and times ------------------------------------------------------------------------------


def test_message_ids_are_the_same_for_the_same_step_and_differ_between_steps() -> None:
    first = lifecycle.message_id("c-1", 0)

    assert lifecycle.message_id("c-1", 0) == first, "a redelivered step-due timer makes no second message"
    assert len({first, lifecycle.message_id("c-1", 1), lifecycle.message_id("c-2", 0)}) == 3
    assert lifecycle.message_id("c-1", 0, generation=2) != first


def test_a_retried_step_gets_a_new_id_and_the_same_one_on_every_retry_call() -> None:
    retry = lifecycle.retry_message_id(message_id(1))

    assert retry != message_id(1)
    assert lifecycle.retry_message_id(message_id(1)) == retry
    assert lifecycle.retry_message_id(retry) != retry


@pytest.mark.parametrize(("seconds", "resumes"), [(None, None), (0, None), (-5, None), (3600, NOW + HOUR)])
def test_a_pause_resumes_by_itself_only_after_a_positive_number_of_seconds(
    seconds: int | None, resumes: datetime | None
) -> None:
    assert lifecycle.resume_after(NOW, seconds) == resumes


def test_a_step_due_outside_the_send_window_waits_for_its_opening_in_the_contacts_zone() -> None:
    state = campaign(window=BUSINESS_HOURS, time_zone="America/New_York")
    friday_evening = datetime(2030, 3, 8, 18, 30, tzinfo=NEW_YORK)

    placed = lifecycle.place(state, friday_evening, 1, planned_from=friday_evening)

    monday_opening = datetime(2030, 3, 11, 9, 0, tzinfo=NEW_YORK)  # after the switch to daylight time
    assert monday_opening <= placed < monday_opening + timedelta(minutes=15)
    assert lifecycle.place(state, friday_evening, 1, planned_from=friday_evening) == placed, "deterministic"


def test_a_step_due_now_inside_the_window_goes_now_and_one_planned_ahead_is_jittered_a_little() -> None:
    state = campaign()

    assert lifecycle.place(state, NOW, 1, planned_from=NOW) == NOW
    ahead = lifecycle.place(state, NOW + DAY, 1, planned_from=NOW)
    assert NOW + DAY <= ahead <= NOW + DAY + timedelta(seconds=864), "at most 1% of the day ahead"


# -- scheduling ---------------------------------------------------------------------------------


def test_scheduling_a_step_rearms_the_campaigns_one_step_timer_with_a_new_version() -> None:
    state = campaign()
    work = UnitOfWork(now=NOW)

    fired = lifecycle.schedule_step(work, state, state.steps[2], due=NOW + DAY)

    step = state.steps[2]
    assert (step.status, step.scheduled_at, step.schedule_version) == ("scheduled", fired, 1)
    assert near(fired, NOW + DAY)
    timer = scheduled(work)[STEP_TIMER]
    assert (timer.tenant_id, timer.kind, timer.group_key) == (TENANT, "step_due", f"campaign:{CAMPAIGN}")
    assert timer.target == scheduler_service_pb2.TIMER_TARGET_PLANNER_TIMER
    # The scheduler takes it as it is: the payload is a PlannerTimer of the timer's tenant.
    assert convert.new_timer(timer).target_subject == Subjects.planner_timer(TENANT)
    assert fire_at(timer) == fired
    assert payload(timer) == timers_pb2.PlannerTimer(
        tenant_id=TENANT, campaign_id=CAMPAIGN, step_due=timers_pb2.StepDue(step_index=2, schedule_version=1)
    )


def test_a_trigger_timer_is_keyed_by_message_and_trigger_and_fires_when_asked() -> None:
    state = campaign()
    work = UnitOfWork(now=NOW)

    lifecycle.schedule_trigger(
        work, state, message_id_=message_id(0), step_index=0, trigger="no_click_72h", fire_at=NOW + 72 * HOUR
    )

    timer = scheduled(work)[f"{message_id(0)}:no_click_72h"]
    assert (timer.kind, fire_at(timer)) == ("no_click_72h", NOW + 72 * HOUR), "not moved into a window"
    assert payload(timer).trigger_due == timers_pb2.TriggerDue(
        message_id=message_id(0), step_index=0, trigger="no_click_72h"
    )


# -- status changes -----------------------------------------------------------------------------


def test_every_change_of_status_is_published_with_a_growing_version() -> None:
    state = campaign(pause_version=4)
    work = UnitOfWork(now=NOW)

    lifecycle.pause(work, state, resume_at=None)
    lifecycle.resume(work, state)

    facts = status_facts(work)
    assert [(f.status, f.version) for f in facts] == [("paused", 5), ("active", 6)]
    assert all(f.tenant_id == TENANT and f.campaign_id == CAMPAIGN for f in facts)
    assert facts[0].occurred_at.ToDatetime(tzinfo=UTC) == NOW
    assert state.pause_version == 6


def test_ending_a_campaign_closes_its_open_steps_and_cancels_all_its_timers() -> None:
    state = campaign("sent", "scheduled", "pending")
    work = UnitOfWork(now=NOW)

    lifecycle.end_campaign(work, state, status="canceled", reason="reply")

    assert statuses(state) == ("canceled", ["sent", "canceled", "canceled"])
    assert (state.cancel_reason, state.ended_at) == ("reply", NOW)
    assert canceled_groups(work) == [f"campaign:{CAMPAIGN}"]
    assert [(f.status, f.reason) for f in status_facts(work)] == [("canceled", "reply")]


def test_a_pause_stops_the_step_timer_and_arms_a_resume_only_when_asked() -> None:
    state = campaign()
    work = UnitOfWork(now=NOW)

    lifecycle.pause(work, state, resume_at=None)

    assert statuses(state) == ("paused", ["sent", "scheduled", "pending"]), "the steps keep their plan"
    assert canceled_keys(work) == [STEP_TIMER] and RESUME_TIMER not in scheduled(work)

    other = campaign()
    work = UnitOfWork(now=NOW)
    lifecycle.pause(work, other, resume_at=NOW + DAY)

    resume = scheduled(work)[RESUME_TIMER]
    assert fire_at(resume) == NOW + DAY
    assert payload(resume).resume_due.pause_version == other.pause_version == 1


def test_a_resume_keeps_a_planned_time_still_ahead() -> None:
    state = campaign(status="paused")
    work = UnitOfWork(now=NOW)

    lifecycle.resume(work, state)

    assert state.status == "active"
    assert near(state.steps[1].scheduled_at, NOW + 2 * DAY)
    assert state.steps[1].schedule_version == 2


def test_a_resume_sends_a_step_whose_time_has_passed_now() -> None:
    state = campaign(status="paused")
    work = UnitOfWork(now=NOW + 3 * DAY)

    lifecycle.resume(work, state)

    assert state.steps[1].scheduled_at == NOW + 3 * DAY


def test_a_resume_waits_the_delay_of_a_step_never_scheduled() -> None:
    state = campaign("sent", "skipped", "pending", status="paused", delays=(0, 3600, 7200))
    work = UnitOfWork(now=NOW)

    lifecycle.resume(work, state)

    assert state.steps[2].status == "scheduled"
    assert near(state.steps[2].scheduled_at, NOW + 2 * HOUR)


def test_a_resume_while_a_step_is_sending_leaves_the_next_to_its_outcome() -> None:
    state = campaign("sent", "sending", "pending", status="paused")
    work = UnitOfWork(now=NOW)

    lifecycle.resume(work, state)

    assert statuses(state) == ("active", ["sent", "sending", "pending"])
    assert not scheduled(work)


def test_a_campaign_held_for_a_person_has_no_step_timer_and_says_why() -> None:
    state = campaign()
    work = UnitOfWork(now=NOW)

    lifecycle.needs_attention(work, state, reason="step 1 failed: provider down")

    assert (state.status, state.attention_reason) == ("needs_attention", "step 1 failed: provider down")
    assert canceled_keys(work) == [STEP_TIMER]


def test_retrying_sends_the_failed_step_now_under_a_new_id_and_resumes_the_campaign() -> None:
    state = campaign("sent", "failed", "pending", status="needs_attention")
    state.set(attention_reason="step 1 failed: provider down")
    work = UnitOfWork(now=NOW)

    lifecycle.retry_failed(work, state)

    step = state.steps[1]
    assert (state.status, state.attention_reason) == ("active", "")
    assert (step.status, step.scheduled_at) == ("scheduled", NOW)
    assert step.message_id == lifecycle.retry_message_id(message_id(1))
    assert payload(scheduled(work)[STEP_TIMER]).step_due.step_index == 1
