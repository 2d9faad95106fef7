"""What the planner's GetTenantStats asks of the events service, decided without I/O."""

from __future__ import annotations

import pytest

from dripiq.events.v1 import events_service_pb2 as epb
from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq_common.errors import InvalidArgument
from dripiq_planner.stats import engagement_request


def test_the_engagement_fields_have_the_events_requests_names_and_numbers():
    # The planner's INVALID_ARGUMENT passes the events service's field names on as they are.
    planner = pb.GetTenantStatsRequest.DESCRIPTOR.fields_by_name
    for field in epb.GetTenantStatsRequest.DESCRIPTOR.fields:
        assert planner[field.name].number == field.number
        assert planner[field.name].type == field.type


def test_no_range_asks_for_no_engagement():
    assert engagement_request(pb.GetTenantStatsRequest(tenant_id="t1")) is None


def test_a_range_passes_every_engagement_field_as_asked():
    asked = pb.GetTenantStatsRequest(
        tenant_id="t1",
        start_day="2030-03-04",
        end_day="2030-03-05",
        group_by=[epb.STATS_DIMENSION_STEP_INDEX, epb.STATS_DIMENSION_VARIANT],
        filter=epb.TenantStatsFilter(channels=["email"], step_indexes=[0]),
        page_size=10,
        page_token="tok",
    )
    events = engagement_request(asked)
    assert events is not None
    assert events.SerializeToString(deterministic=True) == asked.SerializeToString(deterministic=True)


def test_an_end_day_alone_is_asked_so_the_events_service_names_the_missing_start_day():
    events = engagement_request(pb.GetTenantStatsRequest(tenant_id="t1", end_day="2030-03-05"))
    assert events is not None and events.start_day == ""


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"group_by": [epb.STATS_DIMENSION_DAY]}, "group_by"),
        ({"filter": epb.TenantStatsFilter()}, "filter"),
        ({"page_size": 5}, "page_size"),
        ({"page_token": "tok"}, "page_token"),
    ],
)
def test_grouping_filtering_or_paging_without_a_range_is_refused_naming_start_day(fields, named):
    with pytest.raises(InvalidArgument) as exc:
        engagement_request(pb.GetTenantStatsRequest(tenant_id="t1", **fields))
    assert exc.value.field == "start_day"
    assert named in exc.value.description
