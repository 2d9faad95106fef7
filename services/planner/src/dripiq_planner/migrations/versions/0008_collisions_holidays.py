"""collision control and holidays: what a reply stops, the enrolment cool-down, holiday calendars, a step's placement note

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-20 09:00:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Constant defaults: PostgreSQL 11+ adds these columns without rewriting the table.
    op.add_column(
        "tenant_settings",
        sa.Column("reply_stops", sa.Text(), server_default="campaign", nullable=False),
        schema="planner",
    )
    op.create_check_constraint(
        "tenant_settings_reply_stops_check",
        "tenant_settings",
        "reply_stops IN ('campaign', 'contact', 'company')",
        schema="planner",
    )
    op.add_column(
        "tenant_settings",
        sa.Column("enrolment_cooldown_seconds", sa.BigInteger(), server_default="0", nullable=False),
        schema="planner",
    )
    op.add_column(
        "tenant_settings",
        sa.Column("holiday_calendars", postgresql.JSONB(astext_type=sa.Text()), server_default="[]", nullable=False),
        schema="planner",
    )
    op.add_column(
        "campaign_steps",
        sa.Column("placement_note", sa.Text(), server_default="", nullable=False),
        schema="planner",
    )


def downgrade() -> None:
    op.drop_column("campaign_steps", "placement_note", schema="planner")
    op.drop_constraint("tenant_settings_reply_stops_check", "tenant_settings", schema="planner")
    for name in ("holiday_calendars", "enrolment_cooldown_seconds", "reply_stops"):
        op.drop_column("tenant_settings", name, schema="planner")
