from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr

from dripiq_common.settings import ServiceSettings, settings_config


class PlannerSettings(ServiceSettings):
    model_config = settings_config("PLANNER_")

    grpc_port: int = 50051
    metrics_port: int = 9101
    # SendGrid flags opens by mail privacy proxies; they say nothing about a person.
    count_machine_opens: bool = False
    # An out-of-office reply pauses a campaign until the return date it gives, but never longer.
    max_auto_reply_pause_days: int = Field(default=30, ge=1, le=365)
    # Fetchers per JetStream consumer in this process (replicas add more).
    workers_per_consumer: int = Field(default=2, ge=1)
    # The services the planner asks: suppressions (dispatcher) and, for timelines, messages
    # (dispatcher) and engagement events (events).
    dispatcher_address: str = "127.0.0.1:50052"
    events_address: str = "127.0.0.1:50053"
    owners_timeout_seconds: float = 5.0

    # The names every OpenAI client and tool reads; either one turns the AI strategist on
    # (the base URL alone for OpenAI-compatible servers that need no key).
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_API_KEY", "openai_api_key")
    )
    openai_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_BASE_URL", "openai_base_url")
    )
    ai_model: str = "gpt-4o-mini"
    # Per HTTP attempt; the strategist asks again after 429, 5xx and timeouts up to ai_max_retries
    # times, each request audited in ai_generations.
    ai_timeout_seconds: float = 30.0
    ai_max_retries: int = 3
    # However the retries and the repair turn go, a campaign gets a strategy within this long
    # (the template's, past it).
    ai_plan_deadline_seconds: float = Field(default=60.0, gt=0)
    # Requests in flight to the model at once, per planner process.
    ai_concurrency: int = Field(default=8, ge=1)
    # A tenant's daily AI budget unless its settings give its own (ai_daily_call_budget,
    # ai_daily_token_budget): chat completion calls (a repair is one) and tokens per UTC day.
    ai_daily_calls: int = Field(default=1000, ge=1)
    ai_daily_tokens: int = Field(default=2_000_000, ge=1)
    # The longest answer one call may get (sent as max_completion_tokens); each call holds this
    # much of the token budget, plus its prompt's bound, until its answer says what it used.
    ai_max_completion_tokens: int = Field(default=4000, ge=256, le=100_000)
    # Days of ai_budget_usage kept (only today's is read); older rows are deleted in batches of
    # ai_budget_prune_batch, checked every ai_budget_prune_poll_seconds.
    ai_budget_retention_days: int = Field(default=90, ge=1, le=3650)
    ai_budget_prune_batch: int = Field(default=1000, ge=1, le=100_000)
    ai_budget_prune_poll_seconds: float = Field(default=3600.0, gt=0)

    # Planning as work (planning_worker): campaigns this process plans at once (its share of the
    # model's concurrency; replicas add more), and a tenant's at once across all replicas unless
    # its settings give its own (planning_concurrency).
    planning_concurrency: int = Field(default=8, ge=1, le=256)
    planning_tenant_concurrency: int = Field(default=8, ge=1, le=1000)

    # A/B winners (tenants with variant_winner set): how long the events service's per-variant
    # figures of an experiment are used before asking again (0: every batch asks).
    variant_stats_cache_seconds: float = Field(default=30.0, ge=0, le=3600)
