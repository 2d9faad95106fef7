"""what AI-written copy may name (the tenant's allow-list) and the tenant's daily AI budget

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-12 09:00:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Constant defaults: PostgreSQL 11+ adds these columns without rewriting the table.
    for name in ("allowed_domains", "allowed_urls", "allowed_phone_numbers"):
        op.add_column(
            "tenant_settings",
            sa.Column(name, postgresql.JSONB(astext_type=sa.Text()), server_default="[]", nullable=False),
            schema="planner",
        )
    op.add_column(
        "tenant_settings",
        sa.Column("ai_daily_call_budget", sa.Integer(), server_default="0", nullable=False),
        schema="planner",
    )
    op.add_column(
        "tenant_settings",
        sa.Column("ai_daily_token_budget", sa.BigInteger(), server_default="0", nullable=False),
        schema="planner",
    )
    op.create_table(
        "ai_budget_usage",
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("calls", sa.Integer(), server_default="0", nullable=False),
        sa.Column("tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "day"),
        schema="planner",
    )


def downgrade() -> None:
    op.drop_table("ai_budget_usage", schema="planner")
    for name in (
        "ai_daily_token_budget",
        "ai_daily_call_budget",
        "allowed_phone_numbers",
        "allowed_urls",
        "allowed_domains",
    ):
        op.drop_column("tenant_settings", name, schema="planner")
