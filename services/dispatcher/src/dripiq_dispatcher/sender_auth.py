"""Whether SendGrid will send as an address for one account, asked of SendGrid itself through the
`sendgrid` library: the address's domain is authenticated there (Domain Authentication, `valid`,
validated again when it is not yet), or the address is a verified single sender there.

The parent account's domain list includes its subusers' domains unless told not to: a parent
asks with `exclude_subusers`, so a subuser's domain (another tenant's) never verifies an
identity of the parent account. A subuser is asked on its own behalf (On-Behalf-Of).
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from dripiq_dispatcher.accounts import ProviderAccount
from dripiq_dispatcher.failures import provider_reason

# Pages asked for at most per list: a bound on a runaway answer, far above real accounts.
MAX_PAGES = 20
DOMAIN_PAGE = 50
SENDER_PAGE = 100


class VerifiedBy(StrEnum):
    DOMAIN = "domain"
    SINGLE_SENDER = "single_sender"


class ProviderUnavailable(Exception):
    """SendGrid did not answer (unreachable, timed out, 5xx, 429): nothing can be concluded."""


class ProviderRefused(Exception):
    """SendGrid refused the question itself (a key it does not accept, or without the scopes)."""


@dataclass(frozen=True)
class SenderCheck:
    """What SendGrid said about one address in one account."""

    verified_by: VerifiedBy | None
    # The domain's state there: "valid", "not valid" (authenticated, DNS not in place) or "absent".
    domain_state: str


@dataclass(frozen=True)
class SendGridSenderChecks:
    host: str
    # The default account's key (a subuser is asked with it, on the subuser's behalf).
    api_key: str
    timeout_seconds: float = 10.0

    async def check(self, from_email: str, account: ProviderAccount) -> SenderCheck:
        # The library is synchronous (urllib): on a worker thread, bounded by the timeout.
        return await asyncio.to_thread(self._check, from_email.lower(), account)

    def _check(self, from_email: str, account: ProviderAccount) -> SenderCheck:
        api = self._client(account)
        domain = from_email.rpartition("@")[2]
        state = "absent"
        for entry in self._domains(api, domain, parent=not account.on_behalf_of):
            if entry.get("valid") is True:
                return SenderCheck(VerifiedBy.DOMAIN, "valid")
            state = "not valid"
            if self._validates(api, entry.get("id")):
                return SenderCheck(VerifiedBy.DOMAIN, "valid")
        if self._single_sender(api, from_email):
            return SenderCheck(VerifiedBy.SINGLE_SENDER, state)
        return SenderCheck(None, state)

    def _client(self, account: ProviderAccount) -> Any:
        api = SendGridAPIClient(
            account.api_key or self.api_key, host=self.host, impersonate_subuser=account.on_behalf_of or None
        )
        api.client.timeout = self.timeout_seconds
        return api.client

    def _domains(self, api: Any, domain: str, *, parent: bool) -> list[dict[str, Any]]:
        """The account's authentications of exactly `domain` (the `domain` filter is a search)."""
        found: list[dict[str, Any]] = []
        for page in range(MAX_PAGES):
            query: dict[str, Any] = {"domain": domain, "limit": DOMAIN_PAGE, "offset": page * DOMAIN_PAGE}
            if parent:
                query["exclude_subusers"] = "true"
            entries = _json(_call(api.whitelabel.domains.get, query_params=query))
            if not isinstance(entries, list):
                raise ProviderUnavailable("SendGrid answered the domain list with something other than a list")
            found += [e for e in entries if isinstance(e, dict) and str(e.get("domain", "")).lower() == domain]
            if len(entries) < DOMAIN_PAGE:
                break
        return found

    def _validates(self, api: Any, domain_id: Any) -> bool:
        """Asks SendGrid to check the domain's DNS again now; an id gone meanwhile is not valid."""
        if not isinstance(domain_id, int):
            return False
        try:
            answer = _json(_call(api.whitelabel.domains._(str(domain_id)).validate.post))
        except ProviderRefused as exc:
            if exc.args and exc.args[1] == 404:
                return False
            raise
        return isinstance(answer, dict) and answer.get("valid") is True

    def _single_sender(self, api: Any, from_email: str) -> bool:
        last_seen: int | None = None
        for _ in range(MAX_PAGES):
            query: dict[str, Any] = {"limit": SENDER_PAGE}
            if last_seen is not None:
                query["lastSeenID"] = last_seen
            answer = _json(_call(api.verified_senders.get, query_params=query))
            results = answer.get("results") if isinstance(answer, dict) else None
            if not isinstance(results, list):
                raise ProviderUnavailable("SendGrid answered the verified senders without results")
            for sender in results:
                if (
                    isinstance(sender, dict)
                    and str(sender.get("from_email", "")).lower() == from_email
                    and sender.get("verified") is True
                ):
                    return True
            ids = [s["id"] for s in results if isinstance(s, dict) and isinstance(s.get("id"), int)]
            if len(results) < SENDER_PAGE or not ids or (last_seen is not None and max(ids) <= last_seen):
                return False
            last_seen = max(ids)
        return False


def _call(request: Any, **options: Any) -> Any:
    """One library call; its failures as ours."""
    try:
        return request(**options)
    except HTTPError as exc:
        status = int(exc.status_code)
        reason = f"SendGrid {status}: {provider_reason(exc.body)}"
        if status in (408, 429) or status >= 500:
            raise ProviderUnavailable(reason) from None
        raise ProviderRefused(reason, status) from None
    except (urllib.error.URLError, OSError) as exc:
        # URLError: never connected; OSError (timeouts, resets): no answer came back.
        raise ProviderUnavailable(f"SendGrid unreachable: {getattr(exc, 'reason', exc)}") from None


def _json(response: Any) -> Any:
    try:
        return json.loads(response.body or b"null")
    except ValueError:
        raise ProviderUnavailable("SendGrid answered with a body that is not JSON") from None
