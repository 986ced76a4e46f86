"""The order rules at their threshold edges (clinical rules §2.4, §3)."""

from __future__ import annotations

import pytest

from tests.support.order_builders import DUFFY_NULL, cards, count, dosage, med_request, sle

AZA = "azathioprine 50 mg tablet"


def aza_draft(rid: str = "aza", mg: float = 100) -> dict:
    return med_request(rid, AZA, dose=dosage(mg))


@pytest.mark.parametrize(
    ("wbc", "expected"), [(3.5, None), (3.49, "warning"), (1.0, "warning"), (0.99, "critical")]
)
def test_myelotoxic_wbc_edges(wbc: float, expected: str | None) -> None:
    found = cards([sle(), count("wbc", wbc, 2)], [aza_draft()])
    finding = found.get("ORDER_MYELOTOXIC_LOW_COUNTS")
    assert (finding.indicator if finding else None) == expected


@pytest.mark.parametrize(("anc", "expected"), [(1.5, None), (0.5, "warning"), (0.49, "critical")])
def test_myelotoxic_anc_edges(anc: float, expected: str | None) -> None:
    found = cards([sle(), count("wbc", 4.5, 2), count("anc", anc, 2)], [aza_draft()])
    finding = found.get("ORDER_MYELOTOXIC_LOW_COUNTS")
    assert (finding.indicator if finding else None) == expected


def test_myelotoxic_uses_the_mycophenolate_anc_limit() -> None:
    mmf = med_request("mmf", "mycophenolate mofetil", dose=dosage(1000, frequency=2))
    resources = [sle(), count("wbc", 4.5, 2), count("anc", 1.4, 2)]
    assert "ORDER_MYELOTOXIC_LOW_COUNTS" not in cards(resources, [mmf])  # limit 1.3
    assert "ORDER_MYELOTOXIC_LOW_COUNTS" in cards(resources, [aza_draft()])  # limit 1.5


def test_myelotoxic_needs_a_current_count() -> None:
    assert "ORDER_MYELOTOXIC_LOW_COUNTS" in cards([sle(), count("wbc", 3.0, 30)], [aza_draft()])
    assert "ORDER_MYELOTOXIC_LOW_COUNTS" not in cards([sle(), count("wbc", 3.0, 31)], [aza_draft()])


def _on_azathioprine(mg: float) -> list[dict]:
    current = med_request("cur", AZA, status="active", dose=dosage(mg), days=400)
    wbcs = [count("wbc", 3.3, d) for d in (150, 90, 3)]
    return [sle(), current, *wbcs]


@pytest.mark.parametrize(("mg", "expected"), [(100, "info"), (50, "info"), (150, "warning")])
def test_myelotoxic_continuation_versus_dose_increase(mg: float, expected: str) -> None:
    found = cards(_on_azathioprine(100), [aza_draft(mg=mg)])
    assert found["ORDER_MYELOTOXIC_LOW_COUNTS"].indicator == expected


