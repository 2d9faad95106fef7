"""A step's own send window, overriding its campaign's

Revision ID: 0010
Revises: 0009
Create Date: 2027-02-01 09:00:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable without a default: PostgreSQL adds it without rewriting the table.
    op.add_column(
        "campaign_steps",
        sa.Column("send_window_json", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        schema="planner",
    )


def downgrade() -> None:
    op.drop_column("campaign_steps", "send_window_json", schema="planner")
