from __future__ import annotations

import ipaddress
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import structlog
from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator

from dripiq_common.settings import ServiceSettings, TokenSecrets, settings_config
from dripiq_dispatcher.accounts import EVERY_TENANT, ProviderAccounts, config_syntax_problem
from dripiq_dispatcher.failures import RetryPolicy

log = structlog.get_logger(__name__)

# Names that can never be a production sender's (RFC 2606, RFC 6761): mail with links or
# reply addresses under them is mail nobody can answer or unsubscribe from.
_RESERVED_NAMES = ("example.com", "example.org", "example.net")
_RESERVED_SUFFIXES = ("example", "test", "localhost", "invalid", "local")


def reserved_host_problem(host: str) -> str | None:
    """Why `host` cannot be where production mail points people, or None when it can."""
    name = host.strip().rstrip(".").lower()
    if not name:
        return "is empty"
    try:
        address = ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        address = None
    if address is not None:
        return f"{host} is a loopback address" if address.is_loopback else None
    if "." not in name and name != "localhost":
        return f"{host} is not a fully qualified domain name"
    if name in _RESERVED_NAMES or any(name == r or name.endswith("." + r) for r in _RESERVED_NAMES):
        return f"{host} is an example domain (RFC 2606)"
    last = name.rsplit(".", 1)[-1]
    if last in _RESERVED_SUFFIXES:
        return f"{host} is under the reserved name .{last} (RFC 2606/6761)"
    return None


