"""The PatientRecord and the facts it holds, each with its provenance (what was received, when,
from which resource): what the rules read. Built by `build.build_record`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cds_service.days import day
from cds_service.knowledge import Ingredient
from cds_service.record.dosing import DailyDose

# A FHIR resource (or part of one) as received. Every one comes out of orjson, so a JSON
# object is a `dict`: the readers test `isinstance(x, dict)`, about five times cheaper than the
# `Mapping` ABC's check, and run thousands of times a call.
Raw = Mapping[str, Any]

# Observation statuses that count (clinical rules §2.1); preliminary results count only for the
# critical rules, and only until a final result of the same draw exists.
COUNTED_OBSERVATION_STATUSES = {"final", "amended", "corrected"}
PRELIMINARY = "preliminary"
SAME_DRAW = timedelta(hours=1)  # results this close with no specimens to compare: one draw
# The count each count-related analyte describes (its parts and percentages included).
COUNT_GROUPS = {
    "wbc": "wbc",
    "anc": "anc",
    "neutrophils_segmented": "anc",
    "neutrophils_band": "anc",
    "neutrophil_percent": "anc",
    "alc": "alc",
    "lymphocyte_percent": "alc",
}


def format_count(value: float) -> str:
    """A count in 10^9/L as labs print it (two decimals below 10: "0.05", "2.80"; one from 10:
    "14.2"; none from 100), with one decimal more when rounding would change the value: an
    ANC of 0.496 shown as "0.50" would read as above a "< 0.5" threshold that it meets."""
    decimals = 2 if abs(value) < 10 else 1 if abs(value) < 100 else 0
    if abs(value) < 100 and round(value, decimals) != round(value, decimals + 1):
        decimals += 1
    return f"{value:.{decimals}f}"


def received_as_shown(received: str, value: float) -> bool:
    """True when the value as received is the normalised value (its unit is only another
    spelling of the normalised unit, e.g. "2.8 10*3/uL"): cards then show it once (issue 11)."""
    number = received.split(" ", 1)[0].lstrip("<>=")  # a censored "<0.1" is its bound
    try:
        return math.isclose(float(number), value, rel_tol=1e-9, abs_tol=1e-12)
    except ValueError:
        return False


# A censored count's comparator in card text, spaced before the number ("< 0.5", "at most 0.5").
_COMPARATOR_WORDS = {"<": "< ", ">": "> ", "<=": "at most ", ">=": "at least "}


def shown_comparator(comparator: str) -> str:
    """A FHIR comparator for card text: "<" and ">" stay; "<=" and ">=" become "at most " and
    "at least " (clinical rules §3 plain clinical English, v4)."""
    return {"<=": "at most ", ">=": "at least "}.get(comparator, comparator)


@dataclass(frozen=True)
class Count:
    """A cell count in 10^9/L with what was received."""

    analyte: str  # wbc | anc | alc
    value: float
    received: str  # as the lab sent it, e.g. "2.8 K/uL"
    time: datetime
    status: str
    method: str  # manual | segmented + bands | automated | computed | flow
    reference: str  # Observation/id (or a list for derived values)
    specimen: str | None = None
    low: float | None = None  # lab reference range, normalised
    high: float | None = None
    note: str = ""
    comparator: str = ""  # "<" or "<=" for a censored result: `value` is the bound (§2.3)
    critical_low: bool = False  # the lab flags it critically low (interpretation LL or <)

    @property
    def is_preliminary(self) -> bool:
        return self.status == PRELIMINARY

    @property
    def bound(self) -> str:
        """The value as judged, as card text quotes it (clinical rules §3 wording v4): a
        censored value keeps its sign and the lab's own precision ("< 0.5", never "0.50"; "at
        most 0.5" for `<=`, as card text never writes `<=` or `>=`); any other value at most 3
        significant digits ("0.80"). The one display of a count's value: summaries, evidence
        (`describe`) and trends all use it."""
        if self.comparator:
            return f"{_COMPARATOR_WORDS.get(self.comparator, self.comparator)}{self.value:g}"
        return format_count(self.value)

    def describe(self) -> str:
        shown = f"{self.bound} x10^9/L"
        received = (
            f" (received {self.received})"
            if self.received and not received_as_shown(self.received, self.value)
            else ""
        )
        note = f"; {self.note}" if self.note else ""
        status = ", preliminary: confirm with the lab" if self.is_preliminary else ""
        return f"{shown}{received} on {day(self.time)}{status}{note}"


@dataclass(frozen=True)
class UnusableResult:
    """A result that could not be interpreted, and why (shown on a DATA_QUALITY card)."""

    what: str
    received: str
    time: datetime | None
    reason: str
    reference: str
    analyte: str = ""  # wbc | anc | alc | ... when known
    value: float | None = None  # the number as received (no unit applied), when there is one
    comparator: str = ""
    critical_low: bool = False

    def describe(self) -> str:
        when = f" on {day(self.time)}" if self.time else ""
        received = f" {self.received}" if self.received else ""
        return f"{self.what}{received}{when}: {self.reason}"


@dataclass(frozen=True)
class LabFlag:
    """A count the lab flags critically low (clinical rules §2.3 "censored and flagged
    results"), whether or not its value could be converted."""

    analyte: str  # wbc | anc | alc
    received: str  # the value as received, e.g. "<0.1"
    time: datetime
    status: str

    @property
    def is_preliminary(self) -> bool:
        return self.status == PRELIMINARY


@dataclass(frozen=True)
class Temperature:
    celsius: float
    received: str
    time: datetime
    site: str


@dataclass(frozen=True)
class Weight:
    kg: float
    received: str
    time: datetime


@dataclass(frozen=True)
class PharmacogenomicResult:
    gene: str  # TPMT | TPMT and NUDT15
    phenotype: str | None  # normal | intermediate | poor | low activity | None (bare number)
    received: str
    time: datetime | None
    # Each gene's own phenotype when the lab names the genes ("TPMT normal metabolizer; NUDT15
    # intermediate metabolizer"): (("TPMT", "normal"), ("NUDT15", "intermediate")). Empty when
    # the lab gives one phenotype for the result without naming a gene.
    genes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class MedicationRecord:
    """One MedicationStatement, MedicationRequest or MedicationAdministration for one drug."""

    ingredient: Ingredient
    exposure: str  # current | past | unknown | draft | administered
    display: str
    reference: str
    matched_by: str
    start: datetime | None
    end: datetime | None  # last-dose evidence for past exposure
    dose: DailyDose
    raw: Raw = field(repr=False, compare=False, default_factory=dict)


@dataclass(frozen=True)
class DrugExposure:
    """Everything known about one ingredient, summarised (clinical rules §2.1)."""

    ingredient: Ingredient
    current: bool
    recent: bool  # not current, but the last dose is within the drug's recent window
    start: datetime | None  # start of the current exposure
    last_dose: datetime | None
    records: tuple[MedicationRecord, ...]
    started_recently: bool
    dose_increased_recently: bool

    @property
    def current_or_recent(self) -> bool:
        return self.current or self.recent

    @property
    def latest_dose(self) -> DailyDose | None:
        """The daily dose of the newest current (or draft) order."""
        current = [r for r in self.records if r.exposure in ("current", "draft")]
        if not current:
            return None
        return max(current, key=lambda r: r.start.timestamp() if r.start else 0.0).dose

    def describe(self) -> str:
        if self.current:
            since = f" since {day(self.start)}" if self.start else ""
            return f"{self.ingredient.display} (current{since})"
        last = f", last dose {day(self.last_dose)}" if self.last_dose else ""
        return f"{self.ingredient.display} (recently stopped{last})"


@dataclass(frozen=True)
class DraftOrder:
    """One order of `context.draftOrders` (order-select, order-sign). A draft is the order being
    written, never current exposure (clinical rules §2.1); only its medication orders are read."""

    resource_type: str
    resource_id: str | None  # "MedicationRequest/123"; None when the draft has no id
    evaluated: bool  # order-select: named in `selections`; order-sign: every draft
    medications: tuple[MedicationRecord, ...]  # one per known ingredient; () if none
    display: str
    raw: Raw = field(repr=False, compare=False, default_factory=dict)


@dataclass(frozen=True)
class LupusDiagnosis:
    kind: str  # sle | drug-induced | unspecified
    suspected: bool
    display: str

    def describe(self) -> str:
        prefix = "suspected " if self.suspected else ""
        if self.kind == "drug-induced":
            return f"{prefix}drug-induced lupus ({self.display})"
        if self.kind == "unspecified":
            return f"{prefix}lupus erythematosus, type unspecified ({self.display})"
        return f"{prefix}SLE ({self.display})"


@dataclass
class PatientRecord:
    now: datetime
    patient_id: str
    lupus: LupusDiagnosis | None = None
    counts: dict[str, list[Count]] = field(default_factory=dict)  # newest first
    unusable: list[UnusableResult] = field(default_factory=list)
    lab_flags: list[LabFlag] = field(default_factory=list)  # critically low per the lab
    medications: list[MedicationRecord] = field(default_factory=list)
    exposures: dict[str, DrugExposure] = field(default_factory=dict)
    temperatures: list[Temperature] = field(default_factory=list)  # newest first
    fever_conditions: list[tuple[str, datetime]] = field(default_factory=list)
    weight: Weight | None = None
    pharmacogenomics: list[PharmacogenomicResult] = field(default_factory=list)
    duffy_null: bool = False
    # Why the immunosuppressants are given (clinical rules §3 wording v4): a counted
    # transplant-status Condition, or a rheumatic disease other than lupus (its display).
    transplant: str | None = None
    rheumatic: str | None = None
    unavailable: dict[str, str] = field(default_factory=dict)
    # Kinds of data (record/missing.py: counts, temperatures, medications ...) that could not
    # be read, with the date before which their results are missing (None: none could be read,
    # or results of any date may be missing). Never read as absent (clinical rules §1.2).
    unreadable: dict[str, datetime | None] = field(default_factory=dict)
    # Kinds whose results before this date were not read (the horizon was covered, but the
    # last value of any age could not be searched for): absence before it is unknown.
    read_since: dict[str, datetime] = field(default_factory=dict)
    draft_orders: list[DraftOrder] = field(default_factory=list)
    draft_notes: list[str] = field(default_factory=list)  # what could not be read, and why

    def series(self, analyte: str, include_preliminary: bool = False) -> list[Count]:
        """Qualifying results of one analyte, newest first."""
        return [
            c for c in self.counts.get(analyte, []) if include_preliminary or not c.is_preliminary
        ]

    def latest(
        self, analyte: str, include_preliminary: bool = False, max_age_days: float | None = None
    ) -> Count | None:
        for count in self.series(analyte, include_preliminary):
            if max_age_days is None or count.time >= self.now - timedelta(days=max_age_days):
                return count
        return None

    def critical_low_flag(
        self, analyte: str, include_preliminary: bool, max_age_days: float
    ) -> LabFlag | None:
        """The newest result of `analyte` the lab flags critically low, when no interpretable
        result of a later draw has superseded it (the latest value decides, §1.3)."""
        since = self.now - timedelta(days=max_age_days)
        flags = [
            f
            for f in self.lab_flags
            if f.analyte == analyte
            and f.time >= since
            and (include_preliminary or not f.is_preliminary)
        ]
        if not flags:
            return None
        flag = max(flags, key=lambda f: f.time)
        latest = self.latest(analyte, include_preliminary)
        if latest is not None and latest.time > flag.time + SAME_DRAW:
            return None
        return flag

    def exposure(self, ingredient_id: str) -> DrugExposure | None:
        return self.exposures.get(ingredient_id)

    def takes(self, ingredient_id: str) -> bool:
        """Whether the patient currently takes this drug."""
        exposure = self.exposures.get(ingredient_id)
        return exposure is not None and exposure.current

    def current_drugs(self, role: str) -> list[DrugExposure]:
        return [e for e in self.exposures.values() if e.current and e.ingredient.role == role]

    def immunosuppressants(self) -> list[DrugExposure]:
        """Current or recent tier A and tier B drugs (the population and refractory rule)."""
        return [
            e
            for e in self.exposures.values()
            if e.current_or_recent and e.ingredient.is_immunosuppressant
        ]

    @property
    def in_scope(self) -> bool:
        """Clinical rules §2.2: counted SLE, or a current or recent tier A/B drug."""
        return self.lupus is not None or bool(self.immunosuppressants())

    def evaluated_drafts(self) -> list[DraftOrder]:
        return [d for d in self.draft_orders if d.evaluated]

    @property
    def in_scope_for_orders(self) -> bool:
        """An evaluated draft for a tier A/B drug brings the patient in scope for the order
        rules (the patient-state rules keep §2.2 scope: a draft is not exposure)."""
        drugs = [m.ingredient for d in self.evaluated_drafts() for m in d.medications]
        return self.in_scope or any(i.is_immunosuppressant for i in drugs)
