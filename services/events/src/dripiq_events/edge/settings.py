from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator

from dripiq_common.settings import ProcessSettings, TokenSecrets, settings_config
from dripiq_events.edge.app import BodyLimits
from dripiq_events.edge.proofs import MIN_SECRET_CHARS, load_verifiers

_MIB = 1024 * 1024


class EdgeSettings(TokenSecrets, ProcessSettings):
    """The edge has no database: it only needs NATS, SendGrid's keys and the token secrets.

    It refuses to start fail-open (docs/decisions/0041): the Event Webhook needs its signature
    or OAuth, and Inbound Parse its policy's signature, OAuth or a secret URL.
    """

    model_config = settings_config("EDGE_")

    host: str = "127.0.0.1"
    port: int = 8080
    # /metrics is served here only, never on the public port (0 turns it off).
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9105, ge=0, le=65535)
    # The largest body each route reads; larger is 413. Each is also held under NATS'
    # max_payload (the edge says so at start-up when that lowers it).
    max_events_bytes: int = Field(default=5 * _MIB, gt=0)
    max_inbound_bytes: int = Field(default=5 * _MIB, gt=0)
    max_unsubscribe_bytes: int = Field(default=4096, gt=0)
    max_token_bytes: int = Field(default=4096, gt=0)
    # Requests answered at once; past it 503 with Retry-After (SendGrid retries).
    max_in_flight: int = Field(default=64, ge=1)
    retry_after_seconds: int = Field(default=10, ge=1)
    # SendGrid's signature does not expire by itself: a captured request could be replayed
    # later, so the signed timestamp must be this close to our clock, either way.
    signature_tolerance_seconds: float = Field(default=600, gt=0)
    publish_timeout_seconds: float = Field(default=5.0, gt=0)
    # Base64 DER, exactly as SendGrid shows it under Mail Settings > Signed Event Webhook; several
    # keys separated by commas are all accepted (a key rotation, or a real account beside the fake).
    sendgrid_webhook_public_key: str = Field(
        default="", validation_alias=AliasChoices("SENDGRID_WEBHOOK_PUBLIC_KEY", "sendgrid_webhook_public_key")
    )
    # SendGrid's Event Webhook OAuth: give SendGrid this client id and secret and
    # <edge>/oauth/token as the token URL; batches must then carry a token we issued.
    oauth_client_id: str | None = None
    oauth_client_secret: SecretStr | None = None
    oauth_token_ttl_seconds: int = Field(default=3600, gt=0)
    # With OAuth on, the signature may be dropped ("instead of"); without OAuth it is required.
    require_signature: bool = True
    # Inbound Parse: the public key of the Parse security policy (its own key pair, not the
    # Event Webhook's; commas for several); PARSE_OAUTH: posts must carry a bearer token from
    # the OAuth client above; PARSE_URL_SECRET: SendGrid posts to /webhooks/sendgrid/inbound/<it>.
    # At least one; each one set must pass.
    sendgrid_parse_public_key: str = Field(
        default="", validation_alias=AliasChoices("SENDGRID_PARSE_PUBLIC_KEY", "sendgrid_parse_public_key")
    )
    parse_oauth: bool = False
    parse_url_secret: SecretStr | None = None

    @field_validator("sendgrid_webhook_public_key", "sendgrid_parse_public_key")
    @classmethod
    def _keys_load(cls, value: str) -> str:
        if value.strip():
            load_verifiers(value)
        return value

    @field_validator("oauth_client_secret", "parse_url_secret")
    @classmethod
    def _edge_secret_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty secret is no secret: it must not read as "not set" either.
        if value is not None and len(value.get_secret_value()) < MIN_SECRET_CHARS:
            raise ValueError(f"must be at least {MIN_SECRET_CHARS} characters (it is never echoed)")
        return value

    @model_validator(mode="after")
    def _fails_closed(self) -> EdgeSettings:
        has_id = bool(self.oauth_client_id and self.oauth_client_id.strip())
        if has_id != (self.oauth_client_secret is not None) or (self.oauth_client_id is not None and not has_id):
            raise ValueError("EDGE_OAUTH_CLIENT_ID and EDGE_OAUTH_CLIENT_SECRET go together, neither empty")
        if self.require_signature and not self.sendgrid_webhook_public_key.strip():
            raise ValueError(
                "SENDGRID_WEBHOOK_PUBLIC_KEY is required while EDGE_REQUIRE_SIGNATURE is true "
                "(SendGrid: Mail Settings > Signed Event Webhook)"
            )
        if not self.require_signature and not self.oauth_enabled:
            raise ValueError(
                "EDGE_REQUIRE_SIGNATURE=false needs OAuth (EDGE_OAUTH_CLIENT_ID and EDGE_OAUTH_CLIENT_SECRET): "
                "the Event Webhook would take unauthenticated batches"
            )
        if self.parse_oauth and not self.oauth_enabled:
            raise ValueError("EDGE_PARSE_OAUTH=true needs EDGE_OAUTH_CLIENT_ID and EDGE_OAUTH_CLIENT_SECRET")
        if not (self.sendgrid_parse_public_key.strip() or self.parse_oauth or self.parse_url_secret):
            raise ValueError(
                "Inbound Parse would be unauthenticated: set SENDGRID_PARSE_PUBLIC_KEY (the Parse security "
                "policy's signature), EDGE_PARSE_OAUTH=true (its OAuth) or EDGE_PARSE_URL_SECRET"
            )
        return self

    @property
    def oauth_enabled(self) -> bool:
        return self.oauth_client_id is not None and self.oauth_client_secret is not None

    @property
    def body_limits(self) -> BodyLimits:
        return BodyLimits(
            events=self.max_events_bytes,
            inbound=self.max_inbound_bytes,
            unsubscribe=self.max_unsubscribe_bytes,
            token=self.max_token_bytes,
        )
