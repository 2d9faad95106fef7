"""Tables of the `scheduler` schema."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)

from dripiq_common.outbox import outbox_table


class TimerStatus(StrEnum):
    """A timer row's `status` (the table's check constraint lists the same three)."""

    ACTIVE = "active"
    FIRED = "fired"
    CANCELED = "canceled"


SCHEMA = "scheduler"
metadata = MetaData(schema=SCHEMA)

# The seed's message_timers, generalized: key is "<message_id>:<trigger_type>" for engagement
# timeouts and "<campaign_id>:step" for step sends; status active|fired|canceled.
timers = Table(
    "timers",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("group_key", Text, nullable=False, server_default=""),
    Column("kind", Text, nullable=False),
    Column("status", Text, nullable=False, server_default="active"),
    Column("scheduled_for", DateTime(timezone=True), nullable=False),
    # Where the payload goes (domain.Target); the subject is built from it and the tenant.
    # NULL only for a row stored before targets whose subject is no target's: it never fires.
    Column("target", Text),
    Column("target_subject", Text, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("version", Integer, nullable=False, server_default="1"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("fired_at", DateTime(timezone=True)),
    Column("canceled_at", DateTime(timezone=True)),
    # Why the scheduler canceled a timer itself (the overdue policy); NULL for callers' cancels.
    Column("cancel_reason", Text),
    # The domain.RULES_VERSION the row's content passed when the scheduler stored it. NULL (a row
    # of an older version, or written by hand) or another version: the firer checks it first.
    Column("rules_checked", SmallInteger),
    UniqueConstraint("tenant_id", "key", name="timers_tenant_key_key"),
    CheckConstraint("status IN ('active', 'fired', 'canceled')", name="timers_status_check"),
    CheckConstraint("target IN ('planner_timer', 'dispatcher_send')", name="timers_target_check"),
    Index("timers_due_idx", "scheduled_for", postgresql_where=text("status = 'active'")),
    Index("timers_group_idx", "tenant_id", "group_key", postgresql_where=text("status = 'active'")),
    # ListTimers: a tenant's timers in (scheduled_for, id) order, whatever their status.
    Index("timers_tenant_schedule_idx", "tenant_id", "scheduled_for", "id"),
    # The pruner: finished timers by age, without touching the active ones.
    Index("timers_done_idx", "updated_at", postgresql_where=text("status <> 'active'")),
)

outbox = outbox_table(metadata)
