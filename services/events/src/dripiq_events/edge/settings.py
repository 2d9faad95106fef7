from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr, model_validator

from dripiq_common.settings import ProcessSettings, TokenSecrets, settings_config


class EdgeSettings(TokenSecrets, ProcessSettings):
    """The edge has no database: it only needs NATS, SendGrid's key and the token secrets."""

    model_config = settings_config("EDGE_")

    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = Field(default=5 * 1024 * 1024, gt=0)
    # SendGrid's signature does not expire by itself: a captured request could be replayed
    # later, so the signed timestamp must be this close to our clock, either way.
    signature_tolerance_seconds: float = Field(default=600, gt=0)
    publish_timeout_seconds: float = Field(default=5.0, gt=0)
    # Base64 DER, exactly as SendGrid shows it under Mail Settings > Signed Event Webhook; several
    # keys separated by commas are all accepted (a key rotation, or a real account beside the fake).
    sendgrid_webhook_public_key: str = Field(
        validation_alias=AliasChoices("SENDGRID_WEBHOOK_PUBLIC_KEY", "sendgrid_webhook_public_key")
    )
    # SendGrid's Event Webhook OAuth: give SendGrid this client id and secret and
    # <edge>/oauth/token as the token URL; batches must then carry a token we issued.
    oauth_client_id: str | None = None
    oauth_client_secret: SecretStr | None = None
    oauth_token_ttl_seconds: int = Field(default=3600, gt=0)
    # With OAuth on, the signature may be dropped ("instead of"); without OAuth it is required.
    require_signature: bool = True

    @model_validator(mode="after")
    def _oauth_complete(self) -> EdgeSettings:
        if (self.oauth_client_id is None) != (self.oauth_client_secret is None):
            raise ValueError("EDGE_OAUTH_CLIENT_ID and EDGE_OAUTH_CLIENT_SECRET go together")
        if not self.require_signature and self.oauth_client_id is None:
            raise ValueError("EDGE_REQUIRE_SIGNATURE=false needs OAuth (EDGE_OAUTH_CLIENT_ID/SECRET)")
        return self
