"""Suppressions: the addresses a tenant must never mail again, from the API, imports and the
engagement that calls for it (unsubscribes, spam reports, hard bounces, "take me off your list")."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as pb
from dripiq.events.v1 import messages_pb2 as events_pb2
from dripiq_common import engagement, paging, validation
from dripiq_common.clock import Clock
from dripiq_common.errors import InvalidArgument
from dripiq_dispatcher import convert, domain, repository

log = structlog.get_logger(__name__)

MAX_IMPORT_SUPPRESSIONS = 10_000
MAX_CHECK_ADDRESSES = 1000
# Reason of a suppression added through the API without one.
MANUAL_REASON = "manual"


@dataclass
class Suppressions:
    engine: AsyncEngine
    clock: Clock

    async def add(self, tenant_id: str, address: str, reason: str) -> pb.Suppression:
        tenant = validation.tenant_id(tenant_id)
        normalized = domain.normalize_address(validation.email(address.strip(), "address"))
        why = validation.required(reason.strip().lower() or MANUAL_REASON, "reason", max_length=64)
        async with self.engine.begin() as conn:
            row = await repository.suppressions.add_suppression(
                conn,
                tenant_id=tenant,
                address=normalized,
                reason=why,
                source="api",
                now=self.clock.now(),
            )
        return convert.suppression_to_proto(row)

    async def check(self, tenant_id: str, addresses: Sequence[str]) -> list[pb.Suppression]:
        """Every suppression of the given addresses, named as the caller spelled them."""
        tenant = validation.tenant_id(tenant_id)
        if len(addresses) > MAX_CHECK_ADDRESSES:
            raise InvalidArgument("addresses", f"must hold at most {MAX_CHECK_ADDRESSES} addresses")
        spelled: dict[str, list[str]] = {}
        for index, address in enumerate(addresses):
            validation.required(address, f"addresses[{index}]", max_length=320)
            spellings = spelled.setdefault(domain.normalize_address(address), [])
            if address not in spellings:
                spellings.append(address)
        if not spelled:
            return []
        async with self.engine.connect() as conn:
            rows = await repository.suppressions.find_suppressions(conn, tenant_id=tenant, addresses=list(spelled))
        return [convert.suppression_to_proto(row, spelling) for row in rows for spelling in spelled[row.address]]

    async def remove(self, tenant_id: str, address: str, reason: str) -> int:
        """Removes the address's suppressions of `reason`, or all of them when it is empty."""
        tenant = validation.tenant_id(tenant_id)
        normalized = domain.normalize_address(validation.email(address.strip(), "address"))
        why = reason.strip().lower() or None
        async with self.engine.begin() as conn:
            removed = await repository.suppressions.remove_suppressions(
                conn, tenant_id=tenant, address=normalized, reason=why
            )
        log.info("suppression.removed", tenant_id=tenant, reason=why, removed=removed)
        return removed

    async def list_suppressions(self, request: pb.ListSuppressionsRequest) -> pb.ListSuppressionsResponse:
        tenant = validation.tenant_id(request.tenant_id)
        size = paging.page_size(request.page_size)
        after = paging.decode_token(request.page_token, datetime, int)
        reason = request.reason.strip().lower() or None
        async with self.engine.connect() as conn:
            rows = await repository.suppressions.list_suppressions(
                conn, tenant_id=tenant, reason=reason, after=after, limit=size + 1
            )
        page = rows[:size]
        token = paging.encode_token(page[-1].created_at.isoformat(), page[-1].id) if len(rows) > size else ""
        return pb.ListSuppressionsResponse(
            suppressions=[convert.suppression_to_proto(r) for r in page], next_page_token=token
        )

    async def import_many(self, request: pb.ImportSuppressionsRequest) -> pb.ImportSuppressionsResponse:
        """Valid items go in with one statement; invalid ones are reported and skipped."""
        tenant = validation.tenant_id(request.tenant_id)
        if len(request.suppressions) > MAX_IMPORT_SUPPRESSIONS:
            raise InvalidArgument("suppressions", f"must hold at most {MAX_IMPORT_SUPPRESSIONS:,} items")
        items: dict[tuple[str, str], None] = {}
        rejected: list[str] = []
        for index, item in enumerate(request.suppressions):
            if item.tenant_id and item.tenant_id != tenant:
                raise InvalidArgument(f"suppressions[{index}].tenant_id", "must be empty or the request's tenant_id")
            try:
                address = domain.normalize_address(
                    validation.email(item.address.strip(), f"suppressions[{index}].address")
                )
                reason = validation.required(
                    item.reason.strip().lower() or MANUAL_REASON, f"suppressions[{index}].reason", max_length=64
                )
            except InvalidArgument as exc:
                rejected.append(str(exc))
                continue
            items[(address, reason)] = None
        async with self.engine.begin() as conn:
            imported = await repository.suppressions.import_suppressions(
                conn, tenant_id=tenant, items=list(items), source="import", now=self.clock.now()
            )
        log.info("suppression.imported", tenant_id=tenant, imported=imported, rejected=len(rejected))
        return pb.ImportSuppressionsResponse(imported_count=imported, rejected=rejected)

    async def handle_engagement(self, data: bytes) -> None:
        await self.handle_engagements(engagement.read(data))

    async def handle_engagements(self, events: Sequence[events_pb2.EngagementEvent]) -> None:
        """EngagementEvent facts: unsubscribes, spam reports, hard bounces, drops for a lasting
        reason and replies asking
        to be taken off the list suppress the address for the tenant, and a group resubscribe lifts a group unsubscribe that came
        before it, all in one transaction. A suppression is dated by its event. Any other event
        is passed over, and so is a fact that names no valid address: it never will, and the
        facts batched with it must not wait on it."""
        suppressing: list[tuple[events_pb2.EngagementEvent, str, str, str, datetime]] = []
        lifting: list[tuple[str, str, str, datetime]] = []
        for event in events:
            reason = suppression_reason(event.event_type, event.reason, event.reply_class)
            lifted = LIFTING_EVENTS.get(event.event_type)
            if reason is None and lifted is None:
                continue
            try:
                tenant = validation.tenant_id(event.tenant_id)
                address = domain.normalize_address(validation.email(event.email.strip(), "email"))
            except InvalidArgument as exc:
                log.warning(
                    "suppression.engagement_unusable",
                    event_id=event.event_id,
                    event_type=event.event_type,
                    message_id=event.message_id,
                    error=str(exc),
                )
                continue
            at = event.occurred_at.ToDatetime(tzinfo=UTC) if event.HasField("occurred_at") else self.clock.now()
            if reason is not None:
                suppressing.append((event, tenant, address, reason, at))
            elif lifted is not None:
                lifting.append((tenant, address, lifted, at))
        if not (suppressing or lifting):
            return
        async with self.engine.begin() as conn:
            if suppressing:
                await repository.suppressions.add_suppressions(
                    conn,
                    rows=[
                        {
                            "tenant_id": tenant,
                            "address": address,
                            "reason": reason,
                            "source": f"engagement:{event.event_id}",
                            "created_at": at,
                        }
                        for event, tenant, address, reason, at in suppressing
                    ],
                )
            # After the inserts: a batch holding both an unsubscribe and a later resubscribe
            # ends resubscribed.
            lifted_for = await repository.suppressions.lift_suppressions(conn, lifts=lifting)
        for event, tenant, _, reason, _ in suppressing:
            log.info(
                "suppression.from_engagement",
                tenant_id=tenant,
                reason=reason,
                event_id=event.event_id,
                message_id=event.message_id,
            )
        for tenant, _ in lifted_for:
            log.info("suppression.lifted_by_resubscribe", tenant_id=tenant)


