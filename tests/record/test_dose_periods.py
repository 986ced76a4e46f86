"""Daily dose and display for every `periodUnit` (clinical rules §2.5 v4): monthly
cyclophosphamide pulses arrive as period 1 mo, twice-daily drugs as every 12 h."""

from __future__ import annotations

import pytest

from cds_service.record.dosing import daily_dose


def _dosage(mg: float, frequency: float, period: float, unit: str) -> list[dict]:
    return [
        {
            "timing": {"repeat": {"frequency": frequency, "period": period, "periodUnit": unit}},
            "doseAndRate": [{"doseQuantity": {"value": mg, "unit": "mg", "code": "mg"}}],
        }
    ]


@pytest.mark.parametrize(
    ("mg", "frequency", "period", "unit", "mg_per_day", "shown", "weekly"),
    [
        (750, 1, 1, "mo", 25.0, "750 mg once monthly", True),  # a monthly pulse
        (500, 1, 12, "h", 1000.0, "500 mg every 12 hours", False),  # q12h
        (1000, 2, 1, "d", 2000.0, "1000 mg twice daily", False),
        (15, 1, 1, "wk", 15 / 7, "15 mg once weekly", True),
        (10, 1, 1, "d", 10.0, "10 mg once daily", False),
    ],
)
def test_every_period_unit_gives_the_daily_dose_and_the_dose_as_prescribed(
    mg, frequency, period, unit, mg_per_day, shown, weekly
) -> None:
    dose = daily_dose(_dosage(mg, frequency, period, unit), None)
    assert dose.mg_per_day == pytest.approx(mg_per_day)
    assert dose.description == shown
    assert dose.weekly is weekly
