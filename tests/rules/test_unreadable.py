"""What each rule would read as absent (rules/unreadable.py) and the kinds of data the keys
make (record/missing.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from cds_service.record.missing import DATA_KINDS, unreadable_kinds
from cds_service.rules.catalogue import CATALOGUE
from cds_service.rules.unreadable import SILENT_WITHOUT
from cds_service.services import load_services

EARLY, LATE = datetime(2025, 7, 1, tzinfo=UTC), datetime(2025, 10, 1, tzinfo=UTC)


def test_every_rule_says_what_it_would_read_as_absent():
    # A new rule must declare it (else it is silent whenever any data could not be read).
    assert set(SILENT_WITHOUT) == {row.id for row in CATALOGUE}
    kinds = set(DATA_KINDS.values())
    assert all(needed <= kinds for needed in SILENT_WITHOUT.values())


def test_every_prefetch_key_has_a_kind():
    keys = {key for service in load_services().values() for key in service.prefetch}
    assert keys <= set(DATA_KINDS)


def test_a_kind_not_read_through_one_key_is_not_read():
    kinds = unreadable_kinds(
        {"medicationAdministrations": "HTTP 500"},
        {"medicationRequests": "later pages: HTTP 500", "counts": "later pages: time-out"},
        {"medicationRequests": None, "counts": EARLY},
    )
    assert kinds == {"medications": None, "counts": EARLY}


def test_two_histories_of_one_kind_cut_short_are_missing_before_the_later_date():
    cut = {"medicationRequests": EARLY, "medicationStatements": LATE}
    assert unreadable_kinds({}, dict.fromkeys(cut, "later pages"), cut) == {"medications": LATE}
