"""Tables of the `planner` schema."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB

from dripiq_common.ai_audit import ai_call_columns
from dripiq_common.outbox import outbox_table

SCHEMA = "planner"
metadata = MetaData(schema=SCHEMA)

contact_campaigns = Table(
    "contact_campaigns",
    metadata,
    Column("id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("request_id", Text),
    Column("lead_id", Text, nullable=False),
    Column("contact_id", Text, nullable=False),
    Column("product_id", Text, nullable=False),
    Column("channel", Text, nullable=False, server_default="email"),
    Column("status", Text, nullable=False, server_default="active"),
    Column("sender_identity_id", Text, nullable=False, server_default=""),
    # Facts about lead, contact and product as the calling application sent them.
    Column("facts_json", JSONB, nullable=False),
    Column("strategy_json", JSONB, nullable=False),
    Column("rules_json", JSONB, nullable=False),
    Column("settings_json", JSONB, nullable=False, server_default="{}"),
    Column("current_step_index", Integer, nullable=False, server_default="0"),
    # "openai", "template" or "request": who wrote the strategy.
    Column("strategist", Text, nullable=False, server_default="request"),
    # Bumped on every change of status (CampaignStatusChanged.version); a resume timer of an
    # older pause is stale.
    Column("pause_version", Integer, nullable=False, server_default="0"),
    Column("cancel_reason", Text, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("ended_at", DateTime(timezone=True)),
    # Why it waits for a person (needs_attention): a send that failed for a reason outside it.
    Column("attention_reason", Text, nullable=False, server_default=""),
    # Planning as work (status 'planning'): why the template wrote the strategy, when it was
    # stored, and until when a planning worker holds the campaign (a tenant's concurrency
    # counts the unexpired holds; a dead worker's expires).
    Column("strategist_reason", Text, nullable=False, server_default=""),
    Column("planned_at", DateTime(timezone=True)),
    Column("planning_until", DateTime(timezone=True)),
    CheckConstraint(
        "status IN ('planning', 'active', 'paused', 'needs_attention', 'completed', 'canceled', 'draft')",
        name="contact_campaigns_status_check",
    ),
    UniqueConstraint("tenant_id", "request_id", name="contact_campaigns_request_key"),
    # One running campaign per tenant, contact and product.
    Index(
        "contact_campaigns_one_running_idx",
        "tenant_id",
        "contact_id",
        "product_id",
        unique=True,
        postgresql_where=text("status IN ('planning', 'active', 'paused', 'needs_attention', 'draft')"),
    ),
    # The planning backlog, per tenant in arrival order (GetTenantStats, concurrency holds).
    Index(
        "contact_campaigns_planning_idx",
        "tenant_id",
        "created_at",
        postgresql_where=text("status = 'planning'"),
    ),
    Index("contact_campaigns_tenant_contact_idx", "tenant_id", "contact_id"),
    Index("contact_campaigns_tenant_lead_idx", "tenant_id", "lead_id"),
    Index("contact_campaigns_tenant_created_idx", "tenant_id", "created_at", "id"),
    # What BatchApproveCampaigns pages through: a tenant's drafts, oldest first.
    Index(
        "contact_campaigns_drafts_idx",
        "tenant_id",
        "created_at",
        "id",
        postgresql_where=text("status = 'draft'"),
    ),
)

# A tenant's defaults; a tenant without a row gets the planner's built-in defaults.
tenant_settings = Table(
    "tenant_settings",
    metadata,
    Column("tenant_id", Text, primary_key=True),
    Column("send_window_json", JSONB),
    Column("voice", Text, nullable=False, server_default=""),
    Column("guidelines", Text, nullable=False, server_default=""),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Printed in every email's footer (CAN-SPAM).
    Column("postal_address", Text, nullable=False, server_default=""),
    # Privacy switches: whether SendGrid tracks opens and clicks of this tenant's mail.
    Column("open_tracking", Boolean, nullable=False, server_default=true()),
    Column("click_tracking", Boolean, nullable=False, server_default=true()),
    # How long an out-of-office reply that names no return date pauses a campaign.
    Column("auto_reply_pause_days", Integer, nullable=False, server_default="7"),
    # What AI-written copy may name: domains (ASCII), URLs, E.164 phone numbers (JSON lists).
    Column("allowed_domains", JSONB, nullable=False, server_default="[]"),
    Column("allowed_urls", JSONB, nullable=False, server_default="[]"),
    Column("allowed_phone_numbers", JSONB, nullable=False, server_default="[]"),
    # The tenant's daily AI budget; 0: the planner's default.
    Column("ai_daily_call_budget", Integer, nullable=False, server_default="0"),
    Column("ai_daily_token_budget", BigInteger, nullable=False, server_default="0"),
    # New campaigns wait as drafts until a person approves them.
    Column("require_approval", Boolean, nullable=False, server_default=false()),
    # Collision control and holidays: what a reply stops besides its campaign ("campaign",
    # "contact", "company"), how long a contact rests between campaigns (0: off), and the
    # holiday calendars ("US-CA") for contacts that give no country.
    Column("reply_stops", Text, nullable=False, server_default="campaign"),
    Column("enrolment_cooldown_seconds", BigInteger, nullable=False, server_default="0"),
    Column("holiday_calendars", JSONB, nullable=False, server_default="[]"),
    CheckConstraint("reply_stops IN ('campaign', 'contact', 'company')", name="tenant_settings_reply_stops_check"),
    # Campaigns planned at once for the tenant; 0: the planner's default.
    Column("planning_concurrency", Integer, nullable=False, server_default="0"),
    # When a step's winning A/B variant is picked (winners.WinnerSetting.to_json); NULL: never.
    Column("variant_winner_json", JSONB),
    # Versions of each email step the AI strategist writes (0: none) and what they differ in.
    Column("ai_variants", Integer, nullable=False, server_default="0"),
    Column("ai_variant_focus", Text, nullable=False, server_default="both"),
    CheckConstraint(
        "ai_variants IN (0, 2, 3) AND ai_variant_focus IN ('subject', 'content', 'both')",
        name="tenant_settings_ai_variants_check",
    ),
)

# Each A/B experiment's winner (tenant, product, step index), picked once: the first planner to
# store it wins, and every replica sends what is stored.
variant_winners = Table(
    "variant_winners",
    metadata,
    Column("tenant_id", Text, primary_key=True),
    Column("product_id", Text, primary_key=True),
    Column("step_index", Integer, primary_key=True),
    Column("variant", Text, nullable=False),
    # "reply" or "click": the rate it won by, its own and the runner-up's.
    Column("metric", Text, nullable=False),
    Column("rate", Float, nullable=False),
    Column("runner_up", Text, nullable=False),
    Column("runner_up_rate", Float, nullable=False),
    # The fewest sends of any variant when it was picked.
    Column("sends_each", BigInteger, nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("metric IN ('reply', 'click')", name="variant_winners_metric_check"),
    Index("variant_winners_tenant_decided_idx", "tenant_id", "decided_at"),
)

# What the strategist spent for a tenant on a UTC day: calls reserved before each request (so
# replicas cannot overspend them), tokens added after each answer.
ai_budget_usage = Table(
    "ai_budget_usage",
    metadata,
    Column("tenant_id", Text, primary_key=True),
    Column("day", Date, primary_key=True),
    Column("calls", Integer, nullable=False, server_default="0"),
    Column("tokens", BigInteger, nullable=False, server_default="0"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

campaign_steps = Table(
    "campaign_steps",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("campaign_id", Text, ForeignKey("contact_campaigns.id", ondelete="CASCADE"), nullable=False),
    Column("tenant_id", Text, nullable=False),
    Column("step_index", Integer, nullable=False),
    Column("channel", Text, nullable=False),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("timing", Text, nullable=False),
    Column("relative_delay_seconds", BigInteger, nullable=False),
    Column("scheduled_at", DateTime(timezone=True)),
    # Bumped on every (re)schedule; a timer carrying an older version is stale.
    Column("schedule_version", Integer, nullable=False, server_default="0"),
    Column("subject", Text, nullable=False, server_default=""),
    Column("content", Text, nullable=False, server_default=""),
    Column("call_to_action", Text, nullable=False, server_default=""),
    Column("message_id", Text),
    Column("sent_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # An email that continues the previous email's thread (In-Reply-To, "Re: <subject>").
    Column("thread", Boolean, nullable=False, server_default=false()),
    # Why a holiday moved its placement (shown with the step); empty when none did.
    Column("placement_note", Text, nullable=False, server_default=""),
    # A/B variants of the step's copy (none: one version) in the strategy's JSON form,
    # and the one the contact got, recorded when the step is sent ("" before).
    Column("variants", JSONB, nullable=False, server_default="[]"),
    Column("variant", Text, nullable=False, server_default=""),
    # The step's own send window (SendWindow.to_json); NULL: the campaign's.
    Column("send_window_json", JSONB),
    UniqueConstraint("campaign_id", "step_index", name="campaign_steps_campaign_step_key"),
    CheckConstraint(
        "status IN ('pending', 'scheduled', 'sending', 'sent', 'failed', 'skipped', 'canceled')",
        name="campaign_steps_status_check",
    ),
    Index("campaign_steps_message_idx", "message_id"),
)

ai_generations = Table(
    "ai_generations",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("campaign_id", Text),
    Column("correlation_id", Text, nullable=False),
    Column("strategist", Text, nullable=False),
    *ai_call_columns(),
    Index("ai_generations_tenant_campaign_idx", "tenant_id", "campaign_id"),
)

# Every decision the rules engine took, and the idempotency guard for engagement:
# one decision per message and trigger.
rule_decisions = Table(
    "rule_decisions",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("campaign_id", Text, nullable=False),
    Column("message_id", Text, nullable=False),
    Column("step_index", Integer, nullable=False),
    Column("trigger", Text, nullable=False),
    # The engagement event id or timer key that caused it.
    Column("source", Text, nullable=False),
    Column("rule_json", JSONB, nullable=False),
    Column("action", Text, nullable=False),
    Column("result", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("tenant_id", "message_id", "trigger", name="rule_decisions_message_trigger_key"),
    Index("rule_decisions_campaign_idx", "tenant_id", "campaign_id"),
)

# Who changed a campaign by hand and what: an approval, an edited step (the timeline shows them).
campaign_changes = Table(
    "campaign_changes",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("campaign_id", Text, ForeignKey("contact_campaigns.id", ondelete="CASCADE"), nullable=False),
    # "saved_as_draft", "approved", "step_edited".
    Column("kind", Text, nullable=False),
    Column("step_index", Integer),
    # The principal's subject (a token's `sub`, or service:<name>).
    Column("actor", Text, nullable=False),
    # {field: {"before": ..., "after": ...}} for an edit; {} otherwise.
    Column("fields_json", JSONB, nullable=False, server_default="{}"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("campaign_changes_campaign_idx", "tenant_id", "campaign_id", "id"),
)

outbox = outbox_table(metadata)