# Engagement that means "never mail this address again" for the tenant.
SUPPRESSING_EVENTS = frozenset({"unsubscribe", "group_unsubscribe", "spamreport", "bounce"})


# SendGrid's `dropped` reasons that say the address itself must not be mailed again, and the
# suppression each one is; the others (spam content, a bad SMTPAPI header, the account over its
# quota) are about the message or the account, not the address.
LASTING_DROPS = {
    "Bounced Address": "bounce",
    "Unsubscribed Address": "unsubscribe",
    "Spam Reporting Address": "spamreport",
    "Invalid": "invalid",
}


# Engagement that takes back an earlier one: a contact who resubscribes to the SendGrid
# unsubscribe group lifts the suppression its group unsubscribe made (no other).
LIFTING_EVENTS = {"group_resubscribe": "group_unsubscribe"}


# A person's reply that asks, in words, to be taken off the list ("please remove me"): the
# events service classifies it and the address is suppressed as for a link unsubscribe.
UNSUBSCRIBE_REPLY_CLASS = "unsubscribe_request"


def suppression_reason(event_type: str, bounce_type: str, reply_class: str = "") -> str | None:
    """The suppression reason an engagement event calls for, or None.

    The events service puts SendGrid's bounce `type` in `reason`: a `blocked` bounce is a
    receiving server refusing for now (reputation, content), not a dead address. For a
    `dropped`, `reason` is SendGrid's reason for the drop (LASTING_DROPS). A reply
    classified as an unsubscribe request suppresses with reason `unsubscribe_request`.
    """
    if event_type == "reply" and reply_class == UNSUBSCRIBE_REPLY_CLASS:
        return UNSUBSCRIBE_REPLY_CLASS
    if event_type == "dropped":
        return LASTING_DROPS.get(bounce_type)
    if event_type not in SUPPRESSING_EVENTS:
        return None
    if event_type == "bounce" and bounce_type != "bounce":
        return None
    return event_type
