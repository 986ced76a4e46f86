from datetime import timedelta

from cds_service.fhir.timeshift import shift_dates


def test_dates_and_datetimes_move_together_birth_dates_stay():
    document = {
        "effectiveDateTime": "2026-01-14T09:30:00Z",
        "authoredOn": "2025-12-01",
        "birthDate": "1980-05-05",
        "period": {"start": "2026-01-01T00:00:00+02:00"},
        "note": "2026-01-14 is mentioned in text",
    }
    moved = shift_dates(document, timedelta(days=10, hours=1))
    assert moved == {
        "effectiveDateTime": "2026-01-24T10:30:00Z",
        "authoredOn": "2025-12-11",
        "birthDate": "1980-05-05",
        "period": {"start": "2026-01-11T01:00:00+02:00"},
        "note": "2026-01-14 is mentioned in text",
    }
