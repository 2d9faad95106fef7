"""a sender identity keeps why it stopped being verified (SendGrid refused its mail)

Revision ID: 0013
Revises: 0012
Create Date: 2027-02-01 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A constant default: the column is added without rewriting the table.
    op.add_column(
        "sender_identities",
        sa.Column("unverified_reason", sa.Text(), server_default="", nullable=False),
        schema="dispatcher",
    )


def downgrade() -> None:
    op.drop_column("sender_identities", "unverified_reason", schema="dispatcher")
