"""PatientRecord building: which results count and how ANC/ALC are derived (spec §2.1, §2.3)."""

from __future__ import annotations

import pytest

from cds_service.record import build_record
from tests.support.builders import (
    ALC,
    ANC,
    AZATHIOPRINE,
    NEUTROPHIL_PCT,
    NOW,
    PATIENT,
    WBC,
    WEIGHT,
    medication_request,
    observation,
    sle,
)


def record_of(resources, knowledge):
    return build_record(resources, PATIENT, NOW, knowledge)


def test_anc_from_percent_needs_a_same_specimen_wbc(knowledge):
    paired = record_of(
        [
            observation(WBC, 2.5, specimen="Specimen/s1"),
            observation(NEUTROPHIL_PCT, 16, "%", specimen="Specimen/s1"),
        ],
        knowledge,
    )
    anc = paired.latest("anc")
    assert anc.value == pytest.approx(0.4) and anc.method == "computed"
    unpaired = record_of(
        [
            observation(WBC, 2.5, days_ago=3, specimen="Specimen/s1"),
            observation(NEUTROPHIL_PCT, 16, "%", specimen="Specimen/s2"),
        ],
        knowledge,
    )
    assert unpaired.latest("anc") is None
    assert "no WBC from the same specimen" in unpaired.unusable[0].reason


def test_percent_pairs_by_time_within_one_hour_without_specimens(knowledge):
    near = record_of(
        [observation(WBC, 3.0, hours_ago=1), observation(NEUTROPHIL_PCT, 50, "%")], knowledge
    )
    far = record_of(
        [observation(WBC, 3.0, hours_ago=1.1), observation(NEUTROPHIL_PCT, 50, "%")], knowledge
    )
    assert near.latest("anc").value == pytest.approx(1.5)
    assert far.latest("anc") is None


def test_manual_differential_supersedes_automated_anc_of_the_same_draw(knowledge):
    record = record_of(
        [
            observation(ANC, 1.8, specimen="Specimen/s1"),
            observation("753-4", 0.9, specimen="Specimen/s1"),
        ],
        knowledge,
    )
    assert [c.value for c in record.series("anc")] == [0.9]
    assert record.latest("anc").method == "manual"


def test_segmented_plus_bands_make_the_anc(knowledge):
    record = record_of(
        [
            observation("768-2", 0.6, specimen="Specimen/s1"),
            observation("763-3", 0.2, specimen="Specimen/s1"),
        ],
        knowledge,
    )
    assert record.latest("anc").value == pytest.approx(0.8)
    segments_only = record_of([observation("768-2", 0.6)], knowledge).latest("anc")
    assert segments_only.note == "bands not reported"


def test_cbc_lymphocyte_count_preferred_over_flow_cytometry_same_day(knowledge):
    record = record_of([observation(ALC, 0.9, hours_ago=2), observation("30364-4", 0.4)], knowledge)
    assert [c.value for c in record.series("alc")] == [0.9]


@pytest.mark.parametrize("status", ["registered", "cancelled", "entered-in-error", "unknown"])
def test_non_result_statuses_are_ignored(status, knowledge):
    assert record_of([observation(ANC, 0.2, status=status)], knowledge).series("anc", True) == []


def test_preliminary_yields_to_a_final_result_of_the_same_draw(knowledge):
    record = record_of(
        [observation(ANC, 0.3, status="preliminary", hours_ago=0.5), observation(ANC, 2.1)],
        knowledge,
    )
    assert [c.value for c in record.series("anc", include_preliminary=True)] == [2.1]


def test_effective_time_falls_back_to_period_then_issued(knowledge):
    obs = observation(WBC, 3.0)
    del obs["effectiveDateTime"]
    obs["issued"] = "2026-01-14T08:00:00Z"
    assert record_of([obs], knowledge).latest("wbc").time.isoformat() == "2026-01-14T08:00:00+00:00"


def test_invalid_fhir_is_reported_not_dropped(knowledge):
    broken = observation(WBC, 3.0)
    broken["valueQuantity"]["value"] = "three"
    record = record_of([sle(), broken], knowledge)
    assert record.series("wbc") == [] and record.unusable


def test_medication_reference_is_resolved_from_contained_and_bundle(knowledge):
    contained = medication_request(None)
    del contained["medicationCodeableConcept"]
    contained["medicationReference"] = {"reference": "#med"}
    contained["contained"] = [
        {
            "resourceType": "Medication",
            "id": "med",
            "code": {
                "coding": [
                    {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1256"}
                ]
            },
        }
    ]
    in_bundle = medication_request(None)
    del in_bundle["medicationCodeableConcept"]
    in_bundle["medicationReference"] = {"reference": "Medication/m9"}
    medication = {"resourceType": "Medication", "id": "m9", "code": {"text": "Methotrexate 2.5 mg"}}
    record = record_of([contained, in_bundle, medication], knowledge)
    assert set(record.exposures) == {"azathioprine", "methotrexate"}


def test_display_only_reference_still_matches(knowledge):
    request = medication_request(None)
    del request["medicationCodeableConcept"]
    request["medicationReference"] = {
        "reference": "Medication/x",
        "display": "MERCAPTOPURINE 50 MG PO TABS",
    }
    assert "mercaptopurine" in record_of([request], knowledge).exposures


def test_weight_in_pounds_and_azathioprine_dose_per_kg(knowledge):
    record = record_of(
        [
            medication_request(AZATHIOPRINE, days_ago=30, dose_mg=150),
            observation(WEIGHT, 132.3, "[lb_av]", days_ago=10),
        ],
        knowledge,
    )
    assert record.weight.kg == pytest.approx(60.0, abs=0.05)
    assert record.exposure("azathioprine").latest_dose.mg_per_day == 150
