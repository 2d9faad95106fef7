"""What the reactor's rules do to a campaign in memory on the dispatcher's send outcomes: sent,
failed, suppressed and withheld.
The rules are given the campaign as `state.load` would lock it, without PostgreSQL or NATS,
and judged by the campaign afterwards and by what the unit of work caused."""

from __future__ import annotations

from datetime import timedelta

import pytest
from planner_campaigns import (
    CAMPAIGN,
    DAY,
    HOUR,
    NOW,
    STEP_TIMER,
    TENANT,
    campaign,
    canceled_groups,
    decided,
    fire_at,
    message_id,
    near,
    payload,
    scheduled,
    statuses,
    unchanged,
)

from dripiq.dispatcher.v1 import messages_pb2 as dispatcher_pb
from dripiq.planner.v1 import timers_pb2
from dripiq_planner import outcomes
from dripiq_planner.state import CampaignState, UnitOfWork


def report(state: CampaignState, kind: int, *, step_index: int = 1, **fields: object) -> UnitOfWork:
    """The dispatcher's outcome for a step's message, reported now."""
    outcome = dispatcher_pb.MessageOutcome(
        tenant_id=TENANT,
        campaign_id=CAMPAIGN,
        message_id=message_id(step_index),
        step_index=step_index,
        kind=kind,  # type: ignore[arg-type]
        **fields,  # type: ignore[arg-type]
    )
    outcome.occurred_at.FromDatetime(NOW)
    work = UnitOfWork(now=NOW)
    outcomes.apply({(TENANT, CAMPAIGN): state}, work, outcomes=[outcome])
    return work


def test_a_sent_step_schedules_the_next_by_its_delay_and_arms_no_open_48h() -> None:
    state = campaign("sent", "sending", "pending")

    work = report(state, dispatcher_pb.OUTCOME_KIND_SENT)

    assert statuses(state) == ("active", ["sent", "sent", "scheduled"])
    assert state.steps[1].sent_at == NOW
    assert near(state.steps[2].scheduled_at, NOW + DAY)
    no_open = scheduled(work)[f"{message_id(1)}:no_open_48h"]
    assert fire_at(no_open) == NOW + 48 * HOUR
    assert payload(no_open).trigger_due == timers_pb2.TriggerDue(
        message_id=message_id(1), step_index=1, trigger="no_open_48h"
    )


def test_a_timeout_on_opens_that_cannot_be_tracked_is_not_armed_and_says_why() -> None:
    state = campaign("sent", "sending", "pending")

    work = report(state, dispatcher_pb.OUTCOME_KIND_SENT, opens_untracked_reason="open tracking is off")

    assert f"{message_id(1)}:no_open_48h" not in scheduled(work)
    assert decided(work) == [("no_open_48h", "none", "not armed: open tracking is off")]


def test_the_last_step_sent_completes_the_campaign() -> None:
    state = campaign("sent", "sending")

    work = report(state, dispatcher_pb.OUTCOME_KIND_SENT)

    assert statuses(state) == ("completed", ["sent", "sent"])
    assert canceled_groups(work) == [f"campaign:{CAMPAIGN}"]


@pytest.mark.parametrize(
    ("kind", "permanent", "status", "reason"),
    [
        (dispatcher_pb.OUTCOME_KIND_SUPPRESSED, False, "canceled", "contact suppressed"),
        (dispatcher_pb.OUTCOME_KIND_FAILED, True, "canceled", "send failed: invalid address"),
        (dispatcher_pb.OUTCOME_KIND_FAILED, False, "needs_attention", "step 1 failed: invalid address"),
    ],
)
def test_a_failed_send_ends_the_campaign_only_when_the_message_can_never_go(
    kind: int, permanent: bool, status: str, reason: str
) -> None:
    state = campaign("sent", "sending", "pending")

    report(state, kind, permanent=permanent, reason="invalid address")

    assert state.status == status and state.steps[1].status == "failed"
    assert reason in (state.cancel_reason, state.attention_reason)


@pytest.mark.parametrize(
    ("status", "step_status"),
    [("paused", "scheduled"), ("canceled", "canceled")],
)
def test_a_withheld_step_waits_for_the_resume_or_closes_with_its_campaign(status: str, step_status: str) -> None:
    state = campaign("sent", "sending", "pending", status=status)

    work = report(state, dispatcher_pb.OUTCOME_KIND_WITHHELD)

    assert state.steps[1].status == step_status
    assert state.steps[1].message_id == message_id(1), "a resume sends it under the same id"
    assert not work.outbox


def test_a_step_withheld_from_a_campaign_active_again_goes_out_a_minute_later() -> None:
    state = campaign("sent", "sending", "pending")

    work = report(state, dispatcher_pb.OUTCOME_KIND_WITHHELD)

    assert state.steps[1].status == "scheduled"
    assert near(state.steps[1].scheduled_at, NOW + timedelta(seconds=outcomes.WITHHELD_RETRY_SECONDS))
    assert payload(scheduled(work)[STEP_TIMER]).step_due.step_index == 1


def test_an_outcome_for_a_step_that_is_no_longer_sending_changes_nothing() -> None:
    state = campaign("sent", "sent", "pending")

    work = report(state, dispatcher_pb.OUTCOME_KIND_SENT)

    assert unchanged(state, work)
