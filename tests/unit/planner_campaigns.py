"""Campaigns in memory for the planner's unit tests, and readers for what a unit of work caused.

A campaign is built the way `state.load` would load it (every column of its row and of its
steps), so the rules act on it exactly as they do inside the reactor's transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from dripiq.dispatcher.v1 import messages_pb2 as dispatcher_pb
from dripiq.planner.v1 import facts_pb2, timers_pb2
from dripiq.scheduler.v1 import commands_pb2, scheduler_service_pb2
from dripiq_common.windows import MAX_JITTER_SECONDS
from dripiq_planner import lifecycle
from dripiq_planner.state import CampaignState, StepState, UnitOfWork
from dripiq_planner.strategy import AdaptiveRule, RuleAction

# A Monday, 09:00 UTC.
NOW = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
TENANT = "t-unit"
CAMPAIGN = "c-unit"
# Every hour of every day: where a step lands depends on its delay and jitter only.
ALWAYS = {"weekdays": [1, 2, 3, 4, 5, 6, 7], "start_hour": 0, "end_hour": 24}


def rule(trigger: str, action: str, **payload: Any) -> AdaptiveRule:
    return AdaptiveRule(trigger=trigger, action=RuleAction(type=action, payload=payload))


def message_id(step_index: int) -> str:
    return lifecycle.message_id(CAMPAIGN, step_index)


# The keys of the campaign's step and resume timers, and of step 0's no_open_48h timeout.
STEP_TIMER = f"{CAMPAIGN}:step"
RESUME_TIMER = f"{CAMPAIGN}:resume"
NO_OPEN = f"{message_id(0)}:no_open_48h"


def campaign(
    *step_statuses: str,
    status: str = "active",
    rules: tuple[AdaptiveRule, ...] = (),
    delays: tuple[int, ...] = (),
    window: dict[str, Any] = ALWAYS,
    time_zone: str = "UTC",
    pause_version: int = 0,
) -> CampaignState:
    """A campaign whose steps have these statuses (three by default: step 0 sent a day ago,
    step 1 scheduled two days from now, step 2 pending). A step that went out has its message
    id; a scheduled one its time and schedule version 1. Each step waits `delays[i]` seconds
    (a day by default)."""
    step_statuses = step_statuses or ("sent", "scheduled", "pending")
    steps = []
    for i, step_status in enumerate(step_statuses):
        went_out = step_status in ("sending", "sent", "failed")
        steps.append(
            StepState(
                {
                    "id": i + 1,
                    "campaign_id": CAMPAIGN,
                    "tenant_id": TENANT,
                    "step_index": i,
                    "channel": "email",
                    "status": step_status,
                    "timing": f"Day {i}",
                    "relative_delay_seconds": delays[i] if delays else int(DAY.total_seconds()),
                    "scheduled_at": NOW + 2 * DAY if step_status == "scheduled" else None,
                    "schedule_version": 1 if step_status != "pending" else 0,
                    "subject": f"Step {i} for {{{{company_name}}}}",
                    "content": "Hi {{first_name}}",
                    "call_to_action": "",
                    "message_id": message_id(i) if went_out else None,
                    "sent_at": NOW - DAY if step_status == "sent" else None,
                    "updated_at": NOW - DAY,
                    "thread": False,
                    "variants": [],
                    "variant": "",
                    "send_window_json": None,
                }
            )
        )
    return CampaignState(
        {
            "id": CAMPAIGN,
            "tenant_id": TENANT,
            "request_id": None,
            "lead_id": "lead-1",
            "contact_id": "contact-1",
            "product_id": "product-1",
            "channel": "email",
            "status": status,
            "sender_identity_id": "sender-1",
            "facts_json": {
                "email": "ada@example.com",
                "first_name": "Ada",
                "last_name": "Lovelace",
                "company_name": "Acme",
            },
            "rules_json": [r.model_dump(mode="json") for r in rules],
            "settings_json": {"time_zone": time_zone, "send_window": window},
            "current_step_index": 0,
            "strategist": "request",
            "pause_version": pause_version,
            "cancel_reason": "",
            "created_at": NOW - 2 * DAY,
            "updated_at": NOW - DAY,
            "ended_at": None,
            "attention_reason": "",
        },
        steps,
    )


def statuses(state: CampaignState) -> tuple[str, list[str]]:
    return state.status, [s.status for s in state.steps]


def unchanged(state: CampaignState, work: UnitOfWork) -> bool:
    """Nothing about the campaign changed and nothing was caused or decided."""
    return not state.changed and not any(s.changed for s in state.steps) and not work.outbox and not work.decisions


def near(actual: datetime, due: datetime) -> bool:
    """`actual` is `due` plus at most the jitter a placed step may get."""
    return due <= actual <= due + timedelta(seconds=MAX_JITTER_SECONDS)


# -- what a unit of work caused ---------------------------------------------------------------


def timer_commands(work: UnitOfWork) -> list[commands_pb2.TimerCommand]:
    return [m.message for m in work.outbox if isinstance(m.message, commands_pb2.TimerCommand)]


def scheduled(work: UnitOfWork) -> dict[str, scheduler_service_pb2.Timer]:
    """The timers armed, by key."""
    return {c.schedule.key: c.schedule for c in timer_commands(work) if c.WhichOneof("command") == "schedule"}


def canceled_keys(work: UnitOfWork) -> list[str]:
    return [c.cancel.key for c in timer_commands(work) if c.WhichOneof("command") == "cancel"]


def canceled_groups(work: UnitOfWork) -> list[str]:
    return [c.cancel_group.group_key for c in timer_commands(work) if c.WhichOneof("command") == "cancel_group"]


def fire_at(timer: scheduler_service_pb2.Timer) -> datetime:
    return timer.fire_at.ToDatetime(tzinfo=UTC)


def payload(timer: scheduler_service_pb2.Timer) -> timers_pb2.PlannerTimer:
    return timers_pb2.PlannerTimer.FromString(timer.payload)


def status_facts(work: UnitOfWork) -> list[facts_pb2.CampaignStatusChanged]:
    return [m.message for m in work.outbox if isinstance(m.message, facts_pb2.CampaignStatusChanged)]


def send_commands(work: UnitOfWork) -> list[dispatcher_pb.SendMessageCommand]:
    return [m.message for m in work.outbox if isinstance(m.message, dispatcher_pb.SendMessageCommand)]


def decided(work: UnitOfWork) -> list[tuple[str, str, str]]:
    """(trigger, action, result) of each decision recorded."""
    return [(d["trigger"], d["action"], d["result"]) for d in work.decisions]
