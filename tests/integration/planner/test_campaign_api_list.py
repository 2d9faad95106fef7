"""CampaignService on real PostgreSQL, listing campaigns: newest first, filtered by status,
contact and lead, paged, and a bad page token refused.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from helpers import item

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq_common.errors import InvalidArgument


async def test_list_campaigns_newest_first_filtered_and_paged(engine, creator, campaigns, clock, tenant_id):
    created = []
    for i in range(5):
        clock.advance(timedelta(minutes=1))
        lead = pb.Lead(lead_id="lead-a" if i % 2 == 0 else "lead-b", company_name="Acme")
        created.append((await creator.create(item(f"c{i}", tenant_id=tenant_id, lead=lead))).campaign_id)
    clock.advance(timedelta(minutes=1))
    batch = await creator.batch_create(
        pb.BatchCreateCampaignsRequest(tenant_id=tenant_id, requests=[item(f"b{i}") for i in range(3)])
    )
    same_time = sorted((r.campaign.campaign_id for r in batch.results), reverse=True)
    await campaigns.cancel(tenant_id, created[1], "test")
    await campaigns.pause(tenant_id, created[3], 0)
    # Another tenant's campaign, created last, never shows.
    other = await creator.create(item("c0", tenant_id=f"{tenant_id}-other"))

    newest_first = [*same_time, *reversed(created)]

    async def ids(**fields: Any) -> list[str]:
        page = await campaigns.list_campaigns(pb.ListCampaignsRequest(tenant_id=tenant_id, **fields))
        assert not page.next_page_token
        assert all(not c.HasField("strategy") for c in page.campaigns)
        return [c.campaign_id for c in page.campaigns]

    assert await ids() == newest_first
    assert other.campaign_id not in await ids()
    assert await ids(status=pb.CAMPAIGN_STATUS_CANCELED) == [created[1]]
    assert await ids(status=pb.CAMPAIGN_STATUS_PAUSED) == [created[3]]
    assert await ids(status=pb.CAMPAIGN_STATUS_ACTIVE) == [i for i in newest_first if i not in (created[1], created[3])]
    assert await ids(contact_id="c2") == [created[2]]
    assert await ids(lead_id="lead-b") == [created[3], created[1]]
    assert await ids(lead_id="lead-b", status=pb.CAMPAIGN_STATUS_PAUSED) == [created[3]]
    other_page = await campaigns.list_campaigns(pb.ListCampaignsRequest(tenant_id=f"{tenant_id}-other"))
    assert [c.campaign_id for c in other_page.campaigns] == [other.campaign_id]

    seen, token, pages = [], "", 0
    for _ in range(10):  # bounded: a paging bug must fail, not hang
        page = await campaigns.list_campaigns(
            pb.ListCampaignsRequest(tenant_id=tenant_id, page_size=3, page_token=token)
        )
        seen += [c.campaign_id for c in page.campaigns]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == newest_first
    assert pages == 3

    # Not base64 JSON; an empty list; a list of one; ["yesterday", "m-1"]: the right shape with
    # no time in it (it reached the query and answered INTERNAL).
    for bad in ("garbage!", "W10", "WyJhIl0", "WyJ5ZXN0ZXJkYXkiLCJtLTEiXQ"):
        with pytest.raises(InvalidArgument) as exc:
            await campaigns.list_campaigns(pb.ListCampaignsRequest(tenant_id=tenant_id, page_token=bad))
        assert exc.value.field == "page_token"
