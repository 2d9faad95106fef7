"""replies people can read: HTML, snippet, classification, return date, the step they answer;
the audit of AI reply classifications

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 19:30:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_TEXT_COLUMNS = ("html_body", "snippet")


def upgrade() -> None:
    for name in _TEXT_COLUMNS:
        op.add_column("inbound_emails", sa.Column(name, sa.Text(), nullable=False, server_default=""), schema="events")
    op.add_column("inbound_emails", sa.Column("classification", sa.Text(), nullable=True), schema="events")
    op.add_column("inbound_emails", sa.Column("classified_by", sa.Text(), nullable=True), schema="events")
    op.add_column("inbound_emails", sa.Column("return_date", sa.Date(), nullable=True), schema="events")
    op.add_column("inbound_emails", sa.Column("campaign_id", sa.Text(), nullable=True), schema="events")
    op.add_column("inbound_emails", sa.Column("step_index", sa.Integer(), nullable=True), schema="events")
    # A tenant's replies newest first, all or one campaign's; unmatched ones by age for retention.
    op.create_index("inbound_emails_tenant_id_idx", "inbound_emails", ["tenant_id", "id"], schema="events")
    op.create_index(
        "inbound_emails_tenant_campaign_idx", "inbound_emails", ["tenant_id", "campaign_id", "id"], schema="events"
    )
    op.create_index(
        "inbound_emails_unmatched_received_idx",
        "inbound_emails",
        ["received_at"],
        schema="events",
        postgresql_where=sa.text("NOT matched"),
    )
    op.create_table(
        "ai_generations",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("inbound_id", sa.BigInteger(), nullable=True),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), server_default="", nullable=False),
        sa.Column("prompt_version", sa.Text(), server_default="", nullable=False),
        sa.Column("input_json", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("output_json", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), server_default="", nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), server_default="0", nullable=False),
        sa.Column("completion_tokens", sa.Integer(), server_default="0", nullable=False),
        sa.Column("duration_ms", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        schema="events",
    )
    op.create_index("ai_generations_tenant_created_idx", "ai_generations", ["tenant_id", "created_at"], schema="events")


def downgrade() -> None:
    op.drop_index("ai_generations_tenant_created_idx", table_name="ai_generations", schema="events")
    op.drop_table("ai_generations", schema="events")
    op.drop_index("inbound_emails_unmatched_received_idx", table_name="inbound_emails", schema="events")
    op.drop_index("inbound_emails_tenant_campaign_idx", table_name="inbound_emails", schema="events")
    op.drop_index("inbound_emails_tenant_id_idx", table_name="inbound_emails", schema="events")
    for name in ("step_index", "campaign_id", "return_date", "classified_by", "classification", *_TEXT_COLUMNS):
        op.drop_column("inbound_emails", name, schema="events")
