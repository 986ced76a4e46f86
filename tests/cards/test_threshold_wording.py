"""Card text quotes the thresholds the rules compare against, from the knowledge: a site that
overrides a threshold (site profile thresholds.yaml) sees its own number in the words, and the
default knowledge keeps the contract's wording."""

from __future__ import annotations

from typing import Any

import pytest

from cds_service.cards import render_card
from cds_service.knowledge import load_knowledge
from cds_service.protocol.draft_orders import read_draft_orders
from cds_service.protocol.hooks import ORDER_SIGN, PATIENT_VIEW
from cds_service.record import build_record
from cds_service.rules import evaluate_rules
from cds_service.rules.base import shown_limit, shown_period
from cds_service.rules.catalogue import rule_ids
from tests.support.builders import WEIGHT, observation
from tests.support.order_builders import (
    DUFFY_NULL,
    NOW,
    PATIENT,
    bundle,
    count,
    dosage,
    med_request,
    sle,
)


def _aza_draft() -> dict[str, Any]:
    return med_request("aza", "azathioprine 50 mg tablet", dose=dosage(100))


def _on_azathioprine() -> dict[str, Any]:
    return med_request(
        "cur", "azathioprine 50 mg tablet", status="active", dose=dosage(100), days=400
    )


def _card_text(
    thresholds: dict[str, float], hook: str, resources: list[dict], drafts: list[dict], rule: str
) -> str:
    knowledge = load_knowledge(thresholds)
    record = build_record(
        resources,
        PATIENT,
        NOW,
        knowledge,
        drafts=read_draft_orders(bundle(*drafts), None) if drafts else None,
    )
    findings = evaluate_rules(record, knowledge, hook, rule_ids(hook))
    [finding] = [f for f in findings if f.rule == rule]
    card = render_card(finding, PATIENT, knowledge)
    return f"{card['summary']}\n{card['detail']}"


CASES = [
    pytest.param(
        ORDER_SIGN,
        [sle()],
        [med_request("g", "filgrastim")],
        "GCSF_CAUTION",
        {"current_days": 21, "febrile_neutropenia_anc": 0.5, "fever_window_hours": 12},
        [
            "No WBC or ANC in the last 30 days.",
            "No febrile neutropenia found (no fever with ANC < 1.0 in the last 24 h).",
        ],
        [
            "No WBC or ANC in the last 21 days.",
            "No febrile neutropenia found (no fever with ANC < 0.5 in the last 12 h).",
        ],
        id="gcsf",
    ),
    pytest.param(
        ORDER_SIGN,
        [sle()],
        [_aza_draft()],
        "ORDER_NO_RECENT_CBC",
        {"current_days": 21},
        ["No CBC in the last 30 days: baseline CBC"],
        ["No CBC in the last 21 days: baseline CBC"],
        id="no-recent-cbc",
    ),
    pytest.param(
        ORDER_SIGN,
        [sle(), DUFFY_NULL, count("wbc", 2.5, 2), count("anc", 1.0, 2)],
        [_aza_draft()],
        "ORDER_MYELOTOXIC_LOW_COUNTS",
        {"duffy_null_anc": 1.1, "duffy_null_wbc": 2.75},
        ["below the Duffy-null limits (ANC 1.2, WBC 3.0 x10^9/L) or falling."],
        ["below the Duffy-null limits (ANC 1.1, WBC 2.75 x10^9/L) or falling."],
        id="duffy-null-order",
    ),
    pytest.param(
        ORDER_SIGN,
        [sle(), DUFFY_NULL, count("wbc", 2.5, 2), count("anc", 1.25, 2)],
        [med_request("mmf", "mycophenolate mofetil", dose=dosage(1000, frequency=2))],
        "ORDER_MYELOTOXIC_LOW_COUNTS",
        {"duffy_null_anc_mycophenolate": 1.28},
        # Mycophenolate is judged by its label's limit, and the card says that limit.
        ["below the Duffy-null limits (ANC 1.3, WBC 3.0 x10^9/L) or falling."],
        ["below the Duffy-null limits (ANC 1.28, WBC 3.0 x10^9/L) or falling."],
        id="duffy-null-order-mycophenolate",
    ),
    pytest.param(
        PATIENT_VIEW,
        [
            sle(),
            _on_azathioprine(),
            count("wbc", 3.8, 2),
            count("anc", 2.0, 2),
            observation(WEIGHT, 70, "kg", days_ago=200),
        ],
        [],
        "DRUG_CYTOPENIA_DOSE_REVIEW",
        {
            "dose_review_wbc": 3.2,
            "dose_review_anc": 1.2,
            "stable_days": 60,
            "weight_stale_days": 90,
        },
        [
            "the weight is more than 6 months old",
            "Not yet known to be stable for 3 months: repeat the CBC in 2-4 weeks.",
            "review the dose if the WBC falls below 3.5 x10^9/L or the ANC below 1.5 x10^9/L.",
        ],
        [
            "the weight is more than 3 months old",
            "Not yet known to be stable for 2 months: repeat the CBC in 2-4 weeks.",
            "review the dose if the WBC falls below 3.2 x10^9/L or the ANC below 1.2 x10^9/L.",
        ],
        id="dose-review-info",
    ),
    pytest.param(
        PATIENT_VIEW,
        [sle(), count("wbc", 1.5, 2)],
        [],
        "LEUKOPENIA_MONITOR",
        {"severe_neutropenia_anc": 0.4},
        ["the ANC may be below 0.5 x10^9/L."],
        ["the ANC may be below 0.4 x10^9/L."],
        id="leukopenia-anc-unknown",
    ),
    pytest.param(
        PATIENT_VIEW,
        [sle(), count("wbc", 3.0, 2), count("anc", 0.8, 2)],
        [],
        "NEUTROPENIA_MODERATE",
        {"fever_sustained_cel": 37.8},
        ["Tell the patient to report a fever of 38.0 °C or more at once."],
        ["Tell the patient to report a fever of 37.8 °C or more at once."],
        id="moderate-fever-advice",
    ),
    pytest.param(
        PATIENT_VIEW,
        [
            sle(),
            count("wbc", 3.0, 0),
            count("anc", 0.8, 0),
            count("temp", 38.1, 0.15),
            count("temp", 38.2, 0.05),
        ],
        [],
        "FEBRILE_NEUTROPENIA",
        {"fever_sustained_minutes": 90},
        ["temperature of at least 38.0 °C sustained over 1 h:"],
        ["temperature of at least 38.0 °C sustained over 1.5 h:"],
        id="sustained-fever",
    ),
    pytest.param(
        PATIENT_VIEW,
        [sle(), count("wbc", 3.0, 0), count("anc", 0.8, 0), count("temp", 38.5, 0.05)],
        [],
        "FEBRILE_NEUTROPENIA",
        {"profound_neutropenia_anc": 0.2},
        ["high-risk features (ANC < 0.1, sepsis, pneumonia"],
        ["high-risk features (ANC < 0.2, sepsis, pneumonia"],
        id="febrile-gcsf-profound",
    ),
    pytest.param(
        PATIENT_VIEW,
        [sle(), count("wbc", 0.15, 0)],
        [],
        "NEUTROPENIA_SEVERE",
        {"profound_neutropenia_anc": 0.2},
        ["WBC 0.15 with no differential (x10^9/L): treated as ANC < 0.5 (CTCAE v5 grade 4)."],
        ["treated as ANC < 0.5 (CTCAE v5 grade 4); below 0.2, profound agranulocytosis."],
        id="severe-profound-agranulocytosis",
    ),
]


