"""index message_events by campaign, for campaign timelines

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 02:40:00
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # On a partitioned table this creates the index on every partition, present and future.
    op.create_index(
        "message_events_tenant_campaign_idx", "message_events", ["tenant_id", "campaign_id"], schema="events"
    )


def downgrade() -> None:
    op.drop_index("message_events_tenant_campaign_idx", table_name="message_events", schema="events")
