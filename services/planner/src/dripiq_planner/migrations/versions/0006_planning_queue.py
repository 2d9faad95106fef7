"""planning as work: the 'planning' status, why the template planned, the planning backlog index
and the tenant's planning concurrency

Revision ID: 0006
Revises: 0005
Create Date: 2027-01-05 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_STATUSES_BEFORE = "'active', 'paused', 'needs_attention', 'completed', 'canceled'"
_STATUSES = "'planning', 'active', 'paused', 'needs_attention', 'completed', 'canceled'"
_RUNNING_BEFORE = "'active', 'paused', 'needs_attention'"
_RUNNING = "'planning', 'active', 'paused', 'needs_attention'"


def _running_index(statuses: str) -> None:
    op.drop_index("contact_campaigns_one_running_idx", table_name="contact_campaigns", schema="planner")
    op.create_index(
        "contact_campaigns_one_running_idx",
        "contact_campaigns",
        ["tenant_id", "contact_id", "product_id"],
        unique=True,
        schema="planner",
        postgresql_where=sa.text(f"status IN ({statuses})"),
    )


def _status_check(statuses: str) -> None:
    op.drop_constraint("contact_campaigns_status_check", "contact_campaigns", schema="planner", type_="check")
    op.create_check_constraint(
        "contact_campaigns_status_check", "contact_campaigns", f"status IN ({statuses})", schema="planner"
    )


def upgrade() -> None:
    op.add_column(
        "contact_campaigns",
        sa.Column("strategist_reason", sa.Text(), server_default="", nullable=False),
        schema="planner",
    )
    op.add_column("contact_campaigns", sa.Column("planned_at", sa.DateTime(timezone=True)), schema="planner")
    op.add_column("contact_campaigns", sa.Column("planning_until", sa.DateTime(timezone=True)), schema="planner")
    op.add_column(
        "tenant_settings",
        sa.Column("planning_concurrency", sa.Integer(), server_default="0", nullable=False),
        schema="planner",
    )
    _status_check(_STATUSES)
    _running_index(_RUNNING)
    op.create_index(
        "contact_campaigns_planning_idx",
        "contact_campaigns",
        ["tenant_id", "created_at"],
        schema="planner",
        postgresql_where=sa.text("status = 'planning'"),
    )


def downgrade() -> None:
    op.drop_index("contact_campaigns_planning_idx", table_name="contact_campaigns", schema="planner")
    _running_index(_RUNNING_BEFORE)
    _status_check(_STATUSES_BEFORE)
    op.drop_column("tenant_settings", "planning_concurrency", schema="planner")
    for name in ("planning_until", "planned_at", "strategist_reason"):
        op.drop_column("contact_campaigns", name, schema="planner")
