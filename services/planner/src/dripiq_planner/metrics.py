"""The planner's planning metrics (the strategist's own are in strategist.openai_strategist)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

PLANNING_QUEUED = Counter(
    "dripiq_planner_planning_queued", "Campaigns stored as planning, waiting for a planning worker"
)
PLANNED = Counter(
    "dripiq_planner_planning_planned",
    "Planning campaigns whose strategy was stored, by strategist (openai, template) and reason code "
    "for the template (ai_budget_spent, model_error, invalid_answer, no_model; none for openai)",
    ["strategist", "reason"],
)
PLANNING_OUTCOMES = Counter(
    "dripiq_planner_planning_outcomes",
    "What a planning worker did with a plan-campaign message: planned, deferred (the tenant was at its "
    "concurrency), retried (the model gave no answer), skipped (no longer planning)",
    ["outcome"],
)
PLANNING_IN_FLIGHT = Gauge("dripiq_planner_planning_in_flight", "Campaigns this process is planning now")
VARIANT_WINNER_LOOKUPS = Counter(
    "dripiq_planner_variant_winner_lookups",
    "What the planner found when a step with A/B variants was due and its tenant picks winners: stored (a "
    "winner was already picked), decided (picked now), undecided (too few sends, or no variant leads), "
    "unavailable (the events service did not answer: contacts keep being split)",
    ["outcome"],
)
