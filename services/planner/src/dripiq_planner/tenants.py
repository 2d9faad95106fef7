"""A tenant's settings as the planner uses them: defaults for planning, and what every send carries."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from sqlalchemy import Row

from dripiq.dispatcher.v1 import messages_pb2 as dispatcher_pb
from dripiq_common import windows
from dripiq_planner.ai_budget import BudgetLimits
from dripiq_planner.strategist.ai_variants import VariantFocus, VariantRequest
from dripiq_planner.strategist.links import AllowList
from dripiq_planner.variants import WinnerSetting

DEFAULT_AUTO_REPLY_PAUSE_DAYS = 7
MAX_AUTO_REPLY_PAUSE_DAYS = 90
MAX_ENROLMENT_COOLDOWN_SECONDS = 365 * 86400


class ReplyStops(StrEnum):
    """Which campaigns a reply ends besides its own (tenant_settings.reply_stops)."""

    CAMPAIGN = "campaign"
    CONTACT = "contact"
    COMPANY = "company"


@dataclass(frozen=True)
class TenantDefaults:
    window: windows.SendWindow = windows.DEFAULT_WINDOW
    voice: str = ""
    guidelines: str = ""
    postal_address: str = ""
    open_tracking: bool = True
    click_tracking: bool = True
    auto_reply_pause_days: int = DEFAULT_AUTO_REPLY_PAUSE_DAYS
    allowed_domains: tuple[str, ...] = ()
    allowed_urls: tuple[str, ...] = ()
    allowed_phone_numbers: tuple[str, ...] = ()
    # 0: the planner's default.
    ai_daily_call_budget: int = 0
    ai_daily_token_budget: int = 0
    # New campaigns wait as drafts until a person approves them.
    require_approval: bool = False
    # Collision control and holidays.
    reply_stops: ReplyStops = ReplyStops.CAMPAIGN
    enrolment_cooldown_seconds: int = 0
    holiday_calendars: tuple[str, ...] = ()
    # Campaigns planned at once for the tenant; 0: the planner's default.
    planning_concurrency: int = 0
    # When a step's winning A/B variant goes to later contacts; None: never.
    variant_winner: WinnerSetting | None = None
    # Versions of each email step the AI strategist writes (0: none), and what they differ in.
    ai_variants: int = 0
    ai_variant_focus: VariantFocus = VariantFocus.BOTH

    @classmethod
    def from_row(cls, row: Row | None) -> TenantDefaults:
        if row is None:
            return cls()
        window = windows.SendWindow.from_json(row.send_window_json) if row.send_window_json else windows.DEFAULT_WINDOW
        return cls(
            window=window,
            voice=row.voice,
            guidelines=row.guidelines,
            postal_address=row.postal_address,
            open_tracking=row.open_tracking,
            click_tracking=row.click_tracking,
            auto_reply_pause_days=row.auto_reply_pause_days,
            allowed_domains=tuple(row.allowed_domains),
            allowed_urls=tuple(row.allowed_urls),
            allowed_phone_numbers=tuple(row.allowed_phone_numbers),
            ai_daily_call_budget=row.ai_daily_call_budget,
            ai_daily_token_budget=row.ai_daily_token_budget,
            require_approval=row.require_approval,
            reply_stops=ReplyStops(row.reply_stops),
            enrolment_cooldown_seconds=row.enrolment_cooldown_seconds,
            holiday_calendars=tuple(row.holiday_calendars),
            planning_concurrency=row.planning_concurrency,
            variant_winner=WinnerSetting.from_json(row.variant_winner_json),
            ai_variants=row.ai_variants,
            ai_variant_focus=VariantFocus(row.ai_variant_focus),
        )

    def allow_list(self) -> AllowList:
        """What the tenant's AI-written copy may name: its domains and its URLs' hosts, its numbers."""
        hosts = [urlsplit(url).hostname or "" for url in self.allowed_urls]
        return AllowList.of(domains=[*self.allowed_domains, *hosts], phones=self.allowed_phone_numbers)

    def variant_request(self) -> VariantRequest | None:
        """The A/B test the AI strategist writes for; None when the tenant runs none."""
        return VariantRequest(self.ai_variants, self.ai_variant_focus) if self.ai_variants else None

    def ai_budget(self, default: BudgetLimits) -> BudgetLimits:
        return BudgetLimits(
            calls=self.ai_daily_call_budget or default.calls, tokens=self.ai_daily_token_budget or default.tokens
        )

    def tracking(self) -> dispatcher_pb.Tracking:
        return dispatcher_pb.Tracking(opens=self.open_tracking, clicks=self.click_tracking)


SETTINGS_FIELDS = (
    "send_window",
    "voice",
    "guidelines",
    "postal_address",
    "open_tracking",
    "click_tracking",
    "auto_reply_pause_days",
    "allowed_domains",
    "allowed_urls",
    "allowed_phone_numbers",
    "ai_daily_call_budget",
    "ai_daily_token_budget",
    "require_approval",
    "reply_stops",
    "enrolment_cooldown",
    "holiday_calendars",
    "planning_concurrency",
    "variant_winner",
    "ai_variants",
    "ai_variant_focus",
)
MAX_PLANNING_CONCURRENCY = 1000
MAX_POSTAL_ADDRESS = 500
MAX_ALLOWED_DOMAINS = 100
MAX_ALLOWED_URLS = 100
MAX_ALLOWED_PHONE_NUMBERS = 20
