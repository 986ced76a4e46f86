"""Chart geometry for the dashboard, drawn as inline SVG by the template: no JavaScript and
nothing fetched from elsewhere, so it works on a hospital network without internet access."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from cds_service.governance.report import RuleWeekStats

WIDTH, HEIGHT, MARGIN = 360, 150, 30


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str  # tooltip, e.g. "2025-W07: 40% of 5 shown"


@dataclass(frozen=True)
class RateChart:
    """Acceptance rate of one rule, week by week (weeks without cards are left out)."""

    rule_id: str
    points: tuple[Point, ...]
    first_week: str
    last_week: str
    shown: int
    accepted: int
    overridden: int

    @property
    def polyline(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)


@dataclass(frozen=True)
class Bar:
    label: str
    count: int
    width: float


def rate_charts(stats: list[RuleWeekStats]) -> list[RateChart]:
    weeks = sorted({s.week for s in stats})
    step = (WIDTH - 2 * MARGIN) / max(len(weeks) - 1, 1)
    by_rule: dict[str, list[RuleWeekStats]] = defaultdict(list)
    for s in stats:
        by_rule[s.rule_id].append(s)
    charts = []
    for rule_id, rows in sorted(by_rule.items()):
        points = tuple(
            Point(
                x=MARGIN + step * weeks.index(s.week),
                y=HEIGHT - MARGIN - (HEIGHT - 2 * MARGIN) * (s.acceptance_rate or 0),
                label=f"{s.week}: {s.acceptance_rate or 0:.0%} of {s.shown} shown",
            )
            for s in rows
        )
        charts.append(
            RateChart(
                rule_id=rule_id,
                points=points,
                first_week=weeks[0],
                last_week=weeks[-1],
                shown=sum(s.shown for s in rows),
                accepted=sum(s.accepted for s in rows),
                overridden=sum(s.overridden for s in rows),
            )
        )
    return charts


def reason_bars(stats: list[RuleWeekStats], max_width: float = 300) -> list[Bar]:
    counts: Counter[str] = Counter()
    for s in stats:
        for reason in s.override_reasons:
            counts[reason.display] += reason.count
    top = max(counts.values(), default=1)
    return [
        Bar(label=label, count=count, width=max_width * count / top)
        for label, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]
