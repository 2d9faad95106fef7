"""Tables of the `events` schema."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSON, JSONB

from dripiq_common.ai_audit import ai_call_columns
from dripiq_common.outbox import outbox_table

SCHEMA = "events"
metadata = MetaData(schema=SCHEMA)

# Hundreds of millions of rows: range-partitioned by month so old months can be dropped whole.
# PostgreSQL wants the partition key in every unique constraint; a replayed SendGrid event
# carries the same timestamp, so (provider, provider_event_id, occurred_at) still dedupes it.
message_events = Table(
    "message_events",
    metadata,
    Column("id", BigInteger, Identity(always=True), nullable=False),
    # NULL when the event could not be tied to one of our messages.
    Column("tenant_id", Text),
    Column("provider", Text, nullable=False),
    Column("provider_event_id", Text, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("message_id", Text),
    Column("campaign_id", Text),
    Column("step_index", Integer),
    Column("contact_id", Text),
    Column("email", Text),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("machine_open", Boolean, nullable=False, server_default="false"),
    Column("url", Text),
    Column("reason", Text),
    Column("matched", Boolean, nullable=False),
    # The provider's event as text checked to be JSON (json, not jsonb: nothing queries inside
    # it, and jsonb's conversion cost every insert); NULL once compacted.
    Column("raw_event", JSON),
    # The natural key dedupes (docs/decisions/0007); `id` is the stored event's handle for
    # facts and paging, unique by its identity, with no index of its own.
    PrimaryKeyConstraint("provider", "provider_event_id", "occurred_at", name="message_events_pkey"),
    Index("message_events_tenant_message_idx", "tenant_id", "message_id"),
    Index("message_events_tenant_campaign_idx", "tenant_id", "campaign_id"),
    # A tenant's events in a time range, paged by id (block summaries: almost free to keep).
    Index("message_events_occurred_at_brin", "occurred_at", postgresql_using="brin"),
    Index("message_events_id_brin", "id", postgresql_using="brin"),
    postgresql_partition_by="RANGE (occurred_at)",
)

# Our own copy of what the dispatcher sent, from its "sent" outcomes: enough to tie provider
# events and replies to a message without asking the dispatcher.
outbound_messages = Table(
    "outbound_messages",
    metadata,
    Column("message_id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("campaign_id", Text, nullable=False),
    Column("step_index", Integer, nullable=False),
    Column("contact_id", Text, nullable=False),
    Column("to_email", Text, nullable=False),
    Column("subject", Text, nullable=False, server_default=""),
    Column("provider_message_id", Text),
    Column("rfc_message_id", Text),
    Column("sent_at", DateTime(timezone=True), nullable=False),
    # Bits of rollups.UNIQUE_METRICS this message has already counted in step_stats.
    Column("seen", Integer, nullable=False, server_default="0"),
    # The bits the latest change of `seen` added: what that statement's RETURNING reads, since
    # RETURNING sees only new values before PostgreSQL 18.
    Column("seen_added", Integer, nullable=False, server_default="0"),
    # What the message is counted under in the tenant's analytics (tenant_stats), as its first
    # SENT outcome said; stats_day is NULL on a message kept before those analytics began.
    Column("product_id", Text, nullable=False, server_default=""),
    Column("sender_identity_id", Text, nullable=False, server_default=""),
    Column("strategist", Text, nullable=False, server_default=""),
    Column("variant", Text, nullable=False, server_default=""),
    Column("channel", Text, nullable=False, server_default=""),
    Column("stats_day", Date),
    Index("outbound_messages_provider_message_idx", "provider_message_id"),
    Index("outbound_messages_rfc_message_idx", "rfc_message_id"),
    # Copies older than the events' retention are deleted by age, a batch at a time.
    Index("outbound_messages_sent_at_idx", "sent_at"),
    # GetStepFunnel's per-variant rows: a campaign's messages sent as an A/B variant.
    Index(
        "outbound_messages_variant_campaign_idx",
        "tenant_id",
        "campaign_id",
        postgresql_where=text("variant <> ''"),
    ),
)

# Per campaign step and metric, a counter kept up to date in the transaction that stores each
# event (and each sent outcome): GetCampaignStats and GetStepFunnel read these few rows, never
# the events themselves.
step_stats = Table(
    "step_stats",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("campaign_id", Text, nullable=False),
    Column("step_index", Integer, nullable=False),
    Column("metric", Text, nullable=False),
    Column("value", BigInteger, nullable=False),
    PrimaryKeyConstraint("tenant_id", "campaign_id", "step_index", "metric", name="step_stats_pkey"),
)

# The tenant's analytics across campaigns: per UTC day of sending and what the messages were
# sent as, one counter column per metric, kept in the same transactions as step_stats.
# GetTenantStats reads only these rows (the key leads with tenant and day: a range is one
# index range).
TENANT_STATS_DIMENSIONS = ("product_id", "sender_identity_id", "strategist", "step_index", "variant", "channel")
TENANT_STATS_METRICS = (
    "sent",
    "delivered",
    "unique_human_opens",
    "machine_opens",
    "human_open_events",
    "unique_clicks",
    "click_events",
    "replies",
    "auto_replies",
    "bounces",
    "unsubscribes",
    "spam_reports",
)


def _tenant_stats_columns() -> list[Column[Any]]:
    """The dimensions and counters both tiers share (new Column objects for each table)."""
    return [
        *(Column(name, Integer if name == "step_index" else Text, nullable=False) for name in TENANT_STATS_DIMENSIONS),
        *(Column(metric, BigInteger, nullable=False, server_default="0") for metric in TENANT_STATS_METRICS),
    ]


tenant_stats = Table(
    "tenant_stats",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("day", Date, nullable=False),
    *_tenant_stats_columns(),
    PrimaryKeyConstraint("tenant_id", "day", *TENANT_STATS_DIMENSIONS, name="tenant_stats_pkey"),
)

# The same counters per ISO week (`week` is its Monday, UTC): a message counts in the week of
# its day of sending. Kept in the same transactions as tenant_stats, so a wide range is read
# from its whole weeks (a seventh of the rows) plus its edge days.
tenant_stats_weekly = Table(
    "tenant_stats_weekly",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("week", Date, nullable=False),
    *_tenant_stats_columns(),
    PrimaryKeyConstraint("tenant_id", "week", *TENANT_STATS_DIMENSIONS, name="tenant_stats_weekly_pkey"),
    CheckConstraint("extract(isodow FROM week) = 1", name="tenant_stats_weekly_week_is_monday"),
)

inbound_emails = Table(
    "inbound_emails",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("tenant_id", Text),
    Column("message_id", Text),
    Column("matched", Boolean, nullable=False),
    Column("is_auto_reply", Boolean, nullable=False),
    Column("from_email", Text, nullable=False),
    Column("to_email", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("text_body", Text, nullable=False),
    # [[name, value], ...] in received order: headers repeat (Received) and order matters.
    Column("headers", JSONB, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("dedupe_key", Text, nullable=False),
    # The HTML part made safe to show, and the first words the person wrote.
    Column("html_body", Text, nullable=False, server_default=""),
    Column("snippet", Text, nullable=False, server_default=""),
    # A person's reply: its class and whether the AI model or the rules gave it.
    Column("classification", Text),
    Column("classified_by", Text),
    # An automatic reply: the day its author says they are back.
    Column("return_date", Date),
    Column("campaign_id", Text),
    Column("step_index", Integer),
    UniqueConstraint("dedupe_key", name="inbound_emails_dedupe_key_key"),
    Index("inbound_emails_tenant_message_idx", "tenant_id", "message_id"),
    Index("inbound_emails_tenant_id_idx", "tenant_id", "id"),
    Index("inbound_emails_tenant_campaign_idx", "tenant_id", "campaign_id", "id"),
    Index("inbound_emails_unmatched_received_idx", "received_at", postgresql_where=text("NOT matched")),
    Index("inbound_emails_received_idx", "received_at"),
)

# Every AI call the events service makes (reply classification), as the planner audits strategies.
ai_generations = Table(
    "ai_generations",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("inbound_id", BigInteger),
    Column("purpose", Text, nullable=False),
    *ai_call_columns(),
    Index("ai_generations_tenant_created_idx", "tenant_id", "created_at"),
)

outbox = outbox_table(metadata)
