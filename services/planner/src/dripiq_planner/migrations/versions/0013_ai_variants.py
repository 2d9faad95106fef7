"""A/B variants in AI-written campaigns: how many versions the strategist writes, and of what

Revision ID: 0013
Revises: 0012
Create Date: 2027-03-08 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Constant defaults: PostgreSQL 11+ adds them without rewriting the table.
    op.add_column(
        "tenant_settings",
        sa.Column("ai_variants", sa.Integer(), nullable=False, server_default="0"),
        schema="planner",
    )
    op.add_column(
        "tenant_settings",
        sa.Column("ai_variant_focus", sa.Text(), nullable=False, server_default="both"),
        schema="planner",
    )
    op.create_check_constraint(
        "tenant_settings_ai_variants_check",
        "tenant_settings",
        "ai_variants IN (0, 2, 3) AND ai_variant_focus IN ('subject', 'content', 'both')",
        schema="planner",
    )


def downgrade() -> None:
    op.drop_constraint("tenant_settings_ai_variants_check", "tenant_settings", schema="planner")
    op.drop_column("tenant_settings", "ai_variant_focus", schema="planner")
    op.drop_column("tenant_settings", "ai_variants", schema="planner")
