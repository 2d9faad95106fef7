from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator

from dripiq_common.settings import ServiceSettings, settings_config


class DispatcherSettings(ServiceSettings):
    model_config = settings_config("DISPATCHER_")

    grpc_port: int = 50052
    metrics_port: int = 9102

    # Suite-wide names: the events service and the edge read the same values.
    sendgrid_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SENDGRID_API_KEY", "sendgrid_api_key")
    )
    sendgrid_api_host: str = Field(
        default="https://api.sendgrid.com",
        validation_alias=AliasChoices("SENDGRID_API_HOST", "sendgrid_api_host"),
    )
    token_secret: SecretStr = Field(
        validation_alias=AliasChoices("DRIPIQ_TOKEN_SECRET", "token_secret"),
        description="HMAC secret for reply and unsubscribe tokens, shared with events and edge",
    )

    reply_domain: str = "reply.dripiq.localhost"
    message_id_domain: str = "dripiq.localhost"
    unsubscribe_base_url: str = "http://127.0.0.1:8080/u/"
    # Click tracking also rewrites the links of the text part (SendGrid's `enable_text`).
    click_tracking_text: bool = False
    # Fail an email whose tenant has no postal address (CAN-SPAM). Unset: required exactly when
    # sending to the real SendGrid (SENDGRID_API_KEY set), not to a local fake.
    require_postal_address: bool | None = None
    # How provider calls leave: "async" posts with aiohttp on the event loop over keep-alive
    # connections; "executor" runs the sendgrid library's blocking client on a thread pool.
    transport: Literal["async", "executor"] = "async"
    # Provider calls in flight at once per process (one pooled connection each).
    send_concurrency: int = Field(default=512, ge=1)
    # Command batches handled at once; each holds up to sends_in_flight / this commands.
    send_batches_in_flight: int = Field(default=4, ge=1)
    # The executor transport's thread pool; it keeps min(send_concurrency, this) calls in flight.
    executor_threads: int = Field(default=64, ge=1)
    # Connecting must finish within this (a failure then is known not to have sent anything).
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    # Provider attempts per message (transient failures only) before it is failed.
    max_attempts: int = Field(default=5, ge=1)
    # Must stay well under the send consumer's ack wait (30 s): a call still running when
    # JetStream redelivers makes the redelivery find `sending` and park the message as unknown.
    send_timeout_seconds: float = Field(default=20.0, gt=0)
    # An `unknown` send (the provider may or may not have it) waits this long for a provider
    # event to prove it went out, then fails for a person to review.
    unknown_deadline_seconds: float = Field(default=2 * 3600, gt=0)
    unknown_sweep_seconds: float = Field(default=60, gt=0)
    # Reply forwards handled at once (each one provider call).
    forward_concurrency: int = Field(default=8, ge=1)
    # How often rate-limit counters of windows long over are deleted.
    counter_prune_seconds: float = Field(default=300, gt=0)

    @property
    def requires_postal_address(self) -> bool:
        if self.require_postal_address is not None:
            return self.require_postal_address
        return self.sendgrid_api_key is not None

    @property
    def sends_in_flight(self) -> int:
        if self.transport == "executor":
            return min(self.send_concurrency, self.executor_threads)
        return self.send_concurrency

    @property
    def send_batch_size(self) -> int:
        return max(1, self.sends_in_flight // self.send_batches_in_flight)

    @field_validator("sendgrid_api_key", mode="before")
    @classmethod
    def _empty_key_is_no_key(cls, value: object) -> object:
        # `SENDGRID_API_KEY=` in an env file means "not set", not "send with an empty key".
        return None if value == "" else value

    @field_validator("token_secret")
    @classmethod
    def _secret_long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value().encode()) < 16:
            raise ValueError("must be at least 16 bytes")
        return value
