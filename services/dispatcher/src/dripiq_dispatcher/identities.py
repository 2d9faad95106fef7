"""Sender identities: the verified from-addresses of each tenant, their mailbox caps and the
mailbox replies to their emails are forwarded to."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as pb
from dripiq_common import paging, validation
from dripiq_common.clock import Clock
from dripiq_common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from dripiq_dispatcher import convert, domain, repository
from dripiq_dispatcher.accounts import AccountUnusable, ProviderAccount, ProviderAccounts
from dripiq_dispatcher.sender_auth import ProviderRefused, ProviderUnavailable, SenderCheck

log = structlog.get_logger(__name__)


class SenderChecks(Protocol):
    async def check(self, from_email: str, account: ProviderAccount) -> SenderCheck:
        """What the provider says about sending as `from_email` through `account`."""
        ...


@dataclass
class SenderIdentities:
    engine: AsyncEngine
    clock: Clock
    # Asked by VerifySenderIdentity: the provider is the only judge of who may send as an address.
    checks: SenderChecks
    accounts: ProviderAccounts
    # Told when an identity passed, so the messages held while it was not verified go on at once.
    on_verified: Callable[[], None] = field(default=lambda: None)

    async def create(self, request: pb.CreateSenderIdentityRequest) -> pb.SenderIdentity:
        tenant = validation.tenant_id(request.tenant_id)
        # Stored lower-cased so "Sales@x" and "sales@x" are one identity per tenant.
        from_email = domain.normalize_address(validation.email(request.from_email.strip(), "from_email"))
        from_name = validation.optional(request.from_name, "from_name")
        provider_config_id = self._provider_config_id(tenant, request.provider_config_id, "provider_config_id")
        caps = {cap: _cap(getattr(request, cap), cap) for cap in MAILBOX_CAPS}
        forward_to = domain.optional_address(request.forward_to, "forward_to")
        async with self.engine.begin() as conn:
            row, created = await repository.identities.create_identity(
                conn,
                identity_id=str(uuid.uuid4()),
                tenant_id=tenant,
                from_email=from_email,
                from_name=from_name,
                provider_config_id=provider_config_id,
                caps=caps,
                forward_to=forward_to,
                now=self.clock.now(),
            )
        if not created:
            raise AlreadyExists(f"sender identity {row.id} already has from_email {from_email}")
        return convert.identity_to_proto(row)

    async def get(self, tenant_id: str, identity_id: str) -> pb.SenderIdentity:
        tenant = validation.tenant_id(tenant_id)
        validation.required(identity_id, "sender_identity_id")
        async with self.engine.connect() as conn:
            row = await repository.identities.get_identity(conn, tenant_id=tenant, identity_id=identity_id)
        return _identity_found(row, identity_id)

    async def verify(self, tenant_id: str, identity_id: str) -> pb.SenderIdentity:
        """Asks SendGrid, in the account the identity sends through, whether it will send as the
        identity's address, and records the answer: verified by its authenticated domain or as
        a single sender, or no longer verified (FAILED_PRECONDITION says why). When SendGrid
        cannot be asked, UNAVAILABLE and nothing changes."""
        tenant = validation.tenant_id(tenant_id)
        validation.required(identity_id, "sender_identity_id")
        async with self.engine.connect() as conn:
            row = await repository.identities.get_identity(conn, tenant_id=tenant, identity_id=identity_id)
        if row is None:
            raise NotFound(f"sender identity {identity_id!r} not found")
        try:
            account = self.accounts.account(tenant, row.provider_config_id)
        except AccountUnusable as exc:
            raise FailedPrecondition(f"sender identity {identity_id!r} cannot be verified: {exc}") from None
        try:
            check = await self.checks.check(row.from_email, account)
        except ProviderUnavailable as exc:
            log.warning("identity.verify_unavailable", tenant_id=tenant, identity_id=identity_id, reason=str(exc))
            raise Unavailable(f"SendGrid could not be asked, nothing was changed; try again: {exc}") from None
        except ProviderRefused as exc:
            raise FailedPrecondition(
                f"SendGrid refused the credentials of {account.label}: {exc.args[0]} (the key needs read "
                "access to Sender Authentication and to Verified Senders)"
            ) from None
        async with self.engine.begin() as conn:
            updated = await repository.identities.record_verification(
                conn,
                tenant_id=tenant,
                identity_id=identity_id,
                provider_config_id=row.provider_config_id,
                verified_by=check.verified_by.value if check.verified_by else "",
                now=self.clock.now(),
            )
        if updated is None:
            raise FailedPrecondition(
                f"sender identity {identity_id!r} was deleted or moved to another provider account while "
                "SendGrid was asked; verify it again"
            )
        log.info(
            "identity.verified" if check.verified_by else "identity.not_verified",
            tenant_id=tenant,
            identity_id=identity_id,
            verified_by=str(check.verified_by or ""),
            account=account.label,
        )
        if check.verified_by is None:
            raise FailedPrecondition(not_verified_reason(row.from_email, check, account))
        self.on_verified()
        return convert.identity_to_proto(updated)

    async def list_sender_identities(self, request: pb.ListSenderIdentitiesRequest) -> pb.ListSenderIdentitiesResponse:
        tenant = validation.tenant_id(request.tenant_id)
        size = paging.page_size(request.page_size)
        after = paging.decode_token(request.page_token, datetime, str)
        async with self.engine.connect() as conn:
            rows = await repository.identities.list_identities(conn, tenant_id=tenant, after=after, limit=size + 1)
        page = rows[:size]
        token = paging.encode_token(page[-1].created_at.isoformat(), page[-1].id) if len(rows) > size else ""
        return pb.ListSenderIdentitiesResponse(
            sender_identities=[convert.identity_to_proto(r) for r in page], next_page_token=token
        )

    async def update(self, request: pb.UpdateSenderIdentityRequest) -> pb.SenderIdentity:
        """Changes the fields the update_mask names (an empty one: from_name and
        provider_config_id, as before the other fields existed); from_email never changes."""
        given = request.sender_identity
        tenant = validation.tenant_id(given.tenant_id, "sender_identity.tenant_id")
        identity_id = validation.required(given.sender_identity_id, "sender_identity.sender_identity_id")
        paths = set(request.update_mask.paths) or set(DEFAULT_IDENTITY_FIELDS)
        unknown = paths - set(UPDATABLE_IDENTITY_FIELDS)
        if unknown:
            raise InvalidArgument("update_mask", f"cannot update {', '.join(sorted(unknown))}")
        values: dict[str, str | int] = {}
        if "from_name" in paths:
            values["from_name"] = validation.optional(given.from_name, "sender_identity.from_name")
        if "provider_config_id" in paths:
            values["provider_config_id"] = self._provider_config_id(
                tenant, given.provider_config_id, "sender_identity.provider_config_id"
            )
        for cap in MAILBOX_CAPS:
            if cap in paths:
                values[cap] = _cap(getattr(given, cap), f"sender_identity.{cap}")
        if "forward_to" in paths:
            values["forward_to"] = domain.optional_address(given.forward_to, "sender_identity.forward_to")
        async with self.engine.begin() as conn:
            row = await repository.identities.update_identity(
                conn, tenant_id=tenant, identity_id=identity_id, values=values, now=self.clock.now()
            )
        return _identity_found(row, identity_id)

    def _provider_config_id(self, tenant_id: str, value: str, field: str) -> str:
        """A config id this tenant may send through; the value is never echoed (it may be a key)."""
        config_id = value.strip()
        if (problem := self.accounts.problem(tenant_id, config_id)) is not None:
            raise InvalidArgument(field, problem)
        return config_id

    async def delete(self, tenant_id: str, identity_id: str) -> None:
        """Messages sent with the identity keep its id (there is no foreign key)."""
        tenant = validation.tenant_id(tenant_id)
        validation.required(identity_id, "sender_identity_id")
        async with self.engine.begin() as conn:
            deleted = await repository.identities.delete_identity(conn, tenant_id=tenant, identity_id=identity_id)
        if not deleted:
            raise NotFound(f"sender identity {identity_id!r} not found")


def not_verified_reason(from_email: str, check: SenderCheck, account: ProviderAccount) -> str:
    domain_name = from_email.rpartition("@")[2]
    whose = "this tenant's account" + (f" ({account.config_id})" if account.config_id else " (the default account)")
    state = {
        "absent": "is not authenticated",
        "not valid": "is authenticated but its DNS records do not validate",
    }.get(check.domain_state, "is not authenticated")
    return f"domain {domain_name} {state} at SendGrid for {whose}, and {from_email} is not a verified sender there"


def _identity_found(row: Any, identity_id: str) -> pb.SenderIdentity:
    """The identity as answered, or NOT_FOUND (also for another tenant's id)."""
    if row is None:
        raise NotFound(f"sender identity {identity_id!r} not found")
    return convert.identity_to_proto(row)


# An empty update_mask updates the fields as before the caps existed; caps and forward_to are
# set by naming them, so a caller that knows nothing of them never clears them.
DEFAULT_IDENTITY_FIELDS = ("from_name", "provider_config_id")
MAILBOX_CAPS = ("per_minute", "per_day")
UPDATABLE_IDENTITY_FIELDS = (*DEFAULT_IDENTITY_FIELDS, *MAILBOX_CAPS, "forward_to")


def _cap(value: int, field: str) -> int:
    if value < 0:
        raise InvalidArgument(field, "must not be negative (0 means no cap)")
    return value
