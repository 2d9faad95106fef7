"""message_events found by time: BRIN indexes on occurred_at and id

A tenant's events in a time range (ListMessageEvents without a message or campaign) are read
through the block ranges whose times overlap the range, and paged by id through the block
ranges past the last id seen. Events are stored in roughly the order they happen, so both
summaries are tight; a BRIN index costs almost nothing per insert (measured: within the noise
of a 1,000-event delivery), where a B-tree on (tenant_id, id) cost up to 2 ms more.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 12:00:00
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "message_events_occurred_at_brin", "message_events", ["occurred_at"], schema="events", postgresql_using="brin"
    )
    op.create_index("message_events_id_brin", "message_events", ["id"], schema="events", postgresql_using="brin")


def downgrade() -> None:
    op.drop_index("message_events_id_brin", table_name="message_events", schema="events")
    op.drop_index("message_events_occurred_at_brin", table_name="message_events", schema="events")
