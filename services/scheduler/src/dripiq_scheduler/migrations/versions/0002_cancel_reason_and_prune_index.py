"""cancel reason and prune index

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 03:13:53.361124
"""

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, no default: a catalog change only, however large the table.
    op.add_column('timers', sa.Column('cancel_reason', sa.Text(), nullable=True), schema='scheduler')
    # The timers table is hot (every schedule, cancel and fire writes it): build the indexes
    # CONCURRENTLY, outside the migration's transaction, so neither blocks writes while it
    # builds. If a build is interrupted, drop the INVALID index it leaves and run this again.
    with op.get_context().autocommit_block():
        # The pruner: finished timers by age.
        op.create_index(
            'timers_done_idx',
            'timers',
            ['updated_at'],
            unique=False,
            schema='scheduler',
            postgresql_where=sa.text("status <> 'active'"),
            postgresql_concurrently=True,
        )
        # ListTimers: a tenant's timers in (scheduled_for, id) order.
        op.create_index(
            'timers_tenant_schedule_idx',
            'timers',
            ['tenant_id', 'scheduled_for', 'id'],
            unique=False,
            schema='scheduler',
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index('timers_tenant_schedule_idx', table_name='timers', schema='scheduler', postgresql_concurrently=True)
        op.drop_index('timers_done_idx', table_name='timers', schema='scheduler', postgresql_concurrently=True)
    op.drop_column('timers', 'cancel_reason', schema='scheduler')
