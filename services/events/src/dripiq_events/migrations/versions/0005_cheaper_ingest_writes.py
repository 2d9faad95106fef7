"""Cheaper writes for every webhook delivery

- `outbox.payload` is stored uncompressed (STORAGE EXTERNAL). An engagement batch is tens of
  kilobytes of protobuf that lives for milliseconds, until the relay publishes and deletes it;
  compressing it (pglz) cost PostgreSQL about three times the rest of the outbox's work.
- `message_events.raw_event` becomes `json`: the provider's event is kept as text that has been
  checked to be JSON, not converted to jsonb's binary form on every insert. Nothing queries
  inside it; an operator's `raw_event->>'field'` works on json as well. Changing the type
  rewrites the events table (every partition), so it is done before the table is large.
- `outbound_messages.seen_added` holds the bits the latest change of `seen` added, so one
  UPDATE can both set the bits and say which were new (RETURNING sees only new values before
  PostgreSQL 18), instead of a locking read followed by an update.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE events.outbox ALTER COLUMN payload SET STORAGE EXTERNAL")
    op.execute("ALTER TABLE events.message_events ALTER COLUMN raw_event TYPE json USING raw_event::json")
    op.add_column(
        "outbound_messages",
        sa.Column("seen_added", sa.Integer(), server_default="0", nullable=False),
        schema="events",
    )


def downgrade() -> None:
    op.drop_column("outbound_messages", "seen_added", schema="events")
    op.execute("ALTER TABLE events.message_events ALTER COLUMN raw_event TYPE jsonb USING raw_event::jsonb")
    op.execute("ALTER TABLE events.outbox ALTER COLUMN payload SET STORAGE EXTENDED")
