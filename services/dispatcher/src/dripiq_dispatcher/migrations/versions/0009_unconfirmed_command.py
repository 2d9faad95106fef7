"""keep a send command only while its message is unknown, instead of more columns on every row

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 05:25:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("unconfirmed_command", sa.LargeBinary(), nullable=True), schema="dispatcher")
    for name in ("send_window", "thread_message_ids", "categories", "postal_address"):
        op.drop_column("messages", name, schema="dispatcher")


def downgrade() -> None:
    op.add_column(
        "messages", sa.Column("postal_address", sa.Text(), nullable=False, server_default=""), schema="dispatcher"
    )
    for name in ("categories", "thread_message_ids"):
        op.add_column(
            "messages",
            sa.Column(name, postgresql.JSONB(), nullable=False, server_default="[]"),
            schema="dispatcher",
        )
    op.add_column("messages", sa.Column("send_window", postgresql.JSONB(), nullable=True), schema="dispatcher")
    op.drop_column("messages", "unconfirmed_command", schema="dispatcher")
