"""The dangerous combinations of knowledge/medications.yaml: the label's dose range for a
thiopurine with allopurinol is read as exact fractions (a float 1/3 would move a dose rounded
down to tablet steps), and a range out of order or bounds stops the start-up."""

from __future__ import annotations

from fractions import Fraction

import pytest

from cds_service.config import ConfigError
from cds_service.knowledge import _dose_fraction, load_knowledge


def test_the_thiopurine_allopurinol_dose_range_is_the_labels_in_exact_fractions() -> None:
    pairs = {
        (drug, partner): c.dose_fraction
        for c in load_knowledge().combinations
        for drug in c.drugs
        for partner in c.partners
    }
    assert pairs[("azathioprine", "allopurinol")] == (Fraction(1, 4), Fraction(1, 3))
    assert pairs[("mercaptopurine", "allopurinol")] == (Fraction(1, 4), Fraction(1, 3))
    assert pairs[("azathioprine", "febuxostat")] is None  # contraindicated: no dose offered


@pytest.mark.parametrize("raw", [["1/3", "1/4"], ["0", "1/3"], ["1/2", "3/2"]])
def test_a_dose_range_out_of_order_or_bounds_is_refused(raw: list[str]) -> None:
    with pytest.raises(ConfigError, match="dose_fraction"):
        _dose_fraction(raw)
