"""every inbound mail by age, for its retention (matched mail included)

Revision ID: 0010
Revises: 0009
Create Date: 2027-01-12 09:00:00
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("inbound_emails_received_idx", "inbound_emails", ["received_at"], schema="events")


def downgrade() -> None:
    op.drop_index("inbound_emails_received_idx", table_name="inbound_emails", schema="events")
