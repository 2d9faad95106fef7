"""the tenant's analytics across campaigns: sent messages keep their dimensions, and
tenant_stats counts per day and dimension

Revision ID: 0011
Revises: 0010
Create Date: 2027-01-20 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_DIMENSIONS = ("product_id", "sender_identity_id", "strategist", "variant", "channel")
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
    # Constant defaults and a nullable day: the columns are added without rewriting the table.
    # Messages kept before stay out of the tenant's analytics (stats_day NULL): their sends were
    # never counted there, so their later opens would make rates past 100%.
    for name in _DIMENSIONS:
        op.add_column(
            "outbound_messages", sa.Column(name, sa.Text(), server_default="", nullable=False), schema="events"
        )
    op.add_column("outbound_messages", sa.Column("stats_day", sa.Date(), nullable=True), schema="events")
    op.create_table(
        "tenant_stats",
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("product_id", sa.Text(), nullable=False),
        sa.Column("sender_identity_id", sa.Text(), nullable=False),
        sa.Column("strategist", sa.Text(), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("variant", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        *(sa.Column(metric, sa.BigInteger(), server_default="0", nullable=False) for metric in _METRICS),
        sa.PrimaryKeyConstraint(
            "tenant_id",
            "day",
            "product_id",
            "sender_identity_id",
            "strategist",
            "step_index",
            "variant",
            "channel",
            name="tenant_stats_pkey",
        ),
        schema="events",
    )


def downgrade() -> None:
    op.drop_table("tenant_stats", schema="events")
    op.drop_column("outbound_messages", "stats_day", schema="events")
    for name in reversed(_DIMENSIONS):
        op.drop_column("outbound_messages", name, schema="events")
