"""Reading and updating a tenant's settings: its default send window, the strategist's voice
and guidelines, its postal address, its tracking switches, its out-of-office pause and when a
step's winning A/B variant goes to later contacts."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq_common import validation
from dripiq_common.clock import Clock
from dripiq_common.errors import InvalidArgument
from dripiq_planner import calendars, convert, repository
from dripiq_planner.facts import check_web_url
from dripiq_planner.strategist import ai_variants
from dripiq_planner.strategist.links import ascii_host, is_domain
from dripiq_planner.tenants import (
    DEFAULT_AUTO_REPLY_PAUSE_DAYS,
    MAX_ALLOWED_DOMAINS,
    MAX_ALLOWED_PHONE_NUMBERS,
    MAX_ALLOWED_URLS,
    MAX_AUTO_REPLY_PAUSE_DAYS,
    MAX_ENROLMENT_COOLDOWN_SECONDS,
    MAX_PLANNING_CONCURRENCY,
    MAX_POSTAL_ADDRESS,
    SETTINGS_FIELDS,
)

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
# A budget anyone could mistype into a bill: far above any real day's use.
MAX_DAILY_CALLS = 1_000_000
MAX_DAILY_TOKENS = 10_000_000_000


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
        if "allowed_domains" in paths:
            values["allowed_domains"] = _domains(settings.allowed_domains)
        if "allowed_urls" in paths:
            values["allowed_urls"] = _urls(settings.allowed_urls)
        if "allowed_phone_numbers" in paths:
            values["allowed_phone_numbers"] = _phones(settings.allowed_phone_numbers)
        if "ai_daily_call_budget" in paths:
            if not 0 <= settings.ai_daily_call_budget <= MAX_DAILY_CALLS:
                raise InvalidArgument(
                    "settings.ai_daily_call_budget", f"must be 0 (the planner's default) to {MAX_DAILY_CALLS:,}"
                )
            values["ai_daily_call_budget"] = settings.ai_daily_call_budget
        if "ai_daily_token_budget" in paths:
            if not 0 <= settings.ai_daily_token_budget <= MAX_DAILY_TOKENS:
                raise InvalidArgument(
                    "settings.ai_daily_token_budget", f"must be 0 (the planner's default) to {MAX_DAILY_TOKENS:,}"
                )
            values["ai_daily_token_budget"] = settings.ai_daily_token_budget
        if "require_approval" in paths:
            values["require_approval"] = settings.require_approval
        if "planning_concurrency" in paths:
            if not 0 <= settings.planning_concurrency <= MAX_PLANNING_CONCURRENCY:
                raise InvalidArgument(
                    "settings.planning_concurrency",
                    f"must be 0 (the planner's default) to {MAX_PLANNING_CONCURRENCY:,}",
                )
            values["planning_concurrency"] = settings.planning_concurrency
        for name in ("open_tracking", "click_tracking"):
            if name in paths:
                # Unset means on, as for a tenant that never chose.
                values[name] = getattr(settings, name) if settings.HasField(name) else True
        values |= _collisions_and_holidays(settings, paths)
        async with self.engine.begin() as conn:
            row = await repository.upsert_tenant_settings(conn, tenant_id=tenant, values=values)
        return convert.tenant_settings_to_proto(tenant, row)


def _collisions_and_holidays(settings: pb.TenantSettings, paths: set[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if "reply_stops" in paths:
        values["reply_stops"] = convert.reply_stops_from_proto(settings.reply_stops)
    if "enrolment_cooldown" in paths:
        cooldown = settings.enrolment_cooldown
        if cooldown.nanos or not 0 <= cooldown.seconds <= MAX_ENROLMENT_COOLDOWN_SECONDS:
            raise InvalidArgument(
                "settings.enrolment_cooldown",
                f"must be whole seconds from 0 (off) to {MAX_ENROLMENT_COOLDOWN_SECONDS} (365 days)",
            )
        values["enrolment_cooldown_seconds"] = cooldown.seconds
    if "holiday_calendars" in paths:
        values["holiday_calendars"] = calendars.parse_all(settings.holiday_calendars, "settings.holiday_calendars")
    if "variant_winner" in paths:
        # Unset turns it off; set, every field is checked, none defaulted.
        given = settings.variant_winner
        values["variant_winner_json"] = (
            convert.winner_setting_from_proto(given).to_json() if settings.HasField("variant_winner") else None
        )
    if "ai_variants" in paths:
        if settings.ai_variants:
            ai_variants.VariantRequest(settings.ai_variants)  # checks the count, naming the field
        values["ai_variants"] = settings.ai_variants
    if "ai_variant_focus" in paths:
        values["ai_variant_focus"] = convert.variant_focus_from_proto(settings.ai_variant_focus).value
    return values


def _domains(domains: Sequence[str]) -> list[str]:
    if len(domains) > MAX_ALLOWED_DOMAINS:
        raise InvalidArgument("settings.allowed_domains", f"at most {MAX_ALLOWED_DOMAINS} domains")
    out: list[str] = []
    for i, domain in enumerate(domains):
        if len(domain) > 253 or not is_domain(domain):
            raise InvalidArgument(f"settings.allowed_domains[{i}]", f"{domain[:80]!r} is not a domain name")
        if (name := ascii_host(domain)) not in out:
            out.append(name)
    return out


def _urls(urls: Sequence[str]) -> list[str]:
    if len(urls) > MAX_ALLOWED_URLS:
        raise InvalidArgument("settings.allowed_urls", f"at most {MAX_ALLOWED_URLS} URLs")
    for i, url in enumerate(urls):
        if len(url) > 2048:
            raise InvalidArgument(f"settings.allowed_urls[{i}]", "must be at most 2,048 characters")
        host = check_web_url(url, f"settings.allowed_urls[{i}]")
        if not is_domain(host):
            raise InvalidArgument(f"settings.allowed_urls[{i}]", f"{host!r} is not a domain name")
    return list(dict.fromkeys(urls))


def _phones(numbers: Sequence[str]) -> list[str]:
    if len(numbers) > MAX_ALLOWED_PHONE_NUMBERS:
        raise InvalidArgument("settings.allowed_phone_numbers", f"at most {MAX_ALLOWED_PHONE_NUMBERS} numbers")
    for i, number in enumerate(numbers):
        if not _E164.match(number):
            raise InvalidArgument(
                f"settings.allowed_phone_numbers[{i}]", f"{number[:40]!r} is not an E.164 number like +14155550100"
            )
    return list(dict.fromkeys(numbers))
