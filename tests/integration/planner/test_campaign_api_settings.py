"""CampaignService on real PostgreSQL, tenant settings: the update mask, the default send window a
request without one gets, and bad settings named by their field.
"""

from __future__ import annotations

import pytest
from google.protobuf import field_mask_pb2
from helpers import ALWAYS, BUSINESS_HOURS, T0, at, item, request

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq_common.errors import InvalidArgument


async def test_tenant_settings_update_mask_and_default_window(engine, tenant_settings, creator, tenant_id):
    defaults = await tenant_settings.get(tenant_id)
    assert defaults.send_window == BUSINESS_HOURS and not defaults.HasField("update_time")

    window = pb.SendWindow(weekdays=[2, 4], start_hour=10, end_hour=12)
    full = await tenant_settings.update(
        pb.UpdateTenantSettingsRequest(
            settings=pb.TenantSettings(tenant_id=tenant_id, send_window=window, voice="warm", guidelines="no pricing")
        )
    )
    assert (full.send_window, full.voice, full.guidelines) == (window, "warm", "no pricing")
    assert at(full.update_time) == T0

    only_voice = await tenant_settings.update(
        pb.UpdateTenantSettingsRequest(
            settings=pb.TenantSettings(tenant_id=tenant_id, send_window=ALWAYS, voice="brief", guidelines="other"),
            update_mask=field_mask_pb2.FieldMask(paths=["voice"]),
        )
    )
    assert (only_voice.send_window, only_voice.voice, only_voice.guidelines) == (window, "brief", "no pricing")
    assert await tenant_settings.get(tenant_id) == only_voice

    # A request without a window gets the tenant's; one with a window keeps its own.
    without = request(tenant_id)
    without.ClearField("send_window")
    campaign = await creator.create(without)
    assert campaign.send_window == window
    first = at(campaign.steps[0].scheduled_at)
    assert first.isoweekday() in (2, 4) and 10 <= first.hour < 12  # UTC contact
    own = await creator.create(item("c-own", tenant_id=tenant_id, send_window=ALWAYS))
    assert own.send_window == ALWAYS


@pytest.mark.parametrize(
    ("settings", "mask", "field"),
    [
        (pb.TenantSettings(send_window=pb.SendWindow(weekdays=[1], start_hour=18, end_hour=9)), [], "start_hour"),
        (pb.TenantSettings(send_window=pb.SendWindow(weekdays=[1], start_hour=9, end_hour=25)), [], "start_hour"),
        (pb.TenantSettings(send_window=pb.SendWindow(weekdays=[8], start_hour=9, end_hour=17)), [], "weekdays"),
        (pb.TenantSettings(voice="x"), ["tone"], "update_mask"),
    ],
)
async def test_bad_tenant_settings_name_the_field(tenant_settings, tenant_id, settings, mask, field):
    settings.tenant_id = tenant_id
    with pytest.raises(InvalidArgument) as exc:
        await tenant_settings.update(
            pb.UpdateTenantSettingsRequest(settings=settings, update_mask=field_mask_pb2.FieldMask(paths=mask))
        )
    expected = field if field == "update_mask" else f"settings.send_window.{field}"
    assert exc.value.field == expected
    assert not (await tenant_settings.get(tenant_id)).HasField("update_time")
