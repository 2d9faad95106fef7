"""Tables of the `dispatcher` schema."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
    true,
)

from dripiq_common.outbox import outbox_table

SCHEMA = "dispatcher"
metadata = MetaData(schema=SCHEMA)

# One row per message id the planner asked us to send. `sending` is committed before the
# provider call, so a row found in `sending` means a call may have gone out: it is never
# repeated and the row waits as `unknown` for a webhook to settle it.
messages = Table(
    "messages",
    metadata,
    Column("message_id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("campaign_id", Text, nullable=False),
    Column("step_index", Integer, nullable=False),
    Column("contact_id", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("provider", Text),
    Column("provider_message_id", Text),
    Column("idempotency_key", Text, nullable=False),
    Column("status", Text, nullable=False, server_default="queued"),
    Column("to_email", Text, nullable=False),
    Column("to_name", Text, nullable=False, server_default=""),
    Column("from_email", Text),
    Column("sender_identity_id", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("body_text", Text, nullable=False, server_default=""),
    Column("body_html", Text, nullable=False, server_default=""),
    Column("rfc_message_id", Text),
    Column("attempt_count", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("sent_at", DateTime(timezone=True)),
    # Call and LinkedIn tasks: what the person reported through CompleteTask.
    Column("task_outcome", Text),
    Column("task_notes", Text),
    # What the email asked SendGrid to track (the tenant's privacy switches when it was sent).
    Column("track_opens", Boolean, nullable=False, server_default=true()),
    Column("track_clicks", Boolean, nullable=False, server_default=true()),
    # The send command's bytes, kept only while the message is `unknown`: what it is sent again
    # as, should SendGrid's reports show it never got it. Null on every other row.
    Column("unconfirmed_command", LargeBinary),
    # What the message is counted under in the tenant's analytics, carried into its outcomes.
    Column("product_id", Text, nullable=False, server_default=""),
    Column("strategist", Text, nullable=False, server_default=""),
    Column("variant", Text, nullable=False, server_default=""),
    UniqueConstraint("idempotency_key", name="messages_idempotency_key_key"),
    UniqueConstraint("provider", "provider_message_id", name="messages_provider_message_key"),
    CheckConstraint(
        "status IN ('queued', 'sending', 'sent', 'failed', 'suppressed', 'unknown', 'task_open', 'task_done', "
        "'withheld')",
        name="messages_status_check",
    ),
    Index("messages_tenant_campaign_idx", "tenant_id", "campaign_id"),
    Index("messages_tenant_contact_idx", "tenant_id", "contact_id"),
    # The unconfirmed-send sweep (every minute): the few `unknown` rows, oldest first, without
    # reading the tens of millions of others.
    Index("messages_unknown_idx", "updated_at", postgresql_where=text("status = 'unknown'")),
)

sender_identities = Table(
    "sender_identities",
    metadata,
    Column("id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("from_email", Text, nullable=False),
    Column("from_name", Text, nullable=False, server_default=""),
    Column("verified", Boolean, nullable=False, server_default="false"),
    # Names the secret holding the provider credentials; never the key itself.
    Column("provider_config_id", Text, nullable=False, server_default=""),
    # The mailbox's own send caps (0: none), on top of the tenant's rate limit.
    Column("per_minute", Integer, nullable=False, server_default="0"),
    Column("per_day", Integer, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The mailbox of the person behind the identity, where replies to its emails are forwarded;
    # empty: the tenant's catch-all (reply_forwarding), if any.
    Column("forward_to", Text, nullable=False, server_default=""),
    # When SendGrid last confirmed the identity may send, and how: "domain" (its domain is
    # authenticated in the identity's account) or "single_sender"; empty while unverified.
    Column("verified_at", DateTime(timezone=True), nullable=True),
    Column("verified_by", Text, nullable=False, server_default=""),
    # Why a verified identity stopped being one without being asked: SendGrid refused its mail
    # (403, the From not a verified Sender Identity). Cleared by the next verification.
    Column("unverified_reason", Text, nullable=False, server_default=""),
    # When SendGrid was last asked about it (a verification or the periodic re-check); the
    # re-check takes the identities asked longest ago first.
    Column("last_checked_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("tenant_id", "from_email", name="sender_identities_tenant_from_key"),
    # What the re-check pages through: verified identities and those that lapsed (a lapsed one
    # found valid again is verified again); never-verified ones wait for VerifySenderIdentity.
    Index(
        "sender_identities_recheck_idx",
        "last_checked_at",
        postgresql_where=text("verified OR unverified_reason <> ''"),
    ),
)

# Messages that failed because their sender identity was not verified, so their campaigns wait:
# once the identity is verified again each is released (a RELEASED outcome) and the row goes.
identity_holds = Table(
    "identity_holds",
    metadata,
    Column("message_id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("sender_identity_id", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("identity_holds_identity_idx", "tenant_id", "sender_identity_id", "created_at"),
)

# Addresses are stored lower-cased so one unique index serves every lookup; the CHECK keeps
# a writer that forgot from creating a duplicate that lookups would never find.
suppressions = Table(
    "suppressions",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("address", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("tenant_id", "address", "reason", name="suppressions_tenant_address_reason_key"),
    CheckConstraint("address = lower(address)", name="suppressions_address_lower_check"),
)

rate_limits = Table(
    "rate_limits",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("per_minute", Integer),
    Column("per_hour", Integer),
    Column("per_day", Integer),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("tenant_id", "channel", name="rate_limits_pkey"),
)

# Sends admitted per fixed window, shared by every replica. `scope` is
# `tenant:<tenant_id>:<channel>` or `identity:<identity_id>`; `window` is minute, hour or day.
rate_counters = Table(
    "rate_counters",
    metadata,
    Column("scope", Text, nullable=False),
    Column("window", Text, nullable=False),
    Column("window_start", DateTime(timezone=True), nullable=False),
    Column("used", Integer, nullable=False),
    PrimaryKeyConstraint("scope", "window", "window_start", name="rate_counters_pkey"),
)

# Per tenant: where replies go when the identity that was answered has no forward_to.
reply_forwarding = Table(
    "reply_forwarding",
    metadata,
    Column("tenant_id", Text, primary_key=True),
    # Empty: no catch-all (SetReplyForwarding with an empty address clears it).
    Column("catch_all", Text, nullable=False, server_default=""),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# One row per stored inbound reply (the events service's inbound_id) we were asked to forward,
# guarded like a send: `sending` is committed before the provider call, so a row found in
# `sending` means a call may have gone out; it is never repeated and the row becomes `unknown`.
# `queued` is a forward not yet attempted, or waiting for JetStream to redeliver it after a
# transient failure.
reply_forwards = Table(
    "reply_forwards",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("inbound_id", Text, nullable=False),
    # Our message the reply answers.
    Column("message_id", Text, nullable=False),
    Column("status", Text, nullable=False, server_default="queued"),
    Column("sender_identity_id", Text),
    Column("from_email", Text),
    Column("to_email", Text),
    Column("provider", Text),
    Column("provider_message_id", Text),
    Column("attempt_count", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("sent_at", DateTime(timezone=True)),
    PrimaryKeyConstraint("tenant_id", "inbound_id", name="reply_forwards_pkey"),
    CheckConstraint(
        "status IN ('queued', 'sending', 'sent', 'failed', 'unknown', 'unroutable')",
        name="reply_forwards_status_check",
    ),
)

# Our copy of each stopped campaign's status, from the planner's CampaignStatusChanged facts:
# a command of a campaign whose row says anything but `active` is withheld, not sent. A
# campaign with no row has never stopped. Only the highest version is kept.
campaign_states = Table(
    "campaign_states",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("campaign_id", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("tenant_id", "campaign_id", name="campaign_states_pkey"),
)

# One row: the newest time SendGrid says it handled a message (its `processed`, `delivered`,
# `deferred`, `bounce` and `dropped` events, as the events service relays them). A send left
# `unknown` with no event of its own although events from later than it have come is taken to
# have never reached SendGrid, and is sent again.
provider_watermark = Table(
    "provider_watermark",
    metadata,
    Column("id", SmallInteger, primary_key=True),
    Column("newest_event_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("id = 1", name="provider_watermark_one_row"),
)

outbox = outbox_table(metadata)
