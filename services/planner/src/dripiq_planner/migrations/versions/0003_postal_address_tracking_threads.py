"""tenants' postal address, tracking switches and auto-reply pause; threaded follow-up steps

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 19:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Constant defaults: the columns are added without rewriting either table.
    op.add_column(
        "tenant_settings", sa.Column("postal_address", sa.Text(), nullable=False, server_default=""), schema="planner"
    )
    for name in ("open_tracking", "click_tracking"):
        op.add_column(
            "tenant_settings",
            sa.Column(name, sa.Boolean(), nullable=False, server_default=sa.true()),
            schema="planner",
        )
    op.add_column(
        "tenant_settings",
        sa.Column("auto_reply_pause_days", sa.Integer(), nullable=False, server_default="7"),
        schema="planner",
    )
    op.add_column(
        "campaign_steps", sa.Column("thread", sa.Boolean(), nullable=False, server_default=sa.false()), schema="planner"
    )


def downgrade() -> None:
    op.drop_column("campaign_steps", "thread", schema="planner")
    for name in ("auto_reply_pause_days", "click_tracking", "open_tracking", "postal_address"):
        op.drop_column("tenant_settings", name, schema="planner")
