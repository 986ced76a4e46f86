"""What a rule returns (a Finding) and what it reads (a RuleContext)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from cds_service.knowledge import Knowledge, ThresholdName
from cds_service.record import PatientRecord
from cds_service.rules.judgements import Fever, NeutrophilState

Indicator = Literal["info", "warning", "critical"]
Priority = Literal["routine", "urgent", "stat"]
# A rule's family in the catalogue (rules/catalogue.py); rules ask whether a card of a family
# fired, e.g. any cytopenia card makes a thiopurine test relevant.
Family = Literal["cytopenia", "order", "pharmacogenomics", "monitoring", "note", "data"]
_ANY_INDICATOR: tuple[str, ...] = ("info", "warning", "critical")

# A card summary stays under 140 characters (CDS Hooks); rules word theirs to fit.
MAX_SUMMARY = 139
# What fever adds to any other cytopenia card (clinical rules §2.4 "fever with other cytopenia").
FEBRILE_NOW = "Febrile now: same-day assessment and CBC with differential stat"


def upper_first(text: str) -> str:
    """Capitalise a sentence's first letter only ("TMP-SMX" keeps its capitals)."""
    return text[:1].upper() + text[1:]


# Card text quotes a threshold from the knowledge, never a typed copy of it, so a site override
# (site profile thresholds.yaml) changes the words with the logic.
def shown_limit(value: float, decimals: int = 0) -> str:
    """A threshold as the text writes it: as short as exact ("0.5", "30"), with at least
    `decimals` decimals where the wording has them ("1.0", "3.0")."""
    fixed = f"{value:.{decimals}f}"
    return fixed if float(fixed) == value else f"{value:g}"


_MONTH_DAYS = 365.25 / 12


def shown_period(days: float) -> str:
    """A period the text gives in months ("3 months" for 90 days, "6 months" for 183): whole
    months give or take 3 days, else in days ("45 days")."""
    months = round(days / _MONTH_DAYS)
    if months >= 1 and abs(days - months * _MONTH_DAYS) <= 3:
        return f"{months} month{'s' if months > 1 else ''}"
    return f"{shown_limit(days)} days"


@dataclass(frozen=True)
class SuggestedOrder:
    """A ServiceRequest the card offers to create (rendered as a FHIR `create` action)."""

    kind: Literal["cbc", "tpmt_nudt15", "hematology_referral"]
    priority: Priority = "routine"
    label: str = ""
    recommended: bool = False


@dataclass(frozen=True)
class DraftOrderChange:
    """An action on a draft order in order hooks: delete it, or update it to a lower dose."""

    kind: Literal["delete", "update"]
    resource_id: str  # e.g. MedicationRequest/123
    label: str
    resource: dict[str, Any] | None = None  # the whole updated resource for `update`
    recommended: bool = False
    # Orders created in the same suggestion (its actions are one transaction), e.g. cancel the
    # draft and order a CBC: the CDS Hooks "propose alternate request" pattern.
    with_orders: tuple[SuggestedOrder, ...] = ()


@dataclass
class Finding:
    indicator: Indicator
    summary: str
    evidence: list[str]
    recommendations: list[str]
    sources: list[str]  # knowledge source keys; the first is the card's source
    orders: list[SuggestedOrder] = field(default_factory=list)
    draft_changes: list[DraftOrderChange] = field(default_factory=list)
    override_reasons: list[str] = field(
        default_factory=lambda: ["already-addressed", "counts-reviewed", "benefit-outweighs-risk"]
    )
    evidence_level: str = ""  # e.g. "reported in a case report" (clinical rules §1.5)
    # The value that decided the card, e.g. "ANC 1.20 x10^9/L": quoted when fever rewrites the
    # summary (clinical rules §2.4 "fever with other cytopenia").
    decisive: str = ""
    # False for a card that is not about the counts (a dangerous combination with normal
    # counts): fever does not rewrite it.
    about_counts: bool = True
    # Rules whose content this card carries when it fired (v4: one card per problem, e.g. a
    # moderate-neutropenia card on a tier A drug carrying the dose review and, through it,
    # the profound lymphopenia): they do not run after it, like `suppressed_by`, but only
    # when this card really carried them.
    carries: tuple[str, ...] = ()
    # The catalogue row's id: the runner stamps it (rules/__init__.py), so a rule body never
    # types its own id.
    rule: str = ""


@dataclass
class RuleContext:
    record: PatientRecord
    knowledge: Knowledge
    hook: str
    families: Mapping[str, Family]  # rule id -> family, from the catalogue
    # Judgements many rules share, made once per call by the runner (rules/__init__.py):
    # fever, the current WBC/ANC, and the same with preliminary results where the site lets
    # critical rules read them (rules/assessments.py).
    fever: Fever | None
    neutrophils: NeutrophilState
    critical_neutrophils: NeutrophilState
    fired: list[Finding] = field(default_factory=list)

    def threshold(self, name: ThresholdName) -> float:
        return self.knowledge.threshold(name)

    def has_fired(self, *rules: str, indicators: tuple[str, ...] = _ANY_INDICATOR) -> bool:
        return any(f.rule in rules and f.indicator in indicators for f in self.fired)

    def carried(self, rule: str) -> bool:
        """Whether a card that fired carries `rule`'s content (Finding.carries)."""
        return any(rule in f.carries for f in self.fired)

    def has_fired_family(
        self, family: Family, indicators: tuple[str, ...] = _ANY_INDICATOR
    ) -> bool:
        return any(
            self.families[f.rule] == family and f.indicator in indicators for f in self.fired
        )


Rule = Callable[[RuleContext], Finding | None]
