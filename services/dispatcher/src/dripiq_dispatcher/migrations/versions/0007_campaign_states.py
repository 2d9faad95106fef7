"""stop means stop: the dispatcher's copy of each stopped campaign's status, and withheld messages

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 05:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_OLD_STATUSES = "'queued', 'sending', 'sent', 'failed', 'suppressed', 'unknown', 'task_open', 'task_done'"


def upgrade() -> None:
    op.create_table(
        "campaign_states",
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("campaign_id", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "campaign_id", name="campaign_states_pkey"),
        schema="dispatcher",
    )
    # NOT VALID then VALIDATE: the new check does not hold an exclusive lock while it scans.
    op.drop_constraint("messages_status_check", "messages", schema="dispatcher", type_="check")
    op.execute(
        "ALTER TABLE dispatcher.messages ADD CONSTRAINT messages_status_check "
        f"CHECK (status IN ({_OLD_STATUSES}, 'withheld')) NOT VALID"
    )
    op.execute("ALTER TABLE dispatcher.messages VALIDATE CONSTRAINT messages_status_check")


def downgrade() -> None:
    op.execute("UPDATE dispatcher.messages SET status = 'queued' WHERE status = 'withheld'")
    op.drop_constraint("messages_status_check", "messages", schema="dispatcher", type_="check")
    op.execute(
        f"ALTER TABLE dispatcher.messages ADD CONSTRAINT messages_status_check CHECK (status IN ({_OLD_STATUSES}))"
    )
    op.drop_table("campaign_states", schema="dispatcher")
