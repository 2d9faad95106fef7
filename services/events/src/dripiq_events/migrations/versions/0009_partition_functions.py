"""monthly partitions made and dropped through functions of the schema's owner, so the events
service runs as a role without DDL rights (dripiq_common.db_roles)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 08:20:00
"""

from alembic import op

from dripiq_events.models import SCHEMA, message_events

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_NAME = f"^{message_events.name}_[0-9]{{4}}_[0-9]{{2}}$"


def upgrade() -> None:
    # SECURITY DEFINER: they run with the owner's rights; a fixed search_path and a checked
    # name keep a caller from making them do anything but these two things.
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION "{SCHEMA}".create_month_partition(p_name text, p_from timestamptz, p_to timestamptz)
        RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
        BEGIN
          IF p_name !~ '{_NAME}' THEN
            RAISE EXCEPTION 'not a monthly partition name: %', p_name;
          END IF;
          EXECUTE format('CREATE TABLE IF NOT EXISTS "{SCHEMA}".%I PARTITION OF "{SCHEMA}"."{message_events.name}" '
                         'FOR VALUES FROM (%L) TO (%L)', p_name, p_from, p_to);
        END $$
        """
    )
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION "{SCHEMA}".drop_month_partition(p_name text)
        RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
        BEGIN
          IF p_name !~ '{_NAME}' THEN
            RAISE EXCEPTION 'not a monthly partition name: %', p_name;
          END IF;
          EXECUTE format('DROP TABLE IF EXISTS "{SCHEMA}".%I', p_name);
        END $$
        """
    )
    for function in ("create_month_partition(text, timestamptz, timestamptz)", "drop_month_partition(text)"):
        op.execute(f'REVOKE ALL ON FUNCTION "{SCHEMA}".{function} FROM PUBLIC')


def downgrade() -> None:
    op.execute(f'DROP FUNCTION IF EXISTS "{SCHEMA}".drop_month_partition(text)')
    op.execute(f'DROP FUNCTION IF EXISTS "{SCHEMA}".create_month_partition(text, timestamptz, timestamptz)')