class DispatcherSettings(TokenSecrets, ServiceSettings):
    """The token secrets (TokenSecrets) sign reply and unsubscribe tokens; the events service
    and the edge verify them with the same ones."""

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

    # Where mail points people: no development default (docs/deploy.md, "Settings production must
    # set"). The domain of reply addresses (its MX goes to SendGrid's Inbound Parse), the domain
    # of our Message-IDs, and the public one-click unsubscribe URL (the edge's /u/, https).
    reply_domain: str
    message_id_domain: str
    unsubscribe_base_url: str
    # Lets those be local (http, loopback, *.localhost, *.test) for a suite on one machine, as
    # `make run` and the tests do; DRIPIQ_DEV_INSECURE does too. Logged loudly at start-up.
    allow_local_mail_urls: bool = False
    # Click tracking also rewrites the links of the text part (SendGrid's `enable_text`).
    click_tracking_text: bool = False
    # Fail an email whose tenant has no postal address (CAN-SPAM). Unset: required exactly when
    # sending to the real SendGrid (SENDGRID_API_KEY set), not to a local fake.
    require_postal_address: bool | None = None
    # Provider calls in flight at once per process (one pooled connection each).
    send_concurrency: int = Field(default=512, ge=1)
    # Command batches handled at once; each holds up to sends_in_flight / this commands.
    send_batches_in_flight: int = Field(default=4, ge=1)
    # Connecting must finish within this (a failure then is known not to have sent anything).
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    # Provider attempts per reply forward (transient failures only) before it is failed.
    max_attempts: int = Field(default=5, ge=1)
    # A send that failed for a passing reason (5xx, 429, no connection) comes back through a
    # scheduler timer, the wait doubling from the base to the cap, until the message is this
    # old: only then does it fail (and its campaign waits for a person, it does not end).
    retry_horizon_seconds: float = Field(default=6 * 3600, gt=0)
    retry_backoff_seconds: float = Field(default=30, gt=0)
    retry_backoff_max_seconds: float = Field(default=1800, gt=0)
    # After this many provider calls in a row failed for a passing reason, the send worker stops
    # fetching for a cool-down (doubling up to the max), then probes with one batch.
    breaker_threshold: int = Field(default=50, ge=1)
    breaker_cooldown_seconds: float = Field(default=5, gt=0)
    breaker_max_cooldown_seconds: float = Field(default=300, gt=0)
    # Must stay well under the send consumer's ack wait (30 s): a call still running when
    # JetStream redelivers makes the redelivery find `sending` and park the message as unknown.
    send_timeout_seconds: float = Field(default=20.0, gt=0)
    # An `unknown` send (the call may have gone out) is settled by its own provider event. With
    # none, once SendGrid's events for messages it handled this long after ours have come, ours
    # never reached it and is sent again (the Event Webhook must include `processed`).
    unknown_resend_after_seconds: float = Field(default=300, gt=0)
    # While SendGrid's reports lag behind (edge down, events late), nothing is resent; after
    # this long the send fails for a person to review (its campaign needs attention).
    unknown_deadline_seconds: float = Field(default=2 * 3600, gt=0)
    unknown_sweep_seconds: float = Field(default=60, gt=0)
    # Reply forwards handled at once (each one provider call).
    forward_concurrency: int = Field(default=8, ge=1)
    # How often rate-limit counters of windows long over are deleted.
    counter_prune_seconds: float = Field(default=300, gt=0)

    # Sender identities' own SendGrid accounts (provider_config_id, see accounts.py). Each config
    # id (subuser:<name>, key:<name>) belongs to one tenant: {"subuser:acme": "acme", ...}.
    provider_config_tenants: dict[str, str] = Field(default_factory=dict)
    # Tenants that may send through the default account (SENDGRID_API_KEY); ["*"]: all. Unset:
    # all with a local fake, none with the real SendGrid (a shared account cannot tell tenants'
    # domains apart, so each tenant then needs its own provider_config_id).
    default_account_tenants: list[str] | None = None
    # Where key:<name> reads its key: one file per name, as a mounted Kubernetes Secret gives.
    provider_keys_dir: Path | None = None
    # A key file is read again after this long, so a rotated Secret is used without a restart.
    provider_key_cache_seconds: float = Field(default=30.0, ge=0)
    # VerifySenderIdentity's calls to SendGrid; past it the RPC answers UNAVAILABLE.
    verify_timeout_seconds: float = Field(default=10.0, gt=0)
    # Every verified (or lapsed) identity is asked about at SendGrid again after this long, so a
    # domain whose authentication lapsed is found before its mail is refused; 0: never.
    identity_recheck_hours: float = Field(default=24.0, ge=0)
    # Identities asked about per round (each a few SendGrid calls), and how often a round looks.
    identity_recheck_batch: int = Field(default=20, ge=1, le=1000)
    identity_recheck_poll_seconds: float = Field(default=300.0, gt=0)
    # Held messages released per transaction once their identity is verified again.
    identity_release_batch: int = Field(default=500, ge=1, le=10_000)
    identity_release_poll_seconds: float = Field(default=60.0, gt=0)

    @property
    def provider_accounts(self) -> ProviderAccounts:
        default_tenants = self.default_account_tenants
        if default_tenants is None:
            default_tenants = [] if self.sendgrid_api_key is not None else [EVERY_TENANT]
        return ProviderAccounts(
            config_tenants=dict(self.provider_config_tenants),
            default_tenants=frozenset(default_tenants),
            keys_dir=self.provider_keys_dir,
            key_cache_seconds=self.provider_key_cache_seconds,
        )

    @field_validator("provider_config_tenants")
    @classmethod
    def _config_ids_name_secrets(cls, value: dict[str, str]) -> dict[str, str]:
        for config_id, tenant in value.items():
            if not config_id or (problem := config_syntax_problem(config_id)) is not None:
                # Not echoed: a misplaced key must not land in a log.
                raise ValueError(f"a config id {problem or 'must not be empty'}")
            if not tenant.strip():
                raise ValueError(f"config id {config_id!r} names no tenant")
        return value

    @model_validator(mode="after")
    def _mail_points_somewhere_real(self) -> DispatcherSettings:
        if self.allow_local_mail_urls or self.dev_insecure:
            log.warning(
                "dispatcher.local_mail_urls_allowed",
                unsubscribe_base_url=self.unsubscribe_base_url,
                reply_domain=self.reply_domain,
                message_id_domain=self.message_id_domain,
                hint="development only: production mail must point at public https links and real domains",
            )
            return self
        url = urlsplit(self.unsubscribe_base_url)
        if url.scheme != "https":
            raise ValueError(
                f"DISPATCHER_UNSUBSCRIBE_BASE_URL must be an https URL (RFC 8058 one-click), not {url.scheme or 'none'}"
            )
        problem = reserved_host_problem(url.hostname or "")
        if problem:
            raise ValueError(f"DISPATCHER_UNSUBSCRIBE_BASE_URL: {problem}")
        for name, domain in (
            ("DISPATCHER_REPLY_DOMAIN", self.reply_domain),
            ("DISPATCHER_MESSAGE_ID_DOMAIN", self.message_id_domain),
        ):
            problem = reserved_host_problem(domain)
            if problem:
                raise ValueError(f"{name}: {problem}")
        return self

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            horizon=timedelta(seconds=self.retry_horizon_seconds),
            base=timedelta(seconds=self.retry_backoff_seconds),
            cap=timedelta(seconds=self.retry_backoff_max_seconds),
        )

    @property
    def requires_postal_address(self) -> bool:
        if self.require_postal_address is not None:
            return self.require_postal_address
        return self.sendgrid_api_key is not None

    @property
    def sends_in_flight(self) -> int:
        return self.send_concurrency

    @property
    def send_batch_size(self) -> int:
        return max(1, self.sends_in_flight // self.send_batches_in_flight)

    @field_validator("sendgrid_api_key", mode="before")
    @classmethod
    def _empty_key_is_no_key(cls, value: object) -> object:
        # `SENDGRID_API_KEY=` in an env file means "not set", not "send with an empty key".
        return None if value == "" else value
