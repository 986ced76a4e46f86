"""Finding results of the same draw by binary search gives exactly what comparing every pair
gave (the old code, kept here as the reference), in the same order."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service.record.counts import CountReader
from cds_service.record.draws import ChosenDraws, DrawIndex, same_draw
from cds_service.record.model import SAME_DRAW, Count

START = datetime(2026, 1, 1, tzinfo=UTC)
METHODS = ["manual", "segmented + bands", "automated", "computed", "flow"]


@dataclass(frozen=True)
class Result:
    time: datetime
    specimen: str | None


minutes = st.integers(min_value=0, max_value=6 * 24 * 60)  # results over six days
specimens = st.none() | st.sampled_from(["Specimen/a", "Specimen/b", "Specimen/c"])
results = st.lists(
    st.builds(Result, minutes.map(lambda m: START + timedelta(minutes=m)), specimens),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(results, minutes, specimens)
def test_of_draw_is_every_pairwise_match_in_order(items, minute, specimen):
    time = START + timedelta(minutes=minute)
    expected = [r for r in items if same_draw(time, specimen, r.time, r.specimen)]
    assert DrawIndex(items).of_draw(time, specimen) == expected


def pairwise_one_per_draw(ranked: list[Count]) -> list[Count]:
    """CountReader._one_per_draw as it was: each result against every one chosen."""
    chosen: list[Count] = []
    for count in ranked:
        tolerance = timedelta(days=1) if count.method == "flow" else SAME_DRAW
        if not any(
            (c.specimen and count.specimen and c.specimen == count.specimen)
            or abs(c.time - count.time) <= tolerance
            for c in chosen
        ):
            chosen.append(count)
    return chosen


counts = st.lists(
    st.builds(
        Count,
        analyte=st.just("anc"),
        value=st.just(1.0),
        received=st.just("1.0"),
        time=minutes.map(lambda m: START + timedelta(minutes=m)),
        status=st.sampled_from(["final", "preliminary"]),
        method=st.sampled_from(METHODS),
        reference=st.just("Observation/x"),
        specimen=specimens,
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(counts)
def test_one_per_draw_picks_what_pairwise_comparison_picked(candidates):
    ranked = sorted(candidates, key=lambda c: (c.is_preliminary, METHODS.index(c.method)))
    assert CountReader._one_per_draw(candidates) == pairwise_one_per_draw(ranked)


def test_the_window_edges_are_one_hour_inclusive():
    draws = ChosenDraws()
    draws.add(START, None)
    assert draws.holds(START + SAME_DRAW, None, SAME_DRAW)
    assert not draws.holds(START + SAME_DRAW + timedelta(seconds=1), None, SAME_DRAW)
    assert draws.holds(START - SAME_DRAW, None, SAME_DRAW)
    index = DrawIndex([Result(START, None)])
    assert index.of_draw(START + SAME_DRAW, "Specimen/a") == [Result(START, None)]
    assert index.of_draw(START + SAME_DRAW + timedelta(seconds=1), None) == []
