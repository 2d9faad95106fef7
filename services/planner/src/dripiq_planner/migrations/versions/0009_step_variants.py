"""A/B variants of a step's copy, and the variant each contact got

Revision ID: 0009
Revises: 0008
Create Date: 2027-01-25 09:00:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Constant defaults: PostgreSQL 11+ adds these columns without rewriting the table.
    op.add_column(
        "campaign_steps",
        sa.Column("variants", postgresql.JSONB(astext_type=sa.Text()), server_default="[]", nullable=False),
        schema="planner",
    )
    op.add_column(
        "campaign_steps", sa.Column("variant", sa.Text(), server_default="", nullable=False), schema="planner"
    )


def downgrade() -> None:
    op.drop_column("campaign_steps", "variant", schema="planner")
    op.drop_column("campaign_steps", "variants", schema="planner")
