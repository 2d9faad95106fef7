"""campaigns can wait as drafts for a person's approval, and who changed a campaign by hand is kept

Revision ID: 0007
Revises: 0006
Create Date: 2027-01-10 09:00:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_TABLE = "planner.contact_campaigns"


def upgrade() -> None:
    op.add_column(
        "tenant_settings",
        sa.Column("require_approval", sa.Boolean(), server_default=sa.false(), nullable=False),
        schema="planner",
    )
    op.drop_constraint("contact_campaigns_status_check", "contact_campaigns", schema="planner", type_="check")
    # NOT VALID then VALIDATE: the scan does not hold the table's exclusive lock.
    op.execute(
        f"ALTER TABLE {_TABLE} ADD CONSTRAINT contact_campaigns_status_check "
        "CHECK (status IN ('planning', 'active', 'paused', 'needs_attention', 'completed', 'canceled', 'draft')) NOT VALID"
    )
    op.execute(f"ALTER TABLE {_TABLE} VALIDATE CONSTRAINT contact_campaigns_status_check")
    # A draft holds its contact and product like a running campaign: approving it must not
    # meet a second one.
    op.execute("DROP INDEX planner.contact_campaigns_one_running_idx")
    op.execute(
        "CREATE UNIQUE INDEX contact_campaigns_one_running_idx ON planner.contact_campaigns "
        "(tenant_id, contact_id, product_id) WHERE status IN ('planning', 'active', 'paused', 'needs_attention', 'draft')"
    )
    op.execute(
        "CREATE INDEX contact_campaigns_drafts_idx ON planner.contact_campaigns "
        "(tenant_id, created_at, id) WHERE status = 'draft'"
    )
    op.create_table(
        "campaign_changes",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("campaign_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=True),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column(
            "fields_json", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["planner.contact_campaigns.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        schema="planner",
    )
    op.create_index(
        "campaign_changes_campaign_idx",
        "campaign_changes",
        ["tenant_id", "campaign_id", "id"],
        schema="planner",
    )


def downgrade() -> None:
    op.drop_table("campaign_changes", schema="planner")
    op.execute("DROP INDEX planner.contact_campaigns_drafts_idx")
    # A draft was never approved: nothing of it went out, so it ends as canceled.
    op.execute(
        f"UPDATE {_TABLE} SET status = 'canceled', cancel_reason = 'draft dropped by downgrade', "
        "ended_at = now() WHERE status = 'draft'"
    )
    op.execute("DROP INDEX planner.contact_campaigns_one_running_idx")
    op.execute(
        "CREATE UNIQUE INDEX contact_campaigns_one_running_idx ON planner.contact_campaigns "
        "(tenant_id, contact_id, product_id) WHERE status IN ('planning', 'active', 'paused', 'needs_attention')"
    )
    op.drop_constraint("contact_campaigns_status_check", "contact_campaigns", schema="planner", type_="check")
    op.execute(
        f"ALTER TABLE {_TABLE} ADD CONSTRAINT contact_campaigns_status_check "
        "CHECK (status IN ('planning', 'active', 'paused', 'needs_attention', 'completed', 'canceled'))"
    )
    op.drop_column("tenant_settings", "require_approval", schema="planner")
