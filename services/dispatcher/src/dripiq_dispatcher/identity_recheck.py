"""The periodic re-check of sender identities at SendGrid: a domain whose authentication lapsed
marks its identities unverified before any of their mail is refused, and a lapsed identity
found valid again is verified again (its held messages are then released).

Each round claims a bounded batch of the identities asked longest ago (stamping them, under
SKIP LOCKED, so replicas never ask about the same one), then asks SendGrid about each. An
unanswered question changes nothing: the identity keeps its state and its old stamp, and the
round stops (SendGrid is down for the others too)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq_common.clock import Clock
from dripiq_dispatcher import repository
from dripiq_dispatcher.accounts import AccountUnusable, ProviderAccount, ProviderAccounts
from dripiq_dispatcher.failures import truncate
from dripiq_dispatcher.identities import SenderChecks, not_verified_reason
from dripiq_dispatcher.sender_auth import ProviderRefused, ProviderUnavailable, SenderCheck

log = structlog.get_logger(__name__)

RECHECK_BATCH = 20


@dataclass
class IdentityRecheck:
    engine: AsyncEngine
    clock: Clock
    checks: SenderChecks
    accounts: ProviderAccounts
    # How long an identity goes without being asked again.
    every: timedelta
    batch: int = RECHECK_BATCH
    # Told when an identity became verified again, so its held messages are released at once.
    on_verified: Callable[[], None] = field(default=lambda: None)

    async def recheck(self) -> int:
        """One round; how many identities SendGrid answered about (fewer than claimed when it
        stopped answering, so the loop waits its poll before the next round)."""
        now = self.clock.now()
        async with self.engine.begin() as conn:
            claimed = await repository.identities.claim_for_recheck(
                conn, checked_before=now - self.every, now=now, limit=self.batch
            )
        answered = 0
        for index, row in enumerate(claimed):
            try:
                account = self.accounts.account(row["tenant_id"], row["provider_config_id"])
                check = await self.checks.check(row["from_email"], account)
            except ProviderUnavailable as exc:
                log.warning("identity.recheck_unanswered", identity_id=row["id"], reason=str(exc))
                async with self.engine.begin() as conn:
                    for skipped in claimed[index:]:
                        await repository.identities.unclaim(
                            conn, identity_id=skipped["id"], claimed_at=now, previous=skipped["previous_check"]
                        )
                return answered
            except (AccountUnusable, ProviderRefused) as exc:
                # Ours to fix (a key SendGrid refuses, a config id gone): nothing is concluded
                # about the identity; it is asked again next period.
                log.error(
                    "identity.recheck_refused", identity_id=row["id"], tenant_id=row["tenant_id"], reason=str(exc)
                )
                answered += 1
                continue
            answered += 1
            await self._record(row, check.verified_by.value if check.verified_by else "", check, account)
        return answered

    async def _record(self, row: Any, verified_by: str, check: SenderCheck, account: ProviderAccount) -> None:
        now = self.clock.now()
        ids = {"tenant_id": row["tenant_id"], "identity_id": row["id"]}
        async with self.engine.begin() as conn:
            if verified_by:
                await repository.identities.record_verification(
                    conn,
                    tenant_id=row["tenant_id"],
                    identity_id=row["id"],
                    provider_config_id=row["provider_config_id"],
                    verified_by=verified_by,
                    now=now,
                )
            elif row["verified"]:
                reason = truncate(
                    f"re-check at {now.isoformat()}: {not_verified_reason(row['from_email'], check, account)}"
                )
                lapsed = await repository.identities.mark_refused(
                    conn,
                    tenant_id=row["tenant_id"],
                    identity_id=row["id"],
                    provider_config_id=row["provider_config_id"],
                    reason=reason,
                    now=now,
                )
                if lapsed:
                    log.error("identity.lapsed_at_recheck", reason=reason, **ids)
        if verified_by and not row["verified"]:
            log.info("identity.verified_again_at_recheck", verified_by=verified_by, **ids)
            self.on_verified()
