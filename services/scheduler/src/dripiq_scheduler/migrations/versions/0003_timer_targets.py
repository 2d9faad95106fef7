"""timer targets

Revision ID: 0003
Revises: 0002
Create Date: 2027-01-12 09:00:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

BATCH = 10_000


def upgrade() -> None:
    # Nullable, no default: a catalog change only, however large the table. NOT VALID: the
    # check holds for new rows at once without scanning the old ones under a lock.
    op.add_column('timers', sa.Column('target', sa.Text(), nullable=True), schema='scheduler')
    op.execute(
        "ALTER TABLE scheduler.timers ADD CONSTRAINT timers_target_check "
        "CHECK (target IN ('planner_timer', 'dispatcher_send')) NOT VALID"
    )
    # Existing rows get the target whose subject for their tenant is exactly theirs; any other
    # row (a hand-made subject) keeps NULL, and the firer dead-letters and cancels it when due.
    # In id ranges, each its own transaction, so the hot table is never locked for long.
    with op.get_context().autocommit_block():
        conn = op.get_bind()
        after = 0
        while True:
            upto = conn.execute(
                sa.text(
                    "SELECT max(id) FROM (SELECT id FROM scheduler.timers WHERE id > :after ORDER BY id LIMIT :batch) s"
                ),
                {"after": after, "batch": BATCH},
            ).scalar()
            if upto is None:
                break
            conn.execute(
                sa.text(
                    """
                    UPDATE scheduler.timers
                    SET target = CASE
                        WHEN target_subject = 'dripiq.planner.timer.' || tenant_id THEN 'planner_timer'
                        ELSE 'dispatcher_send' END
                    WHERE id > :after AND id <= :upto AND target IS NULL
                      AND target_subject IN ('dripiq.planner.timer.' || tenant_id, 'dripiq.dispatcher.send.' || tenant_id)
                    """
                ),
                {"after": after, "upto": upto},
            )
            after = upto
        conn.execute(sa.text("ALTER TABLE scheduler.timers VALIDATE CONSTRAINT timers_target_check"))


def downgrade() -> None:
    op.drop_constraint('timers_target_check', 'timers', schema='scheduler', type_='check')
    op.drop_column('timers', 'target', schema='scheduler')
