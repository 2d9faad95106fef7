"""rules checked

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 12:30:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, no default: a catalog change only, however large the table. Existing rows keep
    # NULL, so the firer checks each of them before publishing, as it did every row before.
    op.add_column('timers', sa.Column('rules_checked', sa.SmallInteger(), nullable=True), schema='scheduler')


def downgrade() -> None:
    op.drop_column('timers', 'rules_checked', schema='scheduler')
