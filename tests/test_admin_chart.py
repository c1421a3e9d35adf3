"""The health page's bar charts as geometry: buckets, filling, scale and bar placement."""

from datetime import UTC, datetime, timedelta

import pytest

from oauth_integration.admin.chart import Column, Series, bar_chart, buckets, fill, scale

REFRESHES = Series("refreshes", "Refreshes", "refresh")
FAILURES = Series("failures", "Failures", "failure")
NOON = datetime(2026, 7, 15, 12, tzinfo=UTC)


def test_buckets_start_at_the_first_and_follow_each_other():
    assert buckets(NOON, timedelta(hours=1), 3) == [NOON, NOON + timedelta(hours=1), NOON + timedelta(hours=2)]


def test_fill_puts_zeros_in_empty_buckets_and_ignores_counts_outside_the_window():
    starts = buckets(NOON, timedelta(hours=1), 3)
    counted = {starts[1]: (4, 1), NOON - timedelta(hours=1): (9, 9)}

    assert fill(starts, counted, 2) == [(0, 0), (4, 1), (0, 0)]


@pytest.mark.parametrize(
    ("highest", "expected"),
    [(0, (1, 1)), (1, (1, 1)), (3, (3, 1)), (4, (4, 1)), (5, (6, 2)), (7, (8, 2)), (9, (10, 5)), (40, (40, 10)),
     (41, (60, 20)), (100, (100, 50)), (1234, (1500, 500))],
)  # fmt: skip
def test_scale_reaches_the_highest_count_in_at_most_four_round_steps(highest, expected):
    top, step = scale(highest)

    assert (top, step) == expected
    assert top >= highest
    assert top // step <= 4


def test_bar_chart_places_one_bar_per_series_in_each_bucket_scaled_to_the_axis():
    columns = [Column("14:00", "14:00", (4, 0)), Column("15:00", "", (2, 1)), Column("16:00", "16:00", (0, 0))]

    chart = bar_chart(columns, [REFRESHES, FAILURES], width=336, height=130)

    # The plot spans x 36..328 and y 8..108; the axis goes to 4, so one event is 25 units tall.
    assert (chart.left, chart.right, chart.top, chart.bottom) == (36, 328, 8, 108)
    assert [(bar.series, bar.value, bar.height) for bar in chart.bars] == [
        ("refreshes", 4, 100),
        ("failures", 0, 0),
        ("refreshes", 2, 50),
        ("failures", 1, 25),
        ("refreshes", 0, 0),
        ("failures", 0, 0),
    ]
    assert all(bar.y + bar.height == chart.bottom for bar in chart.bars)
    slot = (328 - 36) / 3
    first, second = chart.bars[0], chart.bars[1]
    assert first.x == pytest.approx(36 + slot * 0.1, abs=0.02)
    assert first.width == pytest.approx(slot * 0.4, abs=0.02)
    assert second.x == pytest.approx(first.x + first.width, abs=0.02)
    assert chart.bars[2].x == pytest.approx(first.x + slot, abs=0.02)
    assert all(chart.left <= bar.x and bar.x + bar.width <= chart.right for bar in chart.bars)
    assert [bar.title for bar in chart.bars[2:4]] == ["15:00: 2 refreshes", "15:00: 1 failure"]
    assert [(tick.label, tick.position) for tick in chart.y_ticks] == [
        ("0", 108),
        ("1", 83),
        ("2", 58),
        ("3", 33),
        ("4", 8),
    ]
    assert [tick.label for tick in chart.x_labels] == ["14:00", "16:00"]
    assert chart.x_labels[0].position == pytest.approx(36 + slot / 2, abs=0.02)
    assert (chart.totals, chart.highest, chart.summary) == ((6, 1), 4, "6 refreshes, 1 failure")


def test_an_empty_chart_has_flat_bars_on_a_zero_to_one_axis():
    chart = bar_chart([Column("day", "day", (0, 0))] * 30, [REFRESHES, FAILURES])

    assert len(chart.bars) == 60
    assert {bar.height for bar in chart.bars} == {0}
    assert [tick.label for tick in chart.y_ticks] == ["0", "1"]
    assert chart.summary == "0 refreshes, 0 failures"


def test_bar_chart_needs_a_value_per_series():
    with pytest.raises(ValueError, match="one value per series"):
        bar_chart([Column("a", "", (1,))], [REFRESHES, FAILURES])
    with pytest.raises(ValueError, match="one value per series"):
        bar_chart([], [REFRESHES])
