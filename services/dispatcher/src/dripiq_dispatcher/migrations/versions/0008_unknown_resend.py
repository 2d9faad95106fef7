"""an unknown send resolves in minutes: what a send command carried, kept to send it again; the
newest delivery event SendGrid has reported

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 05:30:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Constant defaults: added without rewriting the table.
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
    op.create_table(
        "provider_watermark",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("newest_event_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.CheckConstraint("id = 1", name="provider_watermark_one_row"),
        schema="dispatcher",
    )


def downgrade() -> None:
    op.drop_table("provider_watermark", schema="dispatcher")
    for name in ("send_window", "thread_message_ids", "categories", "postal_address"):
        op.drop_column("messages", name, schema="dispatcher")
