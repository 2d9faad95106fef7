"""Sender identities: the verified from-addresses of each tenant, their mailbox caps and the
mailbox replies to their emails are forwarded to."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as pb
from dripiq_common import paging, validation
from dripiq_common.clock import Clock
from dripiq_common.errors import AlreadyExists, InvalidArgument, NotFound
from dripiq_dispatcher import convert, domain, repository

log = structlog.get_logger(__name__)


@dataclass
class SenderIdentities:
    engine: AsyncEngine
    clock: Clock

    async def create(self, request: pb.CreateSenderIdentityRequest) -> pb.SenderIdentity:
        tenant = validation.tenant_id(request.tenant_id)
        # Stored lower-cased so "Sales@x" and "sales@x" are one identity per tenant.
        from_email = domain.normalize_address(validation.email(request.from_email.strip(), "from_email"))
        from_name = validation.optional(request.from_name, "from_name")
        provider_config_id = _provider_config_id(request.provider_config_id, "provider_config_id")
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
        tenant = validation.tenant_id(tenant_id)
        validation.required(identity_id, "sender_identity_id")
        async with self.engine.begin() as conn:
            row = await repository.identities.verify_identity(
                conn, tenant_id=tenant, identity_id=identity_id, now=self.clock.now()
            )
        return _identity_found(row, identity_id)

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
            values["provider_config_id"] = _provider_config_id(
                given.provider_config_id, "sender_identity.provider_config_id"
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

    async def delete(self, tenant_id: str, identity_id: str) -> None:
        """Messages sent with the identity keep its id (there is no foreign key)."""
        tenant = validation.tenant_id(tenant_id)
        validation.required(identity_id, "sender_identity_id")
        async with self.engine.begin() as conn:
            deleted = await repository.identities.delete_identity(conn, tenant_id=tenant, identity_id=identity_id)
        if not deleted:
            raise NotFound(f"sender identity {identity_id!r} not found")


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
# SendGrid API keys start with this; provider_config_id must name a secret, never hold a key.
_SENDGRID_KEY_PREFIX = "SG."


def _provider_config_id(value: str, field: str) -> str:
    if value.strip().startswith(_SENDGRID_KEY_PREFIX):
        # The value is not echoed: it may be a live key.
        raise InvalidArgument(field, "must name the secret holding the provider key, not be the key itself")
    return validation.optional(value, field)


def _cap(value: int, field: str) -> int:
    if value < 0:
        raise InvalidArgument(field, "must not be negative (0 means no cap)")
    return value
