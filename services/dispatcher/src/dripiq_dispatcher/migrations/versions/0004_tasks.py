"""call and linkedin tasks

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 05:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_OLD = "status IN ('queued', 'sending', 'sent', 'failed', 'suppressed', 'unknown')"
_NEW = "status IN ('queued', 'sending', 'sent', 'failed', 'suppressed', 'unknown', 'task_open', 'task_done')"


def upgrade() -> None:
    op.add_column("messages", sa.Column("task_outcome", sa.Text(), nullable=True), schema="dispatcher")
    op.add_column("messages", sa.Column("task_notes", sa.Text(), nullable=True), schema="dispatcher")
    op.drop_constraint("messages_status_check", "messages", schema="dispatcher", type_="check")
    op.create_check_constraint("messages_status_check", "messages", _NEW, schema="dispatcher")


def downgrade() -> None:
    op.drop_constraint("messages_status_check", "messages", schema="dispatcher", type_="check")
    op.create_check_constraint("messages_status_check", "messages", _OLD, schema="dispatcher")
    op.drop_column("messages", "task_notes", schema="dispatcher")
    op.drop_column("messages", "task_outcome", schema="dispatcher")
