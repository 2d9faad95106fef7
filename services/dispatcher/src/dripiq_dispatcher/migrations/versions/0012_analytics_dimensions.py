"""messages keep what their send command is counted under in the tenant's analytics

Revision ID: 0012
Revises: 0011
Create Date: 2027-01-20 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_COLUMNS = ("product_id", "strategist", "variant")


def upgrade() -> None:
    # Constant defaults: the columns are added without rewriting the table.
    for name in _COLUMNS:
        op.add_column("messages", sa.Column(name, sa.Text(), server_default="", nullable=False), schema="dispatcher")


def downgrade() -> None:
    for name in reversed(_COLUMNS):
        op.drop_column("messages", name, schema="dispatcher")
