"""sender identities are re-checked at SendGrid (last_checked_at), and the messages that failed
because their identity was not verified are held until it is verified again (identity_holds)

Revision ID: 0014
Revises: 0013
Create Date: 2027-02-08 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "sender_identities",
        sa.Column("last_checked_at", sa.DateTime(timezone=True), nullable=True),
        schema="dispatcher",
    )
    # Verified identities were last asked when they were verified: the re-check starts there
    # instead of asking SendGrid about every identity in its first passes.
    op.execute("UPDATE dispatcher.sender_identities SET last_checked_at = verified_at WHERE verified")
    op.create_index(
        "sender_identities_recheck_idx",
        "sender_identities",
        ["last_checked_at"],
        schema="dispatcher",
        postgresql_where=sa.text("verified OR unverified_reason <> ''"),
    )
    op.create_table(
        "identity_holds",
        sa.Column("message_id", sa.Text(), primary_key=True),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("sender_identity_id", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema="dispatcher",
    )
    op.create_index(
        "identity_holds_identity_idx",
        "identity_holds",
        ["tenant_id", "sender_identity_id", "created_at"],
        schema="dispatcher",
    )


def downgrade() -> None:
    op.drop_table("identity_holds", schema="dispatcher")
    op.drop_index("sender_identities_recheck_idx", table_name="sender_identities", schema="dispatcher")
    op.drop_column("sender_identities", "last_checked_at", schema="dispatcher")
