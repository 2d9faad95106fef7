"""SendGrid accounts as the fake keeps them: who may send as which address.

An account is known by the API key a request carries; a parent account acts for one of its
subusers with the `On-Behalf-Of: <username>` header. Each account has its own authenticated
domains (Domain Authentication: `valid` once its DNS records check out) and its own single
senders (`verified` once the address's owner clicked SendGrid's link). Mail Send, like
SendGrid's, refuses a From address that is neither on a valid domain of the sending account
nor one of its verified senders. The parent's domain list shows its subusers' domains too,
unless asked with `exclude_subusers=true`; a subuser sees only its own.

The answers' shapes are those of SendGrid's published OpenAPI description (sendgrid-oai:
`GET /v3/whitelabel/domains`, `POST /v3/whitelabel/domains/{id}/validate`,
`GET /v3/verified_senders`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

# SendGrid's Mail Send answer (403, field "from") to a From address it may not send as.
FROM_NOT_VERIFIED = (
    "The from address does not match a verified Sender Identity. Mail cannot be sent until this error "
    "is resolved. Visit https://sendgrid.com/docs/for-developers/sending-email/sender-identity/ to see "
    "the Sender Identity requirements"
)
# SendGrid's answer to a key that may not do what it asks (and, here, an unknown subuser).
ACCESS_FORBIDDEN = "access forbidden"

_ids = itertools.count(1001)


@dataclass
class AuthenticatedDomain:
    id: int
    user_id: int
    domain: str
    username: str
    valid: bool
    # Whether the DNS records are in place: validating sets `valid` to this.
    dns_ready: bool

    def to_json(self) -> dict[str, Any]:
        host = f"u{self.user_id}.wl.sendgrid.net"
        records = {
            "mail_cname": {"valid": self.valid, "type": "cname", "host": f"em.{self.domain}", "data": host},
            "dkim1": {
                "valid": self.valid,
                "type": "cname",
                "host": f"s1._domainkey.{self.domain}",
                "data": f"s1.domainkey.{host}",
            },
            "dkim2": {
                "valid": self.valid,
                "type": "cname",
                "host": f"s2._domainkey.{self.domain}",
                "data": f"s2.domainkey.{host}",
            },
        }
        return {
            "id": self.id,
            "user_id": self.user_id,
            "subdomain": "em",
            "domain": self.domain,
            "username": self.username,
            "ips": [],
            "custom_spf": False,
            "default": False,
            "legacy": False,
            "automatic_security": True,
            "valid": self.valid,
            "dns": records,
        }

    def validation_json(self) -> dict[str, Any]:
        reason = None if self.valid else f"Expected CNAME for em.{self.domain} but found none."
        check = {"valid": self.valid, "reason": reason}
        return {
            "id": self.id,
            "valid": self.valid,
            "validation_results": {"mail_cname": check, "dkim1": check, "dkim2": check},
        }


@dataclass
class SingleSender:
    id: int
    from_email: str
    verified: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "nickname": self.from_email,
            "from_email": self.from_email,
            "from_name": "",
            "reply_to": self.from_email,
            "reply_to_name": "",
            "address": "1 Main St",
            "address2": "",
            "state": "",
            "city": "Springfield",
            "country": "USA",
            "zip": "00000",
            "verified": self.verified,
            "locked": False,
        }


@dataclass
class Account:
    username: str
    user_id: int
    domains: list[AuthenticatedDomain] = field(default_factory=list)
    senders: list[SingleSender] = field(default_factory=list)
    subusers: dict[str, Account] = field(default_factory=dict)

    def may_send_as(self, from_email: str) -> bool:
        address = from_email.lower()
        domain = address.rpartition("@")[2]
        return any(d.valid and d.domain == domain for d in self.domains) or any(
            s.verified and s.from_email == address for s in self.senders
        )

    def listed_domains(self, *, include_subusers: bool) -> list[AuthenticatedDomain]:
        listed = list(self.domains)
        if include_subusers:
            listed += [d for sub in self.subusers.values() for d in sub.domains]
        return sorted(listed, key=lambda d: d.id)


class Accounts:
    """Every account the fake has seen, by API key; subusers hang off their parent."""

    def __init__(self) -> None:
        self._by_key: dict[str, Account] = {}

    def parent(self, api_key: str) -> Account:
        """The account behind a key; a key seen first is a fresh account with nothing verified."""
        if api_key not in self._by_key:
            user_id = next(_ids)
            self._by_key[api_key] = Account(username=f"parent-{user_id}", user_id=user_id)
        return self._by_key[api_key]

    def acting(self, api_key: str, on_behalf_of: str | None) -> Account | None:
        """Who a request acts as; None for a subuser the key's account does not have."""
        account = self.parent(api_key)
        if on_behalf_of is None:
            return account
        return account.subusers.get(on_behalf_of.strip())

    def subuser(self, api_key: str, username: str) -> Account:
        parent = self.parent(api_key)
        if username not in parent.subusers:
            parent.subusers[username] = Account(username=username, user_id=next(_ids))
        return parent.subusers[username]

    def account(self, api_key: str, subuser: str | None = None) -> Account:
        return self.subuser(api_key, subuser) if subuser else self.parent(api_key)

    def authenticate_domain(
        self,
        api_key: str,
        domain: str,
        *,
        valid: bool = True,
        dns_ready: bool | None = None,
        subuser: str | None = None,
    ) -> AuthenticatedDomain:
        account = self.account(api_key, subuser)
        entry = AuthenticatedDomain(
            id=next(_ids),
            user_id=account.user_id,
            domain=domain.lower(),
            username=account.username,
            valid=valid,
            dns_ready=valid if dns_ready is None else dns_ready,
        )
        account.domains.append(entry)
        return entry

    def add_sender(
        self, api_key: str, from_email: str, *, verified: bool = True, subuser: str | None = None
    ) -> SingleSender:
        sender = SingleSender(id=next(_ids), from_email=from_email.lower(), verified=verified)
        self.account(api_key, subuser).senders.append(sender)
        return sender
