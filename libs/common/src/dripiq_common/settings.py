"""Settings shared by every service. Each service subclasses with its own env prefix.

`DATABASE_URL` and `NATS_URL` keep the suite-wide names users expect (each Deployment sets
its own, e.g. with the service's PostgreSQL role); everything else is `<SERVICE>_<FIELD>`.
"""

from __future__ import annotations

from typing import Literal, TypeVar

import structlog
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dripiq_common.tokens import MIN_SECRET_BYTES, TokenSigner, parse_secrets

log = structlog.get_logger(__name__)


class ProcessSettings(BaseSettings):
    """Fields every process has, the edge included: NATS, logging, shutdown, stream settings."""

    model_config = SettingsConfigDict(extra="ignore")

    nats_url: str = Field(default="nats://127.0.0.1:4222", validation_alias=AliasChoices("NATS_URL", "nats_url"))
    # The CA that signs the NATS servers' certificate: TLS to NATS, verified; empty: plaintext.
    nats_ca_file: str = Field(default="", validation_alias=AliasChoices("NATS_CA_FILE", "nats_ca_file"))
    log_format: Literal["json", "console"] = Field(
        default="json", validation_alias=AliasChoices("LOG_FORMAT", "log_format")
    )
    log_level: str = Field(default="INFO", validation_alias=AliasChoices("LOG_LEVEL", "log_level"))
    shutdown_grace_seconds: float = 10.0
    # Stream settings every process applies the same way (suite-wide names, one value for all).
    jetstream_replicas: int = Field(
        default=1, validation_alias=AliasChoices("JETSTREAM_REPLICAS", "jetstream_replicas")
    )
    # Create and update the streams and consumers at start-up. Off where a set-up step has made
    # them (dripiq_common.bus.setup) and the process's NATS user may not (docs/security.md).
    bus_setup: bool = Field(default=True, validation_alias=AliasChoices("BUS_SETUP", "bus_setup"))
    jetstream_duplicate_window_seconds: float = Field(
        default=600,
        validation_alias=AliasChoices("JETSTREAM_DUPLICATE_WINDOW_SECONDS", "jetstream_duplicate_window_seconds"),
    )


class ServiceSettings(ProcessSettings):
    """Fields every gRPC service has besides. Subclasses set `model_config = settings_config("X_")`."""

    database_url: str = Field(
        validation_alias=AliasChoices("DATABASE_URL", "database_url"),
        description="PostgreSQL URL, e.g. postgresql://user@127.0.0.1:5432/dripiq",
    )
    # TLS to PostgreSQL, libpq's modes (verify-full in production, with PGSSLROOTCERT naming the
    # database operator's CA); empty: asyncpg's default, prefer.
    db_sslmode: Literal["", "disable", "prefer", "require", "verify-ca", "verify-full"] = Field(
        default="", validation_alias=AliasChoices("DB_SSLMODE", "db_sslmode")
    )
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    db_pool_size: int = 10
    outbox_poll_seconds: float = 1.0
    outbox_batch_size: int = 500
    # Prometheus exporter (/metrics); 0 turns it off. Each service sets its own default port.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=0, ge=0, le=65535)

    # The mutual-TLS port our own services call (0: grpc_port + 100).
    grpc_internal_port: int = Field(default=0, ge=0, le=65535)
    # A plaintext port serving only the health service, for Kubernetes' gRPC probes; 0: none.
    grpc_health_port: int = Field(default=0, ge=0, le=65535)
    grpc_reflection: bool = Field(default=True, validation_alias=AliasChoices("GRPC_REFLECTION", "grpc_reflection"))
    # The largest request or answer a server takes or gives (RESOURCE_EXHAUSTED beyond), and the
    # calls it works on at once (RESOURCE_EXHAUSTED for more, which callers retry with backoff).
    grpc_max_message_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=64 * 1024,
        le=64 * 1024 * 1024,
        validation_alias=AliasChoices("GRPC_MAX_MESSAGE_BYTES", "grpc_max_message_bytes"),
    )
    grpc_max_concurrent_rpcs: int = Field(
        default=256, ge=1, validation_alias=AliasChoices("GRPC_MAX_CONCURRENT_RPCS", "grpc_max_concurrent_rpcs")
    )
    # TLS and authentication (docs/security.md). Every process needs them unless DRIPIQ_DEV_INSECURE
    # is true, which only `make run` sets without being asked.
    dev_insecure: bool = Field(default=False, validation_alias=AliasChoices("DRIPIQ_DEV_INSECURE", "dev_insecure"))
    tls_cert_file: str = Field(default="", validation_alias=AliasChoices("TLS_CERT_FILE", "tls_cert_file"))
    tls_key_file: str = Field(default="", validation_alias=AliasChoices("TLS_KEY_FILE", "tls_key_file"))
    tls_ca_file: str = Field(default="", validation_alias=AliasChoices("TLS_CA_FILE", "tls_ca_file"))
    auth_jwt_issuer: str = Field(default="", validation_alias=AliasChoices("AUTH_JWT_ISSUER", "auth_jwt_issuer"))
    auth_jwt_audience: str = Field(
        default="dripiq", validation_alias=AliasChoices("AUTH_JWT_AUDIENCE", "auth_jwt_audience")
    )
    # A PEM public key or a JWKS document, in a file; or the issuer's JWKS URL.
    auth_jwt_public_keys_file: str = Field(
        default="", validation_alias=AliasChoices("AUTH_JWT_PUBLIC_KEYS_FILE", "auth_jwt_public_keys_file")
    )
    auth_jwks_url: str = Field(default="", validation_alias=AliasChoices("AUTH_JWKS_URL", "auth_jwks_url"))
    # Certificate names (common name or DNS name) of the suite's services: a name that is one of
    # these, or starts with one and a dot (planner.dripiq.svc), acts as that service.
    auth_service_names: str = Field(
        default="planner,dispatcher,events,scheduler",
        validation_alias=AliasChoices("AUTH_SERVICE_NAMES", "auth_service_names"),
    )

    @property
    def grpc_address(self) -> str:
        return f"{self.grpc_host}:{self.grpc_port}"

    @property
    def grpc_internal_address(self) -> str:
        return f"{self.grpc_host}:{self.grpc_internal_port or self.grpc_port + 100}"


