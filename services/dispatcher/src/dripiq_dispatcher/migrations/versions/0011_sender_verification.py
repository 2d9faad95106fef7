"""sender identities record when and how SendGrid verified them

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable and constant defaults: the columns are added without rewriting the table.
    op.add_column(
        "sender_identities",
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        schema="dispatcher",
    )
    op.add_column(
        "sender_identities",
        sa.Column("verified_by", sa.Text(), server_default="", nullable=False),
        schema="dispatcher",
    )
    # Identities marked verified before anyone asked SendGrid must be verified again: nothing
    # says their From address was ever the tenant's to send as.
    op.execute("UPDATE dispatcher.sender_identities SET verified = false WHERE verified")


def downgrade() -> None:
    op.drop_column("sender_identities", "verified_by", schema="dispatcher")
    op.drop_column("sender_identities", "verified_at", schema="dispatcher")
