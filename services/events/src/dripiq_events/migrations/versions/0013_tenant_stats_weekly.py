"""the tenant's analytics per ISO week: tenant_stats_weekly, the counters of tenant_stats per
tenant, week (its Monday, UTC) and dimension

Revision ID: 0013
Revises: 0012
Create Date: 2027-02-01 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_METRICS = (
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


def upgrade() -> None:
    # No backfill: tenant_stats (0011) goes out in the same release, so it holds no day whose
    # week this table lacks. docs/deploy.md ("Tenant analytics") has the one statement that
    # fills the weeks where daily rows were counted before this.
    op.create_table(
        "tenant_stats_weekly",
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("week", sa.Date(), nullable=False),
        sa.Column("product_id", sa.Text(), nullable=False),
        sa.Column("sender_identity_id", sa.Text(), nullable=False),
        sa.Column("strategist", sa.Text(), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("variant", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        *(sa.Column(metric, sa.BigInteger(), server_default="0", nullable=False) for metric in _METRICS),
        sa.PrimaryKeyConstraint(
            "tenant_id",
            "week",
            "product_id",
            "sender_identity_id",
            "strategist",
            "step_index",
            "variant",
            "channel",
            name="tenant_stats_weekly_pkey",
        ),
        sa.CheckConstraint("extract(isodow FROM week) = 1", name="tenant_stats_weekly_week_is_monday"),
        schema="events",
    )


def downgrade() -> None:
    op.drop_table("tenant_stats_weekly", schema="events")
