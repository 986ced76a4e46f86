"""The rule catalogue (clinical rules §3.1): one row per rule, in the order the rules run.

Everything else about a rule derives from its row: the run order (`RULES`), the card title
(cards.py), the hooks a service may list it for (services.py checks hooks/*.yaml against them),
when it speaks (scope), its family, whether fever leads its card, and the precedence the engine
applies before running it. Adding a rule is writing its function and its row (plus fixtures).

Order matters: a rule sees the findings of the rules above it (precedence, §3.2), and within an
indicator the cards are kept in this order when the answer is capped. The problem-level cards
come first, so what a crowded answer drops is the lowest-priority info or warning card.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from cds_service.protocol.hooks import ORDER_HOOKS, PATIENT_VIEW, SUPPORTED_HOOKS
from cds_service.rules.base import Family, Rule
from cds_service.rules.data_quality import data_quality
from cds_service.rules.dose_review import drug_cytopenia_dose_review
from cds_service.rules.febrile_neutropenia import febrile_neutropenia
from cds_service.rules.leukopenia import (
    leukopenia_monitor,
    refractory_leukopenia_referral,
    steroid_leukocytosis_note,
)
from cds_service.rules.lymphopenia import lymphopenia_info, lymphopenia_profound
from cds_service.rules.methotrexate import methotrexate_daily_dosing
from cds_service.rules.monitoring import cbc_stale
from cds_service.rules.myelotoxic_order import order_myelotoxic_low_counts
from cds_service.rules.neutropenia import neutropenia_moderate, neutropenia_severe
from cds_service.rules.orders import gcsf_caution, order_no_recent_cbc
from cds_service.rules.pharmacogenomics import thiopurine_pgx

# When a rule may speak (clinical rules §2.2):
# - "patient": only for a patient in scope (lupus, or a current or recent tier A/B drug);
# - "order": on order hooks a draft for a tier A/B drug also brings the patient in scope (§3);
#   the patient-state rules keep the §2.2 scope, as a draft is not exposure;
# - "always": whenever data is missing or a draft could not be read, in scope or not (missing
#   data is always said); otherwise as "order".
Scope = Literal["patient", "order", "always"]

PATIENT_VIEW_ONLY = (PATIENT_VIEW,)


@dataclass(frozen=True)
class CatalogueRow:
    id: str  # the rule id: the card's source.topic code
    function: Rule
    title: str  # the card's source.topic display
    hooks: tuple[str, ...]  # the hooks a service may run it on
    scope: Scope
    family: Family
    # Fever leads the card (§2.4 "fever with other cytopenia"): the summary becomes "Febrile
    # now: ..." and the card at least a warning, unless it is critical or not about the counts.
    fever_leads: bool = False
    # Not run when any of these rules fired (they run earlier): one card per problem (§3.2).
    suppressed_by: tuple[str, ...] = ()
    # The suppressed rules whose content this card carries (e.g. the dose-review drug lines).
    absorbs: tuple[str, ...] = ()
    # What the rule's own code decides from the findings before it (not expressible above).
    precedence: str = ""


CATALOGUE: tuple[CatalogueRow, ...] = (
    CatalogueRow(
        "FEBRILE_NEUTROPENIA",
        febrile_neutropenia,
        "Febrile neutropenia",
        hooks=SUPPORTED_HOOKS,
        scope="patient",
        family="cytopenia",
        absorbs=("DRUG_CYTOPENIA_DOSE_REVIEW",),
    ),
    CatalogueRow(
        "NEUTROPENIA_SEVERE",
        neutropenia_severe,
        "Severe neutropenia",
        hooks=SUPPORTED_HOOKS,
        scope="patient",
        family="cytopenia",
        suppressed_by=("FEBRILE_NEUTROPENIA",),
        absorbs=("DRUG_CYTOPENIA_DOSE_REVIEW",),
        precedence="Silent when FEBRILE_NEUTROPENIA fired (with fever and no febrile card it "
        "speaks, led by the fever); "
        "stays beside REFRACTORY_LEUKOPENIA_REFERRAL (the acute problem beside the course).",
    ),
    CatalogueRow(
        "METHOTREXATE_DAILY_DOSING",
        methotrexate_daily_dosing,
        "Methotrexate on more than 2 days a week",
        hooks=SUPPORTED_HOOKS,
        scope="order",
        family="order",
        # After the critical patient-state cards (an emergency comes first), before every
        # other card: a daily methotrexate order is the gravest thing about the order.
        precedence="Stands beside any cytopenia card: the dosing error is its own problem.",
    ),
    CatalogueRow(
        "REFRACTORY_LEUKOPENIA_REFERRAL",
        refractory_leukopenia_referral,
        "Refractory leukopenia: referral",
        hooks=PATIENT_VIEW_ONLY,
        scope="patient",
        family="cytopenia",
        fever_leads=True,
        # Before the moderate and dose-review cards, which it absorbs (v3 precedence).
        absorbs=("NEUTROPENIA_MODERATE", "DRUG_CYTOPENIA_DOSE_REVIEW"),
    ),
    CatalogueRow(
        "NEUTROPENIA_MODERATE",
        neutropenia_moderate,
        "Moderate neutropenia",
        hooks=PATIENT_VIEW_ONLY,
        scope="patient",
        family="cytopenia",
        fever_leads=True,
        suppressed_by=(
            "NEUTROPENIA_SEVERE",
            "FEBRILE_NEUTROPENIA",
            "REFRACTORY_LEUKOPENIA_REFERRAL",
        ),
        # v4: one card for one neutropenia on a tier A drug, carrying the drug lines and, for
        # an ALC < 0.5, the lymphopenia the dose review would have absorbed (only then, so not
        # a catalogue suppression: Finding.carries).
        absorbs=("DRUG_CYTOPENIA_DOSE_REVIEW",),
        precedence="Silent when FEBRILE_NEUTROPENIA fired; with fever and no febrile card, "
        "fever leads it (at least a warning). On a tier A drug it carries the profound "
        "lymphopenia (Finding.carries), so LYMPHOPENIA_PROFOUND does not run after it.",
    ),
    CatalogueRow(
        "DRUG_CYTOPENIA_DOSE_REVIEW",
        drug_cytopenia_dose_review,
        "Drug-related cytopenia: dose review",
        hooks=PATIENT_VIEW_ONLY,
        scope="patient",
        family="cytopenia",
        fever_leads=True,
        suppressed_by=(
            "FEBRILE_NEUTROPENIA",
            "NEUTROPENIA_SEVERE",
            "REFRACTORY_LEUKOPENIA_REFERRAL",
            "NEUTROPENIA_MODERATE",
        ),
        # v4: an ALC < 0.5 on a tier A drug is one card, graded by episode, carrying the
        # infection screen and prophylaxis lines.
        absorbs=("LYMPHOPENIA_PROFOUND",),
    ),
    CatalogueRow(
        "ORDER_MYELOTOXIC_LOW_COUNTS",
        order_myelotoxic_low_counts,
        "Marrow-toxic order with low counts",
        hooks=ORDER_HOOKS,
        scope="order",
        family="order",
        fever_leads=True,
    ),
    CatalogueRow(
        "ORDER_NO_RECENT_CBC",
        order_no_recent_cbc,
        "Marrow-toxic order without a recent CBC",
        hooks=ORDER_HOOKS,
        scope="order",
        family="order",
    ),
    CatalogueRow(
        "GCSF_CAUTION",
        gcsf_caution,
        "G-CSF in SLE",
        hooks=ORDER_HOOKS,
        scope="order",
        family="order",
        suppressed_by=("FEBRILE_NEUTROPENIA",),
    ),
    CatalogueRow(
        "LYMPHOPENIA_PROFOUND",
        lymphopenia_profound,
        "Profound lymphopenia",
        hooks=PATIENT_VIEW_ONLY,
        scope="patient",
        family="cytopenia",
        fever_leads=True,
        suppressed_by=("DRUG_CYTOPENIA_DOSE_REVIEW",),
    ),
    CatalogueRow(
        "LYMPHOPENIA_INFO",
        lymphopenia_info,
        "Lymphopenia in SLE",
        hooks=PATIENT_VIEW_ONLY,
        scope="patient",
        # A note on a finding common in SLE, not a cytopenia that calls for action: it makes
        # no thiopurine test relevant.
        family="note",
        fever_leads=True,
    ),
    CatalogueRow(
        "LEUKOPENIA_MONITOR",
        leukopenia_monitor,
        "Leukopenia monitoring",
        hooks=PATIENT_VIEW_ONLY,
        scope="patient",
        family="cytopenia",
        fever_leads=True,
        precedence="(a) silent after any warning or critical cytopenia card or any "
        "DRUG_CYTOPENIA_DOSE_REVIEW card; (b) silent after any warning or critical cytopenia "
        "card.",
    ),
    CatalogueRow(
        "THIOPURINE_PGX",
        thiopurine_pgx,
        "Thiopurine pharmacogenomics (TPMT/NUDT15)",
        hooks=SUPPORTED_HOOKS,
        scope="order",
        family="pharmacogenomics",
        precedence="On patient-view any cytopenia card makes a current thiopurine relevant, "
        "recently started or not.",
    ),
    CatalogueRow(
        "CBC_STALE",
        cbc_stale,
        "CBC monitoring overdue",
        hooks=PATIENT_VIEW_ONLY,
        scope="patient",
        family="monitoring",
        fever_leads=True,
        precedence="A FEBRILE_NEUTROPENIA card drops the 'febrile without a WBC in 72 h' "
        "reason: it asks for the same stat CBC.",
    ),
    CatalogueRow(
        "DATA_QUALITY",
        data_quality,
        "Data quality",
        hooks=SUPPORTED_HOOKS,
        scope="always",
        family="data",
        precedence="A lab-flagged critical low already on a warning or critical "
        "FEBRILE_NEUTROPENIA, NEUTROPENIA_SEVERE or LEUKOPENIA_MONITOR card is not listed "
        "again; 'no clinical card was made' only when no other card was.",
    ),
    CatalogueRow(
        "STEROID_LEUKOCYTOSIS_NOTE",
        steroid_leukocytosis_note,
        "Steroid leukocytosis",
        hooks=PATIENT_VIEW_ONLY,
        scope="patient",
        family="note",
    ),
)

BY_ID: Mapping[str, CatalogueRow] = MappingProxyType({row.id: row for row in CATALOGUE})
# What RuleContext.has_fired_family reads: each rule's family.
FAMILIES: Mapping[str, Family] = MappingProxyType({row.id: row.family for row in CATALOGUE})


def rule_title(rule_id: str) -> str:
    return BY_ID[rule_id].title


def rule_ids(hook: str) -> tuple[str, ...]:
    """The rules a service on this hook may run, in catalogue order."""
    return tuple(row.id for row in CATALOGUE if hook in row.hooks)
