"""replies forwarded to a person: forward_to on identities, a tenant catch-all, one row per forward

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A constant default adds the column without rewriting the table.
    op.add_column(
        "sender_identities",
        sa.Column("forward_to", sa.Text(), server_default="", nullable=False),
        schema="dispatcher",
    )
    op.create_table(
        "reply_forwarding",
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("catch_all", sa.Text(), server_default="", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id"),
        schema="dispatcher",
    )
    op.create_table(
        "reply_forwards",
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("inbound_id", sa.Text(), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default="queued", nullable=False),
        sa.Column("sender_identity_id", sa.Text(), nullable=True),
        sa.Column("from_email", sa.Text(), nullable=True),
        sa.Column("to_email", sa.Text(), nullable=True),
        sa.Column("provider", sa.Text(), nullable=True),
        sa.Column("provider_message_id", sa.Text(), nullable=True),
        sa.Column("attempt_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'sending', 'sent', 'failed', 'unknown', 'unroutable')",
            name="reply_forwards_status_check",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "inbound_id", name="reply_forwards_pkey"),
        schema="dispatcher",
    )


def downgrade() -> None:
    op.drop_table("reply_forwards", schema="dispatcher")
    op.drop_table("reply_forwarding", schema="dispatcher")
    op.drop_column("sender_identities", "forward_to", schema="dispatcher")
