"""outbound_messages indexed by sent_at, so copies past retention are deleted in small batches

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 11:00:00
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("outbound_messages_sent_at_idx", "outbound_messages", ["sent_at"], schema="events")


def downgrade() -> None:
    op.drop_index("outbound_messages_sent_at_idx", table_name="outbound_messages", schema="events")
