"""Settings shared by every service. Each service subclasses with its own env prefix.

`DATABASE_URL` and `NATS_URL` keep the suite-wide names users expect (each Deployment sets
its own, e.g. with the service's PostgreSQL role); everything else is `<SERVICE>_<FIELD>`.
"""

from __future__ import annotations

from typing import Literal, TypeVar

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Fields every gRPC service has. Subclasses set `model_config = settings_config("X_")`."""

    model_config = SettingsConfigDict(extra="ignore")

    database_url: str = Field(
        validation_alias=AliasChoices("DATABASE_URL", "database_url"),
        description="PostgreSQL URL, e.g. postgresql://user@127.0.0.1:5432/dripiq",
    )
    nats_url: str = Field(default="nats://127.0.0.1:4222", validation_alias=AliasChoices("NATS_URL", "nats_url"))
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    log_format: Literal["json", "console"] = Field(
        default="json", validation_alias=AliasChoices("LOG_FORMAT", "log_format")
    )
    log_level: str = Field(default="INFO", validation_alias=AliasChoices("LOG_LEVEL", "log_level"))
    shutdown_grace_seconds: float = 10.0
    # Stream settings every process applies the same way (suite-wide names, one value for all).
    jetstream_replicas: int = Field(
        default=1, validation_alias=AliasChoices("JETSTREAM_REPLICAS", "jetstream_replicas")
    )
    jetstream_duplicate_window_seconds: float = Field(
        default=600,
        validation_alias=AliasChoices("JETSTREAM_DUPLICATE_WINDOW_SECONDS", "jetstream_duplicate_window_seconds"),
    )
    db_pool_size: int = 10
    outbox_poll_seconds: float = 1.0
    outbox_batch_size: int = 500
    # Prometheus exporter (/metrics); 0 turns it off. Each service sets its own default port.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=0, ge=0, le=65535)

    @property
    def grpc_address(self) -> str:
        return f"{self.grpc_host}:{self.grpc_port}"


def settings_config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, extra="ignore")


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def load_settings(cls: type[SettingsT]) -> SettingsT:
    """Build settings once at start-up; a missing required value stops with its name."""
    try:
        return cls()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors())
        raise SystemExit(f"{cls.__name__}: invalid settings: {problems}") from None