class TokenSecrets(BaseSettings):
    """The secrets that sign reply, unsubscribe and OAuth access tokens, for every process that
    signs or verifies them (dispatcher, events, edge; suite-wide names, one value for all).

    To rotate, move the current secret to the front of the previous list and set a new current
    one, on every process; remove a previous secret once the mail that carries it may go
    unanswered (docs/decisions/0018).
    """

    token_secret: SecretStr = Field(
        validation_alias=AliasChoices("DRIPIQ_TOKEN_SECRET", "token_secret"),
        description="Signs new tokens; verifies them too",
    )
    token_previous_secrets: SecretStr = Field(
        default=SecretStr(""),
        validation_alias=AliasChoices("DRIPIQ_TOKEN_PREVIOUS_SECRETS", "token_previous_secrets"),
        description="Comma-separated secrets whose tokens are still accepted, none of them used to sign",
    )

    @field_validator("token_secret")
    @classmethod
    def _secret_long_enough(cls, value: SecretStr) -> SecretStr:
        # TokenSigner refuses short secrets; say so at start-up rather than on the first token.
        if len(value.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"must be at least {MIN_SECRET_BYTES} bytes")
        return value

    @field_validator("token_previous_secrets")
    @classmethod
    def _previous_long_enough(cls, value: SecretStr) -> SecretStr:
        for n, secret in enumerate(parse_secrets(value.get_secret_value()), 1):
            if len(secret) < MIN_SECRET_BYTES:
                # Never echoed: it is a secret. A comma inside a secret shows up here too.
                raise ValueError(f"secret {n} is shorter than {MIN_SECRET_BYTES} bytes (secrets cannot hold commas)")
        return value

    def token_signer(self) -> TokenSigner:
        signer = TokenSigner(
            self.token_secret.get_secret_value().encode(),
            parse_secrets(self.token_previous_secrets.get_secret_value()),
        )
        current, previous = signer.key_ids
        # Every process must log the same ids: a process with another current key signs links
        # the others refuse.
        log.info("tokens.keys", current_key_id=current, previous_key_ids=list(previous))
        return signer


def settings_config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, extra="ignore")


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def load_settings(cls: type[SettingsT]) -> SettingsT:
    """Build settings once at start-up; a missing required value stops with its name."""
    try:
        return cls()
    except ValidationError as exc:
        problems = "; ".join(
            f"{_env_name(cls, err['loc'])}: {err['msg']}" if err["loc"] else err["msg"] for err in exc.errors()
        )
        raise SystemExit(f"{cls.__name__}: invalid settings: {problems}") from None


def _env_name(cls: type[BaseSettings], loc: tuple[int | str, ...]) -> str:
    """The environment variable a field is read from, as the operator spells it."""
    name = str(loc[0])
    field = cls.model_fields.get(name)
    alias = field.validation_alias if field is not None else None
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
        env = alias.choices[0]
    else:
        env = f"{cls.model_config.get('env_prefix', '')}{name}"
    return ".".join([env.upper(), *(str(p) for p in loc[1:])])
