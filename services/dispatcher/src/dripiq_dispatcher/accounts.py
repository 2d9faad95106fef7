"""Which SendGrid account an identity sends through: its `provider_config_id`, bound to a tenant.

    ""               the dispatcher's own account (SENDGRID_API_KEY)
    "subuser:<name>" a subuser of that account: its key, with `On-Behalf-Of: <name>`
    "key:<name>"     the key in the file <DISPATCHER_PROVIDER_KEYS_DIR>/<name> (a mounted Secret)

A config id is usable only by the tenant DISPATCHER_PROVIDER_CONFIG_TENANTS binds it to, and the
default account only by the tenants DISPATCHER_DEFAULT_ACCOUNT_TENANTS names: a tenant that could
name another's account could verify and send as that tenant's domains. A key file is read when
used and kept for `key_cache_seconds`, so a rotated Secret is picked up without a restart.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

SUBUSER = "subuser"
KEY = "key"
# SendGrid usernames, and nothing that could end or fold an HTTP header.
_SUBUSER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}")
# A Kubernetes Secret's keys ([-._a-zA-Z0-9]+), which become file names; never a path.
_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")
# SendGrid API keys start with this; a config id names a secret, it never holds one.
SENDGRID_KEY_PREFIX = "SG."
# Every tenant may use the default account (one tenant per deployment, or a local fake).
EVERY_TENANT = "*"


class AccountUnusable(Exception):
    """The config id names no account this tenant may send through now (the reason says why)."""


@dataclass(frozen=True)
class ProviderAccount:
    """The credentials of one call: `api_key` None means the sender's own (SENDGRID_API_KEY)."""

    config_id: str
    api_key: str | None = field(default=None, repr=False)
    on_behalf_of: str = ""

    @property
    def label(self) -> str:
        return self.config_id or "the default account"


def config_syntax_problem(value: str) -> str | None:
    """Why `value` is not a provider_config_id, or None. Never echoes the value: it may be a key."""
    if value.startswith(SENDGRID_KEY_PREFIX):
        return "must name the secret holding the provider key, not be the key itself"
    if not value:
        return None
    kind, _, name = value.partition(":")
    if kind == SUBUSER and _SUBUSER_NAME.fullmatch(name):
        return None
    if kind == KEY and _KEY_NAME.fullmatch(name) and ".." not in name:
        return None
    return (
        "must be empty (the default account), subuser:<SendGrid subuser username> or key:<file name in "
        "DISPATCHER_PROVIDER_KEYS_DIR> (letters, digits, '.', '_', '-')"
    )


@dataclass
class ProviderAccounts:
    """Resolves a tenant's provider_config_id to the credentials to call SendGrid with."""

    # Config id -> the one tenant that may use it.
    config_tenants: Mapping[str, str] = field(default_factory=dict)
    # Tenants that may use the default account; containing EVERY_TENANT: all of them.
    default_tenants: Collection[str] = (EVERY_TENANT,)
    keys_dir: Path | None = None
    key_cache_seconds: float = 30.0
    monotonic: Callable[[], float] = time.monotonic
    _keys: dict[str, tuple[float, str]] = field(default_factory=dict, init=False, repr=False)

    def problem(self, tenant_id: str, config_id: str) -> str | None:
        """Why this tenant may not send through `config_id`, or None. Another tenant's config id
        reads like an unknown one: the answer tells nothing about other tenants."""
        if (syntax := config_syntax_problem(config_id)) is not None:
            return syntax
        if not config_id:
            if EVERY_TENANT in self.default_tenants or tenant_id in self.default_tenants:
                return None
            return (
                "this tenant may not send through the default SendGrid account "
                "(DISPATCHER_DEFAULT_ACCOUNT_TENANTS); name its own with subuser:<name> or key:<name>"
            )
        if self.config_tenants.get(config_id) != tenant_id:
            return "is not a provider configuration of this tenant (DISPATCHER_PROVIDER_CONFIG_TENANTS)"
        if config_id.startswith(f"{KEY}:") and self.keys_dir is None:
            return "names a key file, but DISPATCHER_PROVIDER_KEYS_DIR is not set"
        return None

    def account(self, tenant_id: str, config_id: str) -> ProviderAccount:
        """The credentials to call with; AccountUnusable when the tenant may not use them or the
        key file cannot be read."""
        if (syntax := config_syntax_problem(config_id)) is not None:
            raise AccountUnusable(f"provider_config_id {syntax}")
        if (problem := self.problem(tenant_id, config_id)) is not None:
            raise AccountUnusable(f"provider_config_id {config_id!r} {problem}" if config_id else problem)
        kind, _, name = config_id.partition(":")
        if kind == SUBUSER:
            return ProviderAccount(config_id, on_behalf_of=name)
        if kind == KEY:
            return ProviderAccount(config_id, api_key=self._key(name))
        return ProviderAccount("")

    def _key(self, name: str) -> str:
        now = self.monotonic()
        cached = self._keys.get(name)
        if cached is not None and now - cached[0] < self.key_cache_seconds:
            return cached[1]
        assert self.keys_dir is not None
        path = self.keys_dir / name
        try:
            key = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise AccountUnusable(f"the key file {path} cannot be read: {reason}") from None
        if not key or any(c.isspace() for c in key):
            raise AccountUnusable(f"the key file {path} does not hold one API key on one line")
        self._keys[name] = (now, key)
        return key
