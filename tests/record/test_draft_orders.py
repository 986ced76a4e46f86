"""Reading context.draftOrders into the PatientRecord (clinical rules §2.1, §3)."""

from __future__ import annotations

from tests.support.order_builders import PATIENT, count, dosage, med_request, record, sle


def test_drafts_are_not_current_exposure_but_bring_the_order_rules_in_scope() -> None:
    rec = record([count("wbc", 5.0, 3)], [med_request("aza", "azathioprine 50 mg tablet")])
    assert rec.exposures == {}  # a draft is the order being written, not exposure
    assert not rec.in_scope
    assert rec.in_scope_for_orders
    (draft,) = rec.draft_orders
    assert draft.resource_id == "MedicationRequest/aza"
    assert [m.ingredient.id for m in draft.medications] == ["azathioprine"]


def test_order_select_evaluates_only_the_selections() -> None:
    drafts = [med_request("aza", "azathioprine"), med_request("mtx", "methotrexate")]
    rec = record([], drafts, selections=["MedicationRequest/mtx"])
    assert [d.resource_id for d in rec.evaluated_drafts()] == ["MedicationRequest/mtx"]
    assert len(rec.draft_orders) == 2  # the other draft stays as context


def test_other_order_types_are_tolerated_and_not_evaluated_as_drugs() -> None:
    others = [
        {"resourceType": kind, "id": f"x{i}", "status": "draft"}
        for i, kind in enumerate(
            ["ServiceRequest", "NutritionOrder", "DeviceRequest", "VisionPrescription"]
        )
    ]
    rec = record([], others)
    assert [d.medications for d in rec.draft_orders] == [()] * 4
    assert rec.draft_notes == []


def test_r4_example_errors_in_the_dose_are_still_read() -> None:
    as_object = med_request("a", "methotrexate", dose=None)
    as_object["dosageInstruction"] = [
        {
            "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "wk"}},
            "doseAndRate": {"doseQuantity": {"value": 15, "unit": "mg", "code": "mg"}},
        }
    ]
    stu3_style = med_request("b", "methotrexate")
    stu3_style["dosageInstruction"] = [
        {
            "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "wk"}},
            "doseQuantity": {"value": 20, "unit": "mg", "code": "mg"},
        }
    ]
    rec = record([], [as_object, stu3_style])
    doses = [d.medications[0].dose.mg_per_day for d in rec.draft_orders]
    assert doses == [15 / 7, 20 / 7]


def test_medication_reference_is_resolved_contained_in_the_bundle_or_by_display() -> None:
    contained = med_request("c", "")
    del contained["medicationCodeableConcept"]
    contained["contained"] = [
        {
            "resourceType": "Medication",
            "id": "m",
            "code": {
                "coding": [
                    {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1256"}
                ]
            },
        }
    ]
    contained["medicationReference"] = {"reference": "#m"}
    in_bundle = med_request("b", "")
    del in_bundle["medicationCodeableConcept"]
    in_bundle["medicationReference"] = {"reference": "Medication/mp"}
    medication = {"resourceType": "Medication", "id": "mp", "code": {"text": "Purixan"}}
    text_only = med_request("t", "")
    del text_only["medicationCodeableConcept"]
    text_only["medicationReference"] = {
        "reference": "Medication/unknown",
        "display": "MERCAPTOPURINE 50 MG PO TABS",
    }
    rec = record([], [contained, in_bundle, medication, text_only])
    found = [[m.ingredient.id for m in d.medications] for d in rec.draft_orders]
    assert found == [["azathioprine"], ["mercaptopurine"], ["mercaptopurine"]]
    assert rec.draft_notes == []


def test_what_cannot_be_read_becomes_a_note() -> None:
    unidentified = med_request("u", "")
    del unidentified["medicationCodeableConcept"]
    unidentified["medicationReference"] = {"reference": "Medication/gone"}
    bad_dose = med_request("d", "azathioprine", dose=dosage(2, "puffs"))
    other_patient = med_request("o", "methotrexate", subject={"reference": "Patient/someone"})
    rec = record(
        [sle()],
        [unidentified, bad_dose, other_patient],
        selections=["MedicationRequest/u", "MedicationRequest/d", "MedicationRequest/missing"],
    )
    notes = " | ".join(rec.draft_notes)
    assert "a draft medication order: the medication could not be identified" in notes
    assert "azathioprine draft: the dose could not be read (dose unit puffs" in notes
    assert "names a different patient" in notes
    assert "1 selected order(s) not among the draft orders" in notes
    assert PATIENT not in notes
    assert "MedicationRequest/" not in notes  # the clinician's words, never internal ids


def test_entries_without_a_resource_are_noted_not_raised() -> None:
    from cds_service.knowledge import load_knowledge
    from cds_service.protocol.draft_orders import read_draft_orders
    from cds_service.record import build_record
    from tests.support.order_builders import NOW

    broken = {"resourceType": "Bundle", "entry": [{}, "junk", {"resource": "x"}]}
    drafts = read_draft_orders(broken, None)
    rec = build_record([], PATIENT, NOW, load_knowledge(), drafts=drafts)
    assert len(rec.draft_notes) == 3
    assert rec.draft_orders == []


def test_cancelled_or_completed_drafts_are_not_orders_being_written() -> None:
    rec = record([], [med_request("c", "azathioprine", status="cancelled")])
    assert rec.draft_orders[0].medications == ()
