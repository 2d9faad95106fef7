"""a campaign's messages sent as an A/B variant, found by tenant and campaign (GetStepFunnel)

Revision ID: 0012
Revises: 0011
Create Date: 2027-01-25 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Partial: only messages sent as a variant pay for it, and no row of before has one.
    op.create_index(
        "outbound_messages_variant_campaign_idx",
        "outbound_messages",
        ["tenant_id", "campaign_id"],
        schema="events",
        postgresql_where=sa.text("variant <> ''"),
    )


def downgrade() -> None:
    op.drop_index("outbound_messages_variant_campaign_idx", table_name="outbound_messages", schema="events")
