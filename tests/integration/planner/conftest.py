"""Fixtures for the planner's integration tests: a manual clock at T0 and the planner's services
over the session's database, one of each per test. A module that needs one set up otherwise
(another clock, a reactor with other settings) defines its own, which wins over these."""

from __future__ import annotations

import pytest
from helpers import T0, campaign_creator
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq_common.clock import ManualClock
from dripiq_planner.approval import CampaignApproval
from dripiq_planner.campaigns import CampaignService
from dripiq_planner.creating import CampaignCreator
from dripiq_planner.planning import Planner
from dripiq_planner.preview import StrategyPreview
from dripiq_planner.reactor import Reactor
from dripiq_planner.strategist.template_strategist import TemplateStrategist
from dripiq_planner.tenant_settings import TenantSettingsService


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def campaigns(engine: AsyncEngine, clock: ManualClock) -> CampaignService:
    return CampaignService(engine, clock)


@pytest.fixture
def creator(engine: AsyncEngine, clock: ManualClock) -> CampaignCreator:
    return campaign_creator(engine, clock)


@pytest.fixture
def reactor(engine: AsyncEngine, clock: ManualClock) -> Reactor:
    return Reactor(engine, clock)


@pytest.fixture
def strategy_preview(engine: AsyncEngine, clock: ManualClock) -> StrategyPreview:
    return StrategyPreview(engine, clock, Planner(engine, TemplateStrategist()))


@pytest.fixture
def tenant_settings(engine: AsyncEngine, clock: ManualClock) -> TenantSettingsService:
    return TenantSettingsService(engine, clock)


@pytest.fixture
def approval(engine: AsyncEngine, clock: ManualClock, campaigns: CampaignService) -> CampaignApproval:
    return CampaignApproval(engine, clock, campaigns)
