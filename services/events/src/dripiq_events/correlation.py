"""Correlation: tying each event to the message it is about.

A SendGrid event is tied by our `message_id` custom arg, else by SendGrid's message id; a reply
by its signed reply address, else by the Message-IDs its thread references. The rules are plain
functions; the lookups read our copies of sent messages on the caller's connection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from dripiq_common import validation
from dripiq_common.tokens import TokenSigner, token_from_reply_address
from dripiq_events import repository
from dripiq_events.domain import PROVIDER_SENDGRID, REJECTED, NewEvent, Outbound
from dripiq_events.sendgrid_events import ProviderEvent


async def correlate_batch(conn: AsyncConnection, events: Sequence[ProviderEvent]) -> list[NewEvent]:
    """The rows for a batch's events, each tied to its message where one is known."""
    by_message_id = await repository.outbound_by_message_ids(
        conn, message_ids=[e.message_id for e in events if e.message_id]
    )
    # SendGrid's id is only asked for where our own message_id did not find the message.
    by_provider_id = await repository.outbound_by_provider_ids(
        conn,
        provider_message_ids=[
            e.provider_message_id
            for e in events
            if e.provider_message_id and (e.message_id is None or e.message_id not in by_message_id)
        ],
    )
    return [correlate(e, by_message_id=by_message_id, by_provider_id=by_provider_id) for e in events]


def correlate(
    event: ProviderEvent,
    *,
    by_message_id: Mapping[str, Outbound],
    by_provider_id: Mapping[str, Outbound],
) -> NewEvent:
    """Tie an event to its message: by our `message_id` custom arg, else by SendGrid's id.

    The custom args alone are enough (the dispatcher may still be waiting for a webhook to
    prove an uncertain send went out, before we saw its "sent" outcome). When we do know the
    message, its facts win, and a tenant that disagrees with ours is not trusted.
    """
    if event.event_type == REJECTED:
        return _stored(event)
    if event.message_id:
        known = by_message_id.get(event.message_id)
        tenant = event.tenant_id or (known.tenant_id if known else None)
        if known is not None:
            return _stored(event, outbound=known) if known.tenant_id == tenant else _stored(event)
        if tenant and validation.is_tenant(tenant):
            return _stored(event, tenant_id=tenant)
    known = by_provider_id.get(event.provider_message_id or "")
    if known is not None and event.tenant_id in (None, known.tenant_id):
        return _stored(event, outbound=known)
    return _stored(event)


def _stored(event: ProviderEvent, *, outbound: Outbound | None = None, tenant_id: str | None = None) -> NewEvent:
    """The row for an event: tied to our record, to its custom args' tenant alone, or unmatched."""
    row = NewEvent(
        provider=PROVIDER_SENDGRID,
        provider_event_id=event.provider_event_id,
        event_type=event.event_type,
        occurred_at=event.occurred_at,
        matched=outbound is not None or tenant_id is not None,
        provider_message_id=event.provider_message_id,
        email=event.email,
        machine_open=event.machine_open,
        url=event.url,
        reason=event.reason,
        raw_event=event.raw,
    )
    if outbound is not None:
        row.tenant_id = outbound.tenant_id
        row.message_id = outbound.message_id
        row.campaign_id = outbound.campaign_id
        row.step_index = outbound.step_index
        row.contact_id = outbound.contact_id
        row.cohort = outbound.cohort
    elif tenant_id is not None:
        row.tenant_id = tenant_id
        row.message_id = event.message_id
        row.campaign_id = event.campaign_id
        row.step_index = event.step_index
    return row


def reply_token_message_id(signer: TokenSigner, addresses: Sequence[str]) -> str | None:
    """The message named by the first signed reply token among the addresses a mail went to."""
    for address in addresses:
        token = token_from_reply_address(address)
        message_id = signer.parse_reply_token(token) if token else None
        if message_id:
            return message_id
    return None


async def replied_message(
    conn: AsyncConnection, token_message_id: str | None, referenced: Sequence[str]
) -> Outbound | None:
    """The message a reply answers: the signed reply address first (it survives clients
    that drop threading headers), else the first of our Message-IDs it references."""
    if token_message_id:
        found = await repository.outbound_by_message_ids(conn, message_ids=[token_message_id])
        if token_message_id in found:
            return found[token_message_id]
    by_rfc = await repository.outbound_by_rfc_ids(conn, rfc_message_ids=referenced)
    return next((by_rfc[ref] for ref in referenced if ref in by_rfc), None)
