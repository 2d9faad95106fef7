from __future__ import annotations

from enum import StrEnum

from pydantic import AliasChoices, Field, SecretStr

from dripiq_common.settings import ServiceSettings, TokenSecrets, settings_config


class EventsRole(StrEnum):
    """What one events process does (docs/decisions/0057-events-query-role.md)."""

    # Everything in one process: the API, the consumers and the loops.
    ALL = "all"
    # The API alone: its event loop never decodes, stores or rolls up a webhook batch, so a
    # tenant's query is not queued behind ingest.
    QUERY = "query"
    # The consumers, the outbox relay and the retention loops; health and metrics, no API.
    INGEST = "ingest"

    @property
    def serves_api(self) -> bool:
        return self is not EventsRole.INGEST

    @property
    def ingests(self) -> bool:
        return self is not EventsRole.QUERY


class EventsSettings(TokenSecrets, ServiceSettings):
    """The token secrets (TokenSecrets) are shared with the dispatcher, which signs reply
    tokens into outgoing mail."""

    model_config = settings_config("EVENTS_")

    grpc_port: int = 50053
    role: EventsRole = EventsRole.ALL
    metrics_port: int = 9103
    # Monthly message_events partitions kept ready ahead of time, so no event of a coming
    # month lands in the DEFAULT partition (which would block creating that month later).
    partition_months_ahead: int = Field(default=3, ge=1, le=24)
    partition_check_seconds: float = 24 * 3600
    # Whole months of message_events kept before the current month; older monthly partitions
    # are dropped. 0 keeps everything.
    retention_months: int = Field(default=13, ge=0)
    # The provider's raw event is kept this long for investigations, then set to NULL (the
    # parsed columns stay). 0 keeps it forever.
    raw_event_retention_days: int = Field(default=30, ge=0)
    compaction_batch: int = Field(default=5000, ge=1)
    # Webhook posts (SendGrid batches of up to thousands of events) stored at once.
    webhook_concurrency: int = Field(default=4, ge=1)
    compaction_poll_seconds: float = Field(default=3600, gt=0)
    # Inbound mail tied to none of our messages (no tenant can read it) is deleted after this
    # many days. 0 keeps it forever.
    unmatched_inbound_retention_days: int = Field(default=30, ge=0)
    # Every inbound mail, replies matched to a tenant included, is deleted after this many days
    # (by default as long as the message_events of 13 months). 0 keeps it forever.
    inbound_retention_days: int = Field(default=400, ge=0)
    # Inbound Parse posts (each parsed, matched and perhaps classified) handled at once.
    inbound_concurrency: int = Field(default=4, ge=1)

    # The names every OpenAI client and tool reads; either one turns the AI reply classifier on
    # (the base URL alone for OpenAI-compatible servers that need no key).
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_API_KEY", "openai_api_key")
    )
    openai_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_BASE_URL", "openai_base_url")
    )
    ai_model: str = "gpt-4o-mini"
    # Per HTTP attempt; the client retries 429, 5xx and timeouts itself up to ai_max_retries.
    ai_timeout_seconds: float = Field(default=20.0, gt=0)
    ai_max_retries: int = Field(default=2, ge=0)
    # However the retries go, a reply gets a class within this long (the rules', past it).
    # Well inside the webhook consumer's ack wait (30 s), or JetStream would redeliver the
    # reply while it is being classified and the model would be asked twice.
    ai_classify_deadline_seconds: float = Field(default=20.0, gt=0)
    # Requests in flight to the model at once, per events process.
    ai_concurrency: int = Field(default=8, ge=1)
