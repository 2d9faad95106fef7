"""Reading messages: GetMessage and ListMessages (newest first, paged by token)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as pb
from dripiq_common import paging, validation
from dripiq_common.errors import NotFound
from dripiq_dispatcher import convert, repository


@dataclass(frozen=True)
class Messages:
    engine: AsyncEngine

    async def get_message(self, tenant_id: str, message_id: str) -> pb.Message:
        tenant = validation.tenant_id(tenant_id)
        validation.required(message_id, "message_id")
        async with self.engine.connect() as conn:
            row = await repository.messages.get_message(conn, tenant_id=tenant, message_id=message_id)
        if row is None:
            raise NotFound(f"message {message_id!r} not found")
        return convert.message_to_proto(row)

    async def list_messages(self, request: pb.ListMessagesRequest) -> pb.ListMessagesResponse:
        tenant = validation.tenant_id(request.tenant_id)
        size = paging.page_size(request.page_size)
        after = paging.decode_token(request.page_token, datetime, str)
        status = convert.status_from_proto(request.status) if request.status else None
        async with self.engine.connect() as conn:
            rows = await repository.messages.list_messages(
                conn,
                tenant_id=tenant,
                campaign_id=request.campaign_id,
                contact_id=request.contact_id,
                status=status,
                after=after,
                limit=size + 1,
            )
        page = rows[:size]
        token = paging.encode_token(page[-1].created_at.isoformat(), page[-1].message_id) if len(rows) > size else ""
        return pb.ListMessagesResponse(messages=[convert.message_to_proto(r) for r in page], next_page_token=token)
