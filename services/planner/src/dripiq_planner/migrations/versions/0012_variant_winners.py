"""A/B variant winners: the tenant's setting, and each experiment's winner, picked once

Revision ID: 0012
Revises: 0010
Create Date: 2027-03-01 09:00:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable without a default: PostgreSQL adds it without rewriting the table.
    op.add_column(
        "tenant_settings",
        sa.Column("variant_winner_json", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        schema="planner",
    )
    op.create_table(
        "variant_winners",
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("product_id", sa.Text(), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("variant", sa.Text(), nullable=False),
        sa.Column("metric", sa.Text(), nullable=False),
        sa.Column("rate", sa.Float(), nullable=False),
        sa.Column("runner_up", sa.Text(), nullable=False),
        sa.Column("runner_up_rate", sa.Float(), nullable=False),
        sa.Column("sends_each", sa.BigInteger(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "product_id", "step_index", name="variant_winners_pkey"),
        sa.CheckConstraint("metric IN ('reply', 'click')", name="variant_winners_metric_check"),
        schema="planner",
    )
    op.create_index(
        "variant_winners_tenant_decided_idx", "variant_winners", ["tenant_id", "decided_at"], schema="planner"
    )


def downgrade() -> None:
    op.drop_index("variant_winners_tenant_decided_idx", table_name="variant_winners", schema="planner")
    op.drop_table("variant_winners", schema="planner")
    op.drop_column("tenant_settings", "variant_winner_json", schema="planner")