@pytest.mark.parametrize(
    ("hook", "resources", "drafts", "rule", "overrides", "default", "overridden"), CASES
)
def test_card_text_quotes_the_thresholds_of_the_knowledge(
    hook: str,
    resources: list[dict],
    drafts: list[dict],
    rule: str,
    overrides: dict[str, float],
    default: list[str],
    overridden: list[str],
) -> None:
    text = _card_text({}, hook, resources, drafts, rule)
    assert [line for line in default if line not in text] == []
    text = _card_text(overrides, hook, resources, drafts, rule)
    assert [line for line in overridden if line not in text] == []


@pytest.mark.parametrize(
    ("value", "decimals", "shown"),
    [(0.5, 0, "0.5"), (30.0, 0, "30"), (1.0, 1, "1.0"), (1.25, 1, "1.25"), (3.0, 1, "3.0")],
)
def test_a_limit_is_shown_as_short_as_exact(value: float, decimals: int, shown: str) -> None:
    assert shown_limit(value, decimals) == shown


@pytest.mark.parametrize(
    ("days", "shown"),
    [(90, "3 months"), (183, "6 months"), (180, "6 months"), (30, "1 month"), (45, "45 days")],
)
def test_a_period_is_shown_in_whole_months_or_in_days(days: float, shown: str) -> None:
    assert shown_period(days) == shown


def test_a_febrile_patients_anc_is_repeated_when_older_than_the_knowledge_allows() -> None:
    resources = [sle(), count("wbc", 3.0, 2), count("anc", 0.8, 2), count("temp", 38.5, 0.05)]
    text = _card_text({}, PATIENT_VIEW, resources, [], "FEBRILE_NEUTROPENIA")
    assert "Last ANC 2 days ago: repeat CBC stat." in text
    text = _card_text(
        {"febrile_anc_repeat_days": 3}, PATIENT_VIEW, resources, [], "FEBRILE_NEUTROPENIA"
    )
    assert "Febrile neutropenia (ANC 0.8" in text and "Last ANC" not in text
