"""the unconfirmed-send sweep reads the few unknown rows through a partial index

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 06:45:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Built once over the table (a scan); afterwards it holds only `unknown` rows, nearly none.
    op.create_index(
        "messages_unknown_idx",
        "messages",
        ["updated_at"],
        unique=False,
        schema="dispatcher",
        postgresql_where=sa.text("status = 'unknown'"),
    )


def downgrade() -> None:
    op.drop_index("messages_unknown_idx", table_name="messages", schema="dispatcher")
