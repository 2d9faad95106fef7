"""Reading and updating a tenant's settings: its default send window, the strategist's voice
and guidelines, its postal address, its tracking switches and its out-of-office pause."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq_common import validation
from dripiq_common.clock import Clock
from dripiq_common.errors import InvalidArgument
from dripiq_planner import convert, repository
from dripiq_planner.tenants import (
    DEFAULT_AUTO_REPLY_PAUSE_DAYS,
    MAX_AUTO_REPLY_PAUSE_DAYS,
    MAX_POSTAL_ADDRESS,
    SETTINGS_FIELDS,
)


@dataclass
class TenantSettingsService:
    engine: AsyncEngine
    clock: Clock

    async def get(self, tenant_id: str) -> pb.TenantSettings:
        tenant = validation.tenant_id(tenant_id)
        async with self.engine.connect() as conn:
            row = await repository.get_tenant_settings(conn, tenant_id=tenant)
        return convert.tenant_settings_to_proto(tenant, row)

    async def update(self, request: pb.UpdateTenantSettingsRequest) -> pb.TenantSettings:
        settings = request.settings
        tenant = validation.tenant_id(settings.tenant_id, "settings.tenant_id")
        paths = set(request.update_mask.paths) or set(SETTINGS_FIELDS)
        unknown = paths - set(SETTINGS_FIELDS)
        if unknown:
            raise InvalidArgument("update_mask", f"cannot update {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {"updated_at": self.clock.now()}
        if "send_window" in paths:
            window = convert.window_from_proto(settings.send_window, "settings.send_window")
            values["send_window_json"] = window.to_json() if window else None
        for name in ("voice", "guidelines"):
            if name in paths:
                if len(getattr(settings, name)) > 2000:
                    raise InvalidArgument(f"settings.{name}", "must be at most 2,000 characters")
                values[name] = getattr(settings, name)
        if "postal_address" in paths:
            address = settings.postal_address.strip()
            if len(address) > MAX_POSTAL_ADDRESS:
                raise InvalidArgument("settings.postal_address", f"must be at most {MAX_POSTAL_ADDRESS} characters")
            if address and len(address) < 10:
                raise InvalidArgument(
                    "settings.postal_address", "must be a whole postal address (street, city, country)"
                )
            values["postal_address"] = address
        if "auto_reply_pause_days" in paths:
            days = settings.auto_reply_pause_days or DEFAULT_AUTO_REPLY_PAUSE_DAYS
            if not 1 <= days <= MAX_AUTO_REPLY_PAUSE_DAYS:
                raise InvalidArgument(
                    "settings.auto_reply_pause_days", f"must be 1 to {MAX_AUTO_REPLY_PAUSE_DAYS} days (0: the default)"
                )
            values["auto_reply_pause_days"] = days
        for name in ("open_tracking", "click_tracking"):
            if name in paths:
                # Unset means on, as for a tenant that never chose.
                values[name] = getattr(settings, name) if settings.HasField(name) else True
        async with self.engine.begin() as conn:
            row = await repository.upsert_tenant_settings(conn, tenant_id=tenant, values=values)
        return convert.tenant_settings_to_proto(tenant, row)
