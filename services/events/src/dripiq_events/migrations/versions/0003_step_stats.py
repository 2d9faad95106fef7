"""step stats rollups

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 06:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "step_stats",
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("campaign_id", sa.Text(), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("metric", sa.Text(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "campaign_id", "step_index", "metric", name="step_stats_pkey"),
        schema="events",
    )
    op.add_column(
        "outbound_messages", sa.Column("seen", sa.Integer(), server_default="0", nullable=False), schema="events"
    )


def downgrade() -> None:
    op.drop_column("outbound_messages", "seen", schema="events")
    op.drop_table("step_stats", schema="events")
