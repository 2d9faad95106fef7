"""what each email asked SendGrid to track

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 19:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A constant default adds the columns without rewriting the table.
    for name in ("track_opens", "track_clicks"):
        op.add_column(
            "messages", sa.Column(name, sa.Boolean(), nullable=False, server_default=sa.true()), schema="dispatcher"
        )


def downgrade() -> None:
    for name in ("track_clicks", "track_opens"):
        op.drop_column("messages", name, schema="dispatcher")
