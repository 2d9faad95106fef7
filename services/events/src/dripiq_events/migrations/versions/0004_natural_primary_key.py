"""message_events keyed by its natural key alone

The dedupe key (provider, provider_event_id, occurred_at) becomes the primary key, and the
index on (id, occurred_at) goes: nothing looks events up by id alone (paging filters by tenant
and message or campaign first), and one index less is less work for every stored event.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 08:00:00
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("message_events_pkey", "message_events", schema="events", type_="primary")
    op.drop_constraint("message_events_provider_event_key", "message_events", schema="events", type_="unique")
    op.create_primary_key(
        "message_events_pkey", "message_events", ["provider", "provider_event_id", "occurred_at"], schema="events"
    )


def downgrade() -> None:
    op.drop_constraint("message_events_pkey", "message_events", schema="events", type_="primary")
    op.create_unique_constraint(
        "message_events_provider_event_key",
        "message_events",
        ["provider", "provider_event_id", "occurred_at"],
        schema="events",
    )
    op.create_primary_key("message_events_pkey", "message_events", ["id", "occurred_at"], schema="events")
