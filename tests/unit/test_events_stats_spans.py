"""How GetTenantStats splits a range of days: whole ISO weeks from the weekly rows, the edge
days from the daily rows, days only when the answer is per day."""

from __future__ import annotations

from datetime import date

from dripiq_events.queries import stats_spans


def test_the_planner_reads_whole_weeks_and_edge_days():
    thursday, sunday, monday = date(2030, 1, 3), date(2030, 1, 6), date(2030, 1, 7)
    assert stats_spans(thursday, date(2030, 1, 24), ()).days == (
        (thursday, sunday),
        (date(2030, 1, 21), date(2030, 1, 24)),
    )
    assert stats_spans(thursday, date(2030, 1, 24), ()).weeks == (monday, date(2030, 1, 14))
    assert stats_spans(monday, date(2030, 1, 20), ("step_index",)).days == ()
    # Per day, forced to days, or no whole week inside: days only.
    for spans in (
        stats_spans(thursday, date(2030, 1, 24), ("day",)),
        stats_spans(thursday, date(2030, 1, 24), (), daily_only=True),
        stats_spans(date(2030, 1, 8), date(2030, 1, 13), ()),
    ):
        assert spans.weeks is None
    assert stats_spans(date(2030, 1, 8), date(2030, 1, 13), ()).days == ((date(2030, 1, 8), date(2030, 1, 13)),)