def test_dose_increase_offers_the_current_dose_as_an_update() -> None:
    finding = cards(_on_azathioprine(100), [aza_draft(mg=150)])["ORDER_MYELOTOXIC_LOW_COUNTS"]
    update = next(c for c in finding.draft_changes if c.kind == "update")
    assert update.recommended
    assert update.resource["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 100
    assert update.resource["id"] == "aza"
    delete = next(c for c in finding.draft_changes if c.kind == "delete")
    assert delete.resource_id == "MedicationRequest/aza"


def test_continuation_with_falling_counts_is_a_warning() -> None:
    resources = _on_azathioprine(100)[:2] + [count("wbc", 5.0, 90), count("wbc", 3.3, 3)]
    found = cards(resources, [aza_draft()])
    assert found["ORDER_MYELOTOXIC_LOW_COUNTS"].indicator == "warning"


def test_methotrexate_with_trimethoprim_recommends_cancelling() -> None:
    current = med_request("mtx", "methotrexate", status="active", dose=dosage(15, period_unit="wk"))
    bactrim = med_request("tmp", "Bactrim DS", dose=dosage(960, frequency=2))
    found = cards([sle(), current, count("wbc", 3.2, 2)], [bactrim])
    finding = found["ORDER_MYELOTOXIC_LOW_COUNTS"]
    assert [c.kind for c in finding.draft_changes] == ["delete"]
    assert finding.draft_changes[0].recommended
    assert not any(o.recommended for o in finding.orders)


def test_unselected_draft_counts_as_co_exposure_for_combinations() -> None:
    allopurinol = med_request("allo", "allopurinol 100 mg", dose=dosage(100))
    found = cards(
        [sle(), count("wbc", 3.2, 2)],
        [allopurinol, aza_draft()],
        hook="order-select",
        selections=["MedicationRequest/allo"],
    )
    assert "Dangerous combination: azathioprine with allopurinol." in (
        found["ORDER_MYELOTOXIC_LOW_COUNTS"].evidence
    )
    assert "THIOPURINE_PGX" not in found  # the azathioprine draft is not evaluated


def test_duffy_null_suppresses_the_order_card_above_its_limits() -> None:
    counts = [count("wbc", 3.2, 2), count("anc", 1.3, 2)]
    assert "ORDER_MYELOTOXIC_LOW_COUNTS" in cards([sle(), *counts], [aza_draft()])
    assert "ORDER_MYELOTOXIC_LOW_COUNTS" not in cards([sle(), DUFFY_NULL, *counts], [aza_draft()])


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        ([count("wbc", 5.0, 29)], None),
        ([count("wbc", 5.0, 31)], "info"),
        ([count("wbc", 4.0, 31)], "info"),
        ([count("wbc", 3.99, 31)], "warning"),
        ([count("wbc", 5.0, 31), count("anc", 1.49, 31)], "warning"),
        ([count("wbc", 5.0, 2, status="preliminary")], "info"),
        ([], "info"),
    ],
)
def test_no_recent_cbc_edges(resources: list[dict], expected: str | None) -> None:
    finding = cards(resources, [aza_draft()]).get("ORDER_NO_RECENT_CBC")
    assert (finding.indicator if finding else None) == expected


def test_no_recent_cbc_shows_the_low_value() -> None:
    finding = cards([count("wbc", 2.9, 60)], [aza_draft()])["ORDER_NO_RECENT_CBC"]
    assert "2.90" in finding.summary
    assert finding.orders[0].kind == "cbc" and finding.orders[0].priority == "urgent"


@pytest.mark.parametrize(
    "text",
    ["filgrastim-sndz 300 mcg", "Neulasta 6 mg", "pegfilgrastim-jmdb", "tbo-filgrastim", "Leukine"],
)
def test_gcsf_matched_by_name_in_sle(text: str) -> None:
    found = cards([sle(), count("wbc", 2.5, 1), count("anc", 0.9, 1)], [med_request("g", text)])
    assert found["GCSF_CAUTION"].indicator == "warning"


def test_gcsf_matched_by_atc_class() -> None:
    draft = med_request("g", "")
    draft["medicationCodeableConcept"] = {
        "coding": [{"system": "http://www.whocc.no/atc", "code": "L03AA14"}]
    }
    assert "GCSF_CAUTION" in cards([sle()], [draft])


def test_gcsf_needs_sle_and_yields_to_febrile_neutropenia() -> None:
    on_mtx = med_request("mtx", "methotrexate", status="active")
    gcsf = med_request("g", "filgrastim")
    assert "GCSF_CAUTION" not in cards([on_mtx, count("anc", 0.9, 1)], [gcsf])
    febrile = [sle(), count("wbc", 1.5, 0), count("anc", 0.4, 0), count("temp", 38.5, 0)]
    found = cards(febrile, [gcsf])
    assert "FEBRILE_NEUTROPENIA" in found and "GCSF_CAUTION" not in found


def test_poor_metabolizer_recommends_cancelling_the_thiopurine() -> None:
    poor = {
        "resourceType": "Observation",
        "id": "tpmt",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "41048-0"}]},
        "valueCodeableConcept": {"text": "TPMT *3A/*3A"},
        "interpretation": [{"text": "Poor metabolizer"}],
    }
    finding = cards([sle(), count("wbc", 6.0, 2), poor], [aza_draft()])["THIOPURINE_PGX"]
    assert finding.indicator == "warning"
    assert [(c.kind, c.recommended) for c in finding.draft_changes] == [("delete", True)]


def test_patient_state_rules_ignore_a_draft_for_an_out_of_scope_patient() -> None:
    found = cards([count("wbc", 2.0, 1), count("anc", 0.3, 1)], [med_request("x", "amoxicillin")])
    assert found == {}
