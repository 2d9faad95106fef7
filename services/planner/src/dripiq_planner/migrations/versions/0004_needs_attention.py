"""a campaign whose send failed for a reason outside the message waits for a person (needs_attention)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 05:15:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TABLE = "planner.contact_campaigns"


def upgrade() -> None:
    op.add_column(
        "contact_campaigns",
        sa.Column("attention_reason", sa.Text(), nullable=False, server_default=""),
        schema="planner",
    )
    op.drop_constraint("contact_campaigns_status_check", "contact_campaigns", schema="planner", type_="check")
    # NOT VALID then VALIDATE: the scan does not hold the table's exclusive lock.
    op.execute(
        f"ALTER TABLE {_TABLE} ADD CONSTRAINT contact_campaigns_status_check "
        "CHECK (status IN ('active', 'paused', 'needs_attention', 'completed', 'canceled')) NOT VALID"
    )
    op.execute(f"ALTER TABLE {_TABLE} VALIDATE CONSTRAINT contact_campaigns_status_check")
    # A campaign waiting for a person still runs: no second one for the same contact and product.
    op.execute("DROP INDEX planner.contact_campaigns_one_running_idx")
    op.execute(
        "CREATE UNIQUE INDEX contact_campaigns_one_running_idx ON planner.contact_campaigns "
        "(tenant_id, contact_id, product_id) WHERE status IN ('active', 'paused', 'needs_attention')"
    )


def downgrade() -> None:
    op.execute(f"UPDATE {_TABLE} SET status = 'paused' WHERE status = 'needs_attention'")
    op.execute("DROP INDEX planner.contact_campaigns_one_running_idx")
    op.execute(
        "CREATE UNIQUE INDEX contact_campaigns_one_running_idx ON planner.contact_campaigns "
        "(tenant_id, contact_id, product_id) WHERE status IN ('active', 'paused')"
    )
    op.drop_constraint("contact_campaigns_status_check", "contact_campaigns", schema="planner", type_="check")
    op.execute(
        f"ALTER TABLE {_TABLE} ADD CONSTRAINT contact_campaigns_status_check "
        "CHECK (status IN ('active', 'paused', 'completed', 'canceled'))"
    )
    op.drop_column("contact_campaigns", "attention_reason", schema="planner")
