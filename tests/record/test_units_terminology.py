"""Units by name only (clinical rules §2.3) and code matching (§4, §5)."""

from __future__ import annotations

import copy

import pytest

from cds_service.record import terminology, units
from cds_service.record.conditions import has_duffy_code, is_duffy_null
from cds_service.record.dosing import daily_dose
from tests.support.order_builders import DUFFY_NULL


@pytest.fixture
def count_aliases(knowledge):
    return knowledge.units["count_factor_to_10e9_per_L"]["exact"]


@pytest.mark.parametrize(
    ("quantity", "factor"),
    [
        ({"code": "10*3/uL", "system": "http://unitsofmeasure.org"}, 1.0),
        ({"code": "10*9/L"}, 1.0),
        ({"code": "10*3/mm3"}, 1.0),
        ({"code": "10*6/mL"}, 1.0),
        ({"code": "/nL"}, 1.0),
        ({"code": "/uL"}, 0.001),
        ({"code": "{cells}/uL"}, 0.001),
        ({"code": "/mm3"}, 0.001),
        ({"unit": "K/uL"}, 1.0),
        ({"code": "K/uL", "system": "http://unitsofmeasure.org"}, 1.0),  # not kelvin
        ({"unit": "G/L"}, 1.0),  # not gauss
        ({"unit": "x10E3/uL"}, 1.0),
        ({"unit": "cells/uL"}, 0.001),
        ({"unit": "thou/uL"}, 1.0),
    ],
)
def test_count_units_convert_by_name(quantity, factor, count_aliases):
    assert units.count_factor(quantity, count_aliases) == pytest.approx(factor)


@pytest.mark.parametrize(
    "quantity",
    [{}, {"unit": "cells/hpf"}, {"code": "mg/dL"}, {"code": "%"}, {"code": "/uL", "unit": "K/uL"}],
)
def test_unknown_missing_or_contradictory_units_are_not_guessed(quantity, count_aliases):
    assert units.count_factor(quantity, count_aliases) is None


def test_temperature_and_weight_use_the_ucum_library(knowledge):
    assert units.to_celsius(
        {"value": 100.4, "code": "[degF]"}, knowledge.units["temperature_aliases"]
    ) == pytest.approx(38.0)
    assert units.to_kilograms(
        {"value": 154, "code": "[lb_av]"}, knowledge.units["weight_aliases"]
    ) == pytest.approx(69.853, 1e-3)
    assert (
        units.to_kilograms({"value": 70, "unit": "stone"}, knowledge.units["weight_aliases"])
        is None
    )


RX = "http://www.nlm.nih.gov/research/umls/rxnorm"


@pytest.mark.parametrize(
    ("concept", "ingredient", "how"),
    [
        ({"coding": [{"system": RX, "code": "1256"}]}, "azathioprine", "RxNorm ingredient"),
        ({"coding": [{"system": RX, "code": "197388"}]}, "azathioprine", "RxNorm product"),
        (
            {"coding": [{"system": "http://www.whocc.no/atc", "code": "L04AX01"}]},
            "azathioprine",
            "ATC",
        ),
        ({"text": "MERCAPTOPURINE 50 MG PO TABS"}, "mercaptopurine", "name"),
        ({"text": "Imuran 50mg"}, "azathioprine", "name"),
        ({"text": "filgrastim-sndz (Zarxio)"}, "filgrastim", "name"),
        (
            {"coding": [{"system": "http://www.whocc.no/atc", "code": "L03AA17"}]},
            "filgrastim",
            "ATC (colony-stimulating factor class)",
        ),
    ],
)
def test_medication_matching_order(concept, ingredient, how, knowledge):
    found, matched_by = terminology.match_medication(concept, knowledge)
    assert ingredient in [i.id for i in found]
    assert matched_by == how


def test_whole_words_only(knowledge):
    found, _ = terminology.match_medication({"text": "methylprednisolone 4 mg"}, knowledge)
    assert [i.id for i in found] == ["methylprednisolone"]


@pytest.mark.parametrize(
    ("code", "system", "group"),
    [
        ("55464009", "http://snomed.info/sct", "sle"),
        ("M32.14", "http://hl7.org/fhir/sid/icd-10-cm", "sle"),
        ("M32.0", "http://hl7.org/fhir/sid/icd-10-cm", "drug_induced_sle"),
        ("200936003", "http://snomed.info/sct", "lupus_unspecified"),
        ("L93.0", "http://hl7.org/fhir/sid/icd-10-cm", "cutaneous_lupus"),
        ("R50.9", "http://hl7.org/fhir/sid/icd-10-cm", "fever"),
        ("38341003", "http://snomed.info/sct", None),
    ],
)
def test_condition_value_sets(code, system, group, knowledge):
    concept = {"coding": [{"system": system, "code": code}]}
    assert terminology.condition_group(concept, knowledge) == group


def test_daily_dose_weekly_methotrexate_and_tablets(knowledge):
    weekly = [
        {
            "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "wk"}},
            "doseAndRate": [{"doseQuantity": {"value": 15, "code": "mg"}}],
        }
    ]
    assert daily_dose(weekly, None).mg_per_day == pytest.approx(15 / 7)
    tablets = [
        {
            "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
            "doseAndRate": {"doseQuantity": {"value": 1, "code": "{tbl}"}},
        }
    ]  # R4 example error
    assert daily_dose(tablets, knowledge.products["197388"]).mg_per_day == 100
    assert daily_dose(tablets, None).mg_per_day is None


def test_daily_dose_of_a_malformed_unvalidated_draft_is_unknown_not_an_error():
    # Draft orders are read without FHIR validation: a wrong type must not crash the call.
    dosage = [
        {
            "timing": {"repeat": "daily"},
            "doseAndRate": [{"doseQuantity": {"value": 50, "code": "mg"}}],
        }
    ]
    assert daily_dose(dosage, None).mg_per_day is None


@pytest.mark.parametrize("field", ["system", "code"])
@pytest.mark.parametrize("wrong", [[], {}, ["duffy-phenotype"], None, 7])
def test_a_coding_whose_system_or_code_is_not_a_string_matches_nothing(field, wrong, knowledge):
    # Codes are read before validation (to pick the resources worth validating): an invalid
    # coding must be "no match", never an error (the fuzz found a list giving a 500).
    observation = copy.deepcopy(DUFFY_NULL)
    assert has_duffy_code(observation, knowledge) and is_duffy_null(observation, knowledge)
    observation["code"]["coding"][0][field] = wrong
    assert not has_duffy_code(observation, knowledge)
    assert not is_duffy_null(observation, knowledge)
    system = DUFFY_NULL["code"]["coding"][0]["system"]
    assert terminology.has_code(DUFFY_NULL["code"], system, ["duffy-phenotype"])
    assert not terminology.has_code(observation["code"], system, ["duffy-phenotype"])
