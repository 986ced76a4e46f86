"""The PatientRecord: the clinical facts the rules read, each with its provenance.

Built once per call from the raw FHIR JSON the EHR sent (prefetch or fetched). Only resources
the rules can use are looked at: Observations are picked by LOINC code before anything is
parsed, and each picked resource is validated with the FHIR R4B models. What cannot be
interpreted is kept as an `UnusableResult` so a card can say so (clinical rules §1.1, §1.2).

Data rules (clinical rules §2.1, §2.3): Observation statuses final/amended/corrected count,
preliminary ones only for the critical rules and only until a final result of the same draw
exists; ANC and ALC come from the best source of each draw (manual differential, segmented +
band counts, automated count, then % x same-draw WBC); a % is never compared with a count.

v3: a censored result (`comparator`, or text such as "<0.1 x10^9/L") is judged as its bound; a
count the lab flags critically low is kept as a `LabFlag` even when its value cannot be
converted; renewals of one drug form one exposure run (`current_run`); local forms (eye drops,
ointments ...) are no exposure (`local_form`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cds_service.fhir.dates import as_datetime, day
from cds_service.fhir.validation import invalid_reason
from cds_service.knowledge import Ingredient, Knowledge
from cds_service.record import terminology, units
from cds_service.record.dosing import DailyDose, daily_dose, timing_repeat

Raw = Mapping[str, Any]

COUNTED_OBSERVATION_STATUSES = {"final", "amended", "corrected"}
PRELIMINARY = "preliminary"
SAME_DRAW = timedelta(hours=1)
# Source priority within one draw (lower wins): clinical rules §2.3.
_METHOD_PRIORITY = {"manual": 0, "segmented + bands": 1, "automated": 2, "computed": 3, "flow": 4}


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
    number = received.split(" ", 1)[0]
    try:
        return math.isclose(float(number), value, rel_tol=1e-9, abs_tol=1e-12)
    except ValueError:
        return False


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

    def describe(self) -> str:
        shown = f"{self.comparator}{format_count(self.value)} x10^9/L"
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
    unavailable: dict[str, str] = field(default_factory=dict)
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


# ---------------------------------------------------------------------------------------------
# Building


def names_other_patient(resource: Raw, patient_id: str) -> bool:
    """True when a resource names a different patient than the one in context."""
    if resource.get("resourceType") == "Patient":
        return bool(resource.get("id")) and resource.get("id") != patient_id
    for key in ("subject", "patient"):
        reference = resource.get(key)
        if isinstance(reference, Mapping) and isinstance(reference.get("reference"), str):
            parts = reference["reference"].rstrip("/").split("/")
            if len(parts) >= 2 and parts[-2] == "Patient" and parts[-1] != patient_id:
                return True
    return False


def _reference(resource: Raw) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id', '?')}"


def _observation_time(obs: Raw) -> datetime | None:
    period = obs.get("effectivePeriod")
    return (
        as_datetime(obs.get("effectiveDateTime"))
        or (as_datetime(period.get("start")) if isinstance(period, Mapping) else None)
        or as_datetime(obs.get("effectiveInstant"))
        or as_datetime(obs.get("issued"))
    )


def _specimen(obs: Raw) -> str | None:
    specimen = obs.get("specimen")
    if isinstance(specimen, Mapping) and specimen.get("reference"):
        return str(specimen["reference"])
    return None


def _received(quantity: Raw) -> str:
    value = quantity.get("value")
    comparator = quantity.get("comparator") if isinstance(quantity.get("comparator"), str) else ""
    return f"{comparator}{value} {units.received_unit(quantity)}".strip()


# Counts whose critical-low flag the rules read, by the analyte they describe.
_FLAG_GROUPS = {"wbc": "wbc", "anc": "anc", "neutrophils_segmented": "anc", "alc": "alc"}
_TEXT_VALUE = re.compile(r"^\s*(<=|<|\u2264|>=|>|\u2265)?\s*(\d+(?:\.\d+)?|\.\d+)\s*(.*?)\s*$")
_COMPARATORS = {"\u2264": "<=", "\u2265": ">="}


def _quantity_of_text(text: str) -> Raw | None:
    """A result sent as text, such as "<0.1 x10^9/L" or "1.8": its comparator, number and
    unit text (read by name like any unit; none when absent). Decimal commas are not read
    ("1,800" could be a thousands separator), nor text around the number."""
    match = _TEXT_VALUE.match(text)
    if match is None:
        return None
    comparator, number, unit = match.groups()
    quantity: dict[str, Any] = {"value": float(number)}
    if comparator:
        quantity["comparator"] = _COMPARATORS.get(comparator, comparator)
    if unit:
        quantity["unit"] = unit
    return quantity


def _censored(quantity: Raw) -> str:
    """The comparator of a censored result (clinical rules §2.3). `<` and `<=` make the value
    an upper bound, judged as the bound. `>` and `>=` (a lower bound) are returned too, so that
    the caller can refuse them: see `_RecordBuilder.count`."""
    comparator = quantity.get("comparator")
    return comparator if comparator in ("<", "<=", ">", ">=") else ""


@dataclass(frozen=True)
class _Percent:
    of: str  # anc | alc
    percent: float
    time: datetime
    status: str
    specimen: str | None
    reference: str
    what: str


def same_draw(
    a_time: datetime, a_specimen: str | None, b_time: datetime, b_specimen: str | None
) -> bool:
    """Same specimen, or (no specimens to compare) drawn within 1 h (clinical rules §1.4)."""
    if a_specimen and b_specimen:
        return a_specimen == b_specimen
    return abs(a_time - b_time) <= SAME_DRAW


class _RecordBuilder:
    def __init__(self, knowledge: Knowledge, now: datetime, patient_id: str, resources: list[Raw]):
        self.k = knowledge
        self.record = PatientRecord(now=now, patient_id=patient_id)
        self.candidates: dict[str, list[Count]] = {"wbc": [], "anc": [], "alc": []}
        self.segmented: list[Count] = []
        self.bands: list[Count] = []
        self.percents: list[_Percent] = []
        self.resources = resources
        self.by_reference = {
            _reference(r): r for r in resources if r.get("resourceType") and r.get("id")
        }
        count_units = knowledge.units["count_factor_to_10e9_per_L"]["exact"]
        self.count_aliases = count_units

    # -- observations ---------------------------------------------------------------------

    def unusable(
        self,
        what: str,
        received: str,
        time: datetime | None,
        reason: str,
        ref: str,
        analyte: str = "",
        value: float | None = None,
        comparator: str = "",
        critical_low: bool = False,
    ) -> None:
        self.record.unusable.append(
            UnusableResult(
                what, received, time, reason, ref, analyte, value, comparator, critical_low
            )
        )

    def observation(self, obs: Raw) -> None:
        matched = terminology.analyte_of(obs.get("code"), self.k)
        duffy_code = self._has_duffy_code(obs)
        if matched is None and not duffy_code:
            return  # not a result the rules use: never parsed
        problem = invalid_reason(obs)
        ref = _reference(obs)
        if problem:
            what = self.k.analyte_display[matched[0]] if matched else "Duffy phenotype"
            self.unusable(what, "", None, problem, ref)
            return
        if duffy_code and self._is_duffy_null(obs):
            self.record.duffy_null = True
        if matched is None:
            return
        analyte, loinc = matched
        status = str(obs.get("status"))
        if status not in COUNTED_OBSERVATION_STATUSES | {PRELIMINARY}:
            return  # registered, cancelled, entered-in-error, unknown: not results
        what = self.k.analyte_display[analyte]
        time = _observation_time(obs)
        quantity = (
            obs.get("valueQuantity") if isinstance(obs.get("valueQuantity"), Mapping) else None
        )
        received = _received(quantity) if quantity else str(obs.get("valueString") or "")
        if analyte in ("tpmt", "tpmt_nudt15"):
            self.pharmacogenomic(obs, what, received, time)
            return
        if time is None:
            self.unusable(what, received, time, "no date", ref, analyte)
            return
        flagged = analyte in _FLAG_GROUPS and self._flagged_critical_low(obs)
        if flagged:
            self.record.lab_flags.append(
                LabFlag(_FLAG_GROUPS[analyte], received or "no value", time, status)
            )
        if quantity is None and isinstance(obs.get("valueString"), str):
            quantity = _quantity_of_text(obs["valueString"])
        if quantity is None:
            if obs.get("dataAbsentReason") is None:
                self.unusable(
                    what, received, time, "no numeric value", ref, analyte, critical_low=flagged
                )
            return
        value = quantity.get("value")
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.unusable(
                what, received, time, "no numeric value", ref, analyte, critical_low=flagged
            )
            return
        kind = {"temperature": "temperature", "weight": "weight"}.get(analyte)
        if kind == "temperature":
            self.temperature(obs, quantity, received, time, what, ref)
        elif kind == "weight":
            self.weight(quantity, received, time, what, ref)
        elif analyte in ("neutrophil_percent", "lymphocyte_percent"):
            if not units.is_percent(quantity, self.k.units["percent_units"]):
                self.unusable(what, received, time, "a percentage with a non-% unit", ref, analyte)
                return
            of = "anc" if analyte == "neutrophil_percent" else "alc"
            self.percents.append(
                _Percent(of, float(value), time, status, _specimen(obs), ref, what)
            )
        else:
            self.count(obs, analyte, loinc, quantity, received, time, what, ref, flagged)

    def _flagged_critical_low(self, obs: Raw) -> bool:
        """The lab's own critical-low flag: `interpretation` LL or `<` (v3-ObservationInterpretation
        or HL7 v2 table 0078, same codes), or an interpretation text such as "critically low".
        AA ("critical abnormal") is not read as low: it does not say which way."""
        flags = self.k.units["critical_low_interpretation"]
        for concept in _list(obs.get("interpretation")):
            if any(str(c.get("code")) in flags["codes"] for c in terminology.codings(concept)):
                return True
            text = terminology.concept_text(concept).lower()
            if any(phrase in text for phrase in flags["texts"]):
                return True
        return False

    def count(
        self,
        obs: Raw,
        analyte: str,
        loinc: str,
        quantity: Raw,
        received: str,
        time: datetime,
        what: str,
        ref: str,
        flagged: bool = False,
    ) -> None:
        factor = units.count_factor(quantity, self.count_aliases)
        comparator = _censored(quantity)
        if comparator.startswith(">"):
            # Choice where the rules are silent: a lower bound (">0.4") says only that the
            # count is at least that much. Judged as the bound it would read as severe
            # neutropenia; judged as normal it would hide one. It is neither: a data note.
            reason = "reported only as a lower bound: the count itself is unknown"
            value = float(quantity["value"]) * factor if factor is not None else None
            self.unusable(what, received, time, reason, ref, analyte, value, comparator)
            return
        if factor is None:
            unit = units.received_unit(quantity)
            reason = f"unknown unit ({unit}): not converted" if unit else "no unit: not converted"
            self.unusable(
                what,
                received,
                time,
                reason,
                ref,
                analyte,
                float(quantity["value"]),
                comparator,
                flagged,
            )
            return
        low, high = self._reference_range(obs, factor)
        method = self.k.loinc_method.get(loinc, "automated")
        count = Count(
            analyte=analyte,
            value=float(quantity["value"]) * factor,
            received=received,
            time=time,
            status=str(obs["status"]),
            method=method,
            reference=ref,
            specimen=_specimen(obs),
            low=low,
            high=high,
            comparator=comparator,
            critical_low=flagged,
        )
        if analyte == "neutrophils_segmented":
            self.segmented.append(count)
        elif analyte == "neutrophils_band":
            self.bands.append(count)
        else:
            self.candidates[analyte].append(count)

    def _reference_range(self, obs: Raw, value_factor: float) -> tuple[float | None, float | None]:
        """The lab's normal range in 10^9/L; a bound without a unit shares the value's unit."""
        ranges = obs.get("referenceRange")
        if not isinstance(ranges, list) or not ranges or not isinstance(ranges[0], Mapping):
            return None, None
        bounds: list[float | None] = []
        for key in ("low", "high"):
            bound = ranges[0].get(key)
            if not isinstance(bound, Mapping) or not isinstance(bound.get("value"), int | float):
                bounds.append(None)
                continue
            has_unit = bound.get("code") or bound.get("unit")
            factor = units.count_factor(bound, self.count_aliases) if has_unit else value_factor
            bounds.append(float(bound["value"]) * factor if factor is not None else None)
        return bounds[0], bounds[1]

    def temperature(
        self, obs: Raw, quantity: Raw, received: str, time: datetime, what: str, ref: str
    ) -> None:
        celsius = units.to_celsius(quantity, self.k.units["temperature_aliases"])
        if celsius is None:
            unit = units.received_unit(quantity) or "none"
            self.unusable(
                what, received, time, f"unknown temperature unit ({unit})", ref, "temperature"
            )
            return
        site = terminology.concept_text(obs.get("bodySite")) or terminology.concept_text(
            obs.get("code")
        )
        self.record.temperatures.append(Temperature(celsius, received, time, site))

    def weight(self, quantity: Raw, received: str, time: datetime, what: str, ref: str) -> None:
        kg = units.to_kilograms(quantity, self.k.units["weight_aliases"])
        if kg is None:
            self.unusable(what, received, time, "unknown weight unit", ref, "weight")
        elif self.record.weight is None or time > self.record.weight.time:
            self.record.weight = Weight(kg, received, time)

    def pharmacogenomic(self, obs: Raw, what: str, received: str, time: datetime | None) -> None:
        texts = [
            terminology.concept_text(obs.get("valueCodeableConcept")),
            str(obs.get("valueString") or ""),
        ]
        texts += [terminology.concept_text(i) for i in obs.get("interpretation") or []]
        joined = " ".join(texts).lower()
        phenotype = next((p for p in ("poor", "intermediate", "normal") if p in joined), None)
        interpretation_codes = {
            str(c.get("code"))
            for concept in obs.get("interpretation") or []
            for c in terminology.codings(concept)
        }
        quantity = obs.get("valueQuantity")
        if phenotype is None and interpretation_codes & {"L", "LL"}:
            phenotype = "low activity"
        elif phenotype is None and interpretation_codes & {"N"}:
            phenotype = "normal"
        elif phenotype is None and isinstance(quantity, Mapping):
            low, _ = self._reference_range(obs, 1.0)
            value = quantity.get("value")
            if low is not None and isinstance(value, int | float):
                phenotype = "low activity" if value < low else "normal"
        gene = "TPMT and NUDT15" if "NUDT15" in what else "TPMT"
        shown = received or terminology.concept_text(obs.get("valueCodeableConcept"))
        self.record.pharmacogenomics.append(PharmacogenomicResult(gene, phenotype, shown, time))

    def _has_duffy_code(self, resource: Raw) -> bool:
        return any(
            terminology.has_code(resource.get("code"), entry["system"], [entry["code"]])
            for entry in self.k.settings["duffy_null_codes"]
        )

    def _is_duffy_null(self, resource: Raw) -> bool:
        """A counted Condition, or a final Observation valued duffy-null (clinical rules §2.4)."""
        for entry in self.k.settings["duffy_null_codes"]:
            if not terminology.has_code(resource.get("code"), entry["system"], [entry["code"]]):
                continue
            if resource.get("resourceType") == "Condition":
                return _condition_counts(resource) is not None
            if resource.get("status") not in COUNTED_OBSERVATION_STATUSES:
                return False
            value = resource.get("valueString") or ""
            concept = resource.get("valueCodeableConcept")
            codes = [c.get("code") for c in terminology.codings(concept)]
            return entry["value"] in ([value] + codes)
        return False

    def finish_counts(self) -> None:
        """Pick one ANC and one ALC per draw, drop superseded preliminaries, sort."""
        self.candidates["anc"].extend(self._segmented_plus_bands())
        for pct in self.percents:
            wbc = self._wbc_of_draw(pct.time, pct.specimen)
            if wbc is None:
                self.unusable(
                    pct.what,
                    f"{pct.percent:g} %",
                    pct.time,
                    "a percentage with no WBC from the same specimen: not compared "
                    "with count thresholds",
                    pct.reference,
                    "neutrophil_percent" if pct.of == "anc" else "lymphocyte_percent",
                )
                continue
            status = PRELIMINARY if PRELIMINARY in (pct.status, wbc.status) else pct.status
            self.candidates[pct.of].append(
                Count(
                    analyte=pct.of,
                    value=wbc.value * pct.percent / 100.0,
                    received=f"{pct.percent:g} % x WBC {wbc.value:.2f}",
                    time=pct.time,
                    status=status,
                    method="computed",
                    reference=pct.reference,
                    specimen=pct.specimen or wbc.specimen,
                    low=None,
                    high=None,
                    note="computed from the differential %",
                )
            )
        for analyte, candidates in self.candidates.items():
            chosen = self._one_per_draw(candidates)
            self.record.counts[analyte] = sorted(chosen, key=lambda c: c.time, reverse=True)
        self._flag_contradictions()

    def _wbc_of_draw(self, time: datetime, specimen: str | None) -> Count | None:
        matches = [
            w for w in self.candidates["wbc"] if same_draw(time, specimen, w.time, w.specimen)
        ]
        matches.sort(key=lambda w: (w.is_preliminary, abs((w.time - time).total_seconds())))
        return matches[0] if matches else None

    def _segmented_plus_bands(self) -> list[Count]:
        totals = []
        for seg in self.segmented:
            band = next(
                (b for b in self.bands if same_draw(seg.time, seg.specimen, b.time, b.specimen)),
                None,
            )
            totals.append(
                Count(
                    analyte="anc",
                    value=seg.value + (band.value if band else 0.0),
                    received=seg.received + (f" + bands {band.received}" if band else ""),
                    time=seg.time,
                    status=seg.status,
                    method="segmented + bands",
                    reference=seg.reference,
                    specimen=seg.specimen,
                    low=seg.low,
                    high=seg.high,
                    note="" if band else "bands not reported",
                )
            )
        return totals

    @staticmethod
    def _one_per_draw(candidates: list[Count]) -> list[Count]:
        """Best source per draw; a preliminary result yields to a final one of the same draw."""
        ranked = sorted(candidates, key=lambda c: (c.is_preliminary, _METHOD_PRIORITY[c.method]))
        chosen: list[Count] = []
        for count in ranked:
            tolerance = timedelta(days=1) if count.method == "flow" else SAME_DRAW
            if not any(
                (c.specimen and count.specimen and c.specimen == count.specimen)
                or abs(c.time - count.time) <= tolerance
                for c in chosen
            ):
                chosen.append(count)
        return chosen

    def _flag_contradictions(self) -> None:
        """An ANC or ALC larger than the WBC of the same draw cannot both be right."""
        for analyte in ("anc", "alc"):
            kept = []
            for count in self.record.counts[analyte]:
                wbc = self._wbc_of_draw(count.time, count.specimen)
                if wbc is not None and count.value > wbc.value * 1.05 + 0.05:
                    self.unusable(
                        self.k.analyte_display[analyte],
                        count.received,
                        count.time,
                        f"contradicts the WBC of the same draw ({wbc.value:.2f} x10^9/L)",
                        count.reference,
                        analyte,
                    )
                    continue
                kept.append(count)
            self.record.counts[analyte] = kept

    # -- conditions -----------------------------------------------------------------------

    def conditions(self, conditions: Iterable[Raw]) -> None:
        found: dict[str, list[tuple[bool, str]]] = {}
        for condition in conditions:
            group = terminology.condition_group(condition.get("code"), self.k)
            if group is None and not self._has_duffy_code(condition):
                continue
            if invalid_reason(condition):
                continue  # not valid FHIR: a diagnosis is never inferred from it
            if self._is_duffy_null(condition):
                self.record.duffy_null = True
            suspected = _condition_counts(condition)
            if group is None or suspected is None:
                continue
            display = terminology.concept_text(condition.get("code"))
            if group == "fever":
                onset = (
                    as_datetime(condition.get("onsetDateTime"))
                    or (
                        as_datetime((condition.get("onsetPeriod") or {}).get("start"))
                        if isinstance(condition.get("onsetPeriod"), Mapping)
                        else None
                    )
                    or as_datetime(condition.get("recordedDate"))
                )
                if onset is not None:
                    self.record.fever_conditions.append((display, onset))
                continue
            found.setdefault(group, []).append((suspected, display))
        self.record.lupus = self._lupus(found)

    def _lupus(self, found: dict[str, list[tuple[bool, str]]]) -> LupusDiagnosis | None:
        def best(group: str) -> tuple[bool, str]:
            return sorted(found[group])[0]  # confirmed (False) before suspected (True)

        if "sle" in found:
            suspected, display = best("sle")
            return LupusDiagnosis("sle", suspected, display)
        if "drug_induced_sle" in found and self.k.settings["drug_induced_lupus_counts"]:
            suspected, display = best("drug_induced_sle")
            return LupusDiagnosis("drug-induced", suspected, display)
        if "lupus_unspecified" in found and "cutaneous_lupus" not in found:
            suspected, display = best("lupus_unspecified")
            return LupusDiagnosis("unspecified", suspected, display)
        return None

    # -- medications ----------------------------------------------------------------------

    def medication_concept(self, resource: Raw) -> tuple[Raw | None, str]:
        """The medication's CodeableConcept, resolving medicationReference (contained, then
        the gathered resources); falls back to the reference's display text."""
        if isinstance(resource.get("medicationCodeableConcept"), Mapping):
            concept = resource["medicationCodeableConcept"]
            return concept, terminology.concept_text(concept)
        reference = resource.get("medicationReference")
        if not isinstance(reference, Mapping):
            return None, ""
        medication = self.referenced_medication(resource)
        display = str(reference.get("display") or "")
        if medication and isinstance(medication.get("code"), Mapping):
            concept = dict(medication["code"])
            if display and not concept.get("text"):
                concept["text"] = display
            return concept, terminology.concept_text(concept) or display
        return ({"text": display} if display else None), display

    def referenced_medication(self, resource: Raw) -> Raw | None:
        """The Medication a `medicationReference` points to: contained, then gathered."""
        reference = resource.get("medicationReference")
        target = str(reference.get("reference") or "") if isinstance(reference, Mapping) else ""
        if target.startswith("#"):
            return next(
                (
                    c
                    for c in _list(resource.get("contained"))
                    if isinstance(c, Mapping) and c.get("id") == target[1:]
                ),
                None,
            )
        if target:
            return self.by_reference.get(target) or self.by_reference.get(
                "/".join(target.rstrip("/").split("/")[-2:])
            )
        return None

    def local_form(self, resource: Raw, concept: Raw | None) -> str | None:
        """What makes this a local form (clinical rules §2.1 "route"), or None when systemic.

        Only systemic forms count, for the population and every rule: oral, intravenous,
        subcutaneous, intramuscular, or no route with no local dose form. A route coded or
        named ophthalmic, topical, cutaneous, otic, nasal, inhaled or rectal, or a dose form or
        product text such as "ophthalmic", "eye drops", "ointment" or "cream" makes it local.
        Choices where the spec is silent: rectal routes count as local (no tier A or B drug is
        given rectally for a systemic effect; tacrolimus and cyclosporine enemas treat
        proctitis); intravitreal methotrexate is local; transdermal and intrathecal are not
        on the list, so they stay systemic; any one local sign is enough."""
        rules = self.k.local_forms
        dosages = resource.get("dosageInstruction") or resource.get("dosage")
        routes = [d.get("route") for d in _list(dosages) or [dosages] if isinstance(d, Mapping)]
        for route in routes:
            codes = {
                str(c.get("code"))
                for c in terminology.codings(route)
                if c.get("system") == rules["route_system"]
            }
            if codes & rules["route_codes"]:
                return f"route {terminology.concept_text(route)}"
        medication = self.referenced_medication(resource) or {}
        texts = [terminology.concept_text(route) for route in routes]
        form = medication.get("form") if isinstance(medication, Mapping) else None
        for source in (form, concept):
            texts += [terminology.concept_text(source)]
            texts += [str(c.get("display") or "") for c in terminology.codings(source)]
        for text in texts:
            found = terminology.local_form_word(text, tuple(rules["words"]))
            if found:
                return found
        return None

    def medication(self, resource: Raw, draft_allowed: bool = False) -> list[MedicationRecord]:
        """The drugs of one medication resource; `draft_allowed` = it comes from draftOrders."""
        kind = resource.get("resourceType")
        status = str(resource.get("status") or "")
        exposure = _exposure_of(kind, status, draft_allowed)
        if exposure is None:
            return []
        concept, display = self.medication_concept(resource)
        ingredients, matched_by = terminology.match_medication(concept, self.k)
        if not ingredients or self.local_form(resource, concept):
            return []  # a local form (eye drops, ointment ...) is no exposure (spec §2.1)
        start, end = _medication_period(resource)
        if display in {str(c.get("code")) for c in terminology.codings(concept)}:
            display = ""  # a bare code is no name for a clinician: the ingredient's name is
        product = terminology.product_of(concept, self.k)
        dose = daily_dose(
            resource.get("dosageInstruction")
            or (
                [resource["dosage"]]
                if isinstance(resource.get("dosage"), Mapping)
                else resource.get("dosage")
            ),
            product,
        )
        return [
            MedicationRecord(
                ingredient=ingredient,
                exposure=exposure,
                display=display or ingredient.display,
                reference=_reference(resource),
                matched_by=matched_by,
                start=start,
                end=end,
                dose=dose,
                raw=resource,
            )
            for ingredient in ingredients
        ]

    def medication_resource(self, resource: Raw) -> None:
        """Validate, then read; an invalid record of a drug the rules track is reported."""
        problem = invalid_reason(resource)
        if problem is None:
            self.record.medications.extend(self.medication(resource))
            return
        concept, display = self.medication_concept(resource)
        ingredients, _ = terminology.match_medication(concept, self.k)
        if any(i.is_immunosuppressant for i in ingredients):
            self.unusable(
                f"{ingredients[0].display} medication record",
                "",
                None,
                problem,
                _reference(resource),
            )

    def summarise_exposures(self) -> None:
        by_ingredient: dict[str, list[MedicationRecord]] = {}
        for med in self.record.medications:
            by_ingredient.setdefault(med.ingredient.id, []).append(med)
        for ingredient_id, meds in by_ingredient.items():
            self.record.exposures[ingredient_id] = self._exposure(meds)

    def _exposure(self, meds: list[MedicationRecord]) -> DrugExposure:
        ingredient = meds[0].ingredient
        now = self.record.now
        current = [m for m in meds if m.exposure == "current"]
        administered = [m.start for m in meds if m.exposure == "administered" and m.start]
        past_ends = [m.end or m.start for m in meds if m.exposure == "past" and (m.end or m.start)]
        last_dose = max(administered) if administered else (max(past_ends) if past_ends else None)
        recent_days = ingredient.recent_days or (
            self.k.threshold("recent_tier_a_stop_days") if ingredient.is_tier_a else None
        )
        recent = (
            not current
            and last_dose is not None
            and recent_days is not None
            and last_dose >= now - timedelta(days=recent_days)
        )
        run = current_run(meds, now, timedelta(days=self.k.threshold("exposure_run_gap_days")))
        start = run[0].start if run else None
        new_window = timedelta(days=self.k.threshold("new_drug_days"))
        started_recently = bool(current) and start is not None and start >= now - new_window
        return DrugExposure(
            ingredient=ingredient,
            current=bool(current),
            recent=recent,
            start=start,
            last_dose=last_dose,
            records=tuple(meds),
            started_recently=started_recently,
            dose_increased_recently=bool(current) and _dose_increased(run, now - new_window),
        )

    # -- draft orders (order hooks) --------------------------------------------------------

    def draft_orders(self, bundle: Any, selections: list[str] | None) -> None:
        """Read `context.draftOrders` leniently: every entry is looked at, medication orders
        are matched like any other medication, and what cannot be read becomes a note for
        DATA_QUALITY instead of an error. `selections` None = every draft is evaluated."""
        entries = bundle.get("entry") if isinstance(bundle, Mapping) else None
        known: set[str] = set()
        for position, entry in enumerate(entries if isinstance(entries, list) else [], 1):
            resource = entry.get("resource") if isinstance(entry, Mapping) else None
            kind = resource.get("resourceType") if isinstance(resource, Mapping) else None
            if not isinstance(kind, str):
                self.record.draft_notes.append(
                    f"draft order {position} of the session could not be read: not evaluated"
                )
                continue
            if kind == "Medication":
                continue  # referred to by a draft; resolved through medicationReference
            if names_other_patient(resource, self.record.patient_id):
                self.record.draft_notes.append(
                    "a draft order names a different patient: not evaluated"
                )
                continue
            resource_id = (
                f"{kind}/{resource['id']}"
                if isinstance(resource.get("id"), str) and resource["id"]
                else None
            )
            if resource_id:
                known.add(resource_id)
            evaluated = selections is None or resource_id in selections
            medications: tuple[MedicationRecord, ...] = ()
            display = kind
            if kind == "MedicationRequest":
                concept, display = self.medication_concept(resource)
                medications = tuple(self.medication(resource, draft_allowed=True))
                if concept is None and _names_a_medication(resource):
                    self.record.draft_notes.append(
                        "a draft medication order: the medication could not be identified "
                        "(no code or name, and its Medication was not sent)"
                    )
                self._note_unreadable_dose(medications)
            self.record.draft_orders.append(
                DraftOrder(kind, resource_id, evaluated, medications, display or kind, resource)
            )
        missing = [selection for selection in selections or [] if selection not in known]
        if missing:
            self.record.draft_notes.append(
                f"{len(missing)} selected order(s) not among the draft orders: not evaluated"
            )

    def _note_unreadable_dose(self, medications: tuple[MedicationRecord, ...]) -> None:
        """A marrow-toxic draft whose dose is stated but cannot be read (a dose left out is
        normal at order-select and is said on the card itself; a countable unit such as
        `{pill}` without a known tablet strength is read as written, and the clinical card
        says mg/kg was not computed)."""
        for med in medications[:1]:
            dose = med.dose
            if (
                med.ingredient.is_tier_a
                and dose.mg_per_day is None
                and not dose.strength_unknown
                and dose.description not in ("no dosage instructions", "dose not stated")
            ):
                self.record.draft_notes.append(
                    f"{med.display} draft: the dose could not be read ({dose.description})"
                )

    # -- everything -----------------------------------------------------------------------

    def build(self, skipped: frozenset[int] = frozenset()) -> PatientRecord:
        """The record from every resource but the Observations whose id() is in `skipped`
        (only their Duffy phenotype, a cheap look at the code, is still read)."""
        conditions = []
        for resource in self.resources:
            kind = resource.get("resourceType")
            if kind == "Observation" and id(resource) in skipped:
                self.record.duffy_null = self.record.duffy_null or self._is_duffy_null(resource)
            elif kind == "Observation":
                self.observation(resource)
            elif kind == "Condition":
                conditions.append(resource)
            elif kind in ("MedicationStatement", "MedicationRequest", "MedicationAdministration"):
                self.medication_resource(resource)
        self.conditions(conditions)
        self.finish_counts()
        self.record.temperatures.sort(key=lambda t: t.time, reverse=True)
        self.summarise_exposures()
        return self.record


def _names_a_medication(resource: Raw) -> bool:
    """Whether a draft names a drug at all: order-select fires while the clinician is still
    choosing, and a draft with no medication yet is not a data problem (spec §3 DATA_QUALITY)."""
    concept = resource.get("medicationCodeableConcept")
    if isinstance(concept, Mapping) and (concept.get("text") or terminology.codings(concept)):
        return True
    reference = resource.get("medicationReference")
    return isinstance(reference, Mapping) and bool(
        reference.get("reference") or reference.get("display")
    )


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _condition_counts(condition: Raw) -> bool | None:
    """None if the Condition does not count, else whether only suspected (clinical rules §2.1)."""
    clinical = {c.get("code") for c in terminology.codings(condition.get("clinicalStatus"))}
    if clinical and not clinical & {"active", "recurrence", "relapse"}:
        return None
    verification = {c.get("code") for c in terminology.codings(condition.get("verificationStatus"))}
    if not verification or "confirmed" in verification:
        return False
    if verification & {"provisional", "unconfirmed"}:
        return True
    return None  # differential, refuted, entered-in-error


_NOT_ORDERED = {"cancelled", "entered-in-error", "completed", "stopped"}


def _exposure_of(kind: Any, status: str, draft_allowed: bool) -> str | None:
    if draft_allowed:
        # An order being written (order-sign 1.1.0 also re-signs active orders).
        return None if status in _NOT_ORDERED else "draft"
    if kind == "MedicationAdministration":
        return "administered" if status == "completed" else None
    if status == "unknown":
        return "unknown"
    if status in ("stopped", "completed"):
        return "past"
    if status == "draft":
        return None  # a draft outside draftOrders is nobody's exposure
    current = {"active", "on-hold"} | ({"intended"} if kind == "MedicationStatement" else set())
    return "current" if status in current else None


def _medication_period(resource: Raw) -> tuple[datetime | None, datetime | None]:
    """(start, end) of a medication resource: when it began and the last-dose evidence."""
    kind = resource.get("resourceType")
    if kind == "MedicationAdministration":
        period = resource.get("effectivePeriod")
        when = as_datetime(resource.get("effectiveDateTime")) or (
            as_datetime(period.get("end") or period.get("start"))
            if isinstance(period, Mapping)
            else None
        )
        return when, when
    if kind == "MedicationStatement":
        period = (
            resource.get("effectivePeriod")
            if isinstance(resource.get("effectivePeriod"), Mapping)
            else {}
        )
        start = (
            as_datetime(period.get("start"))
            or as_datetime(resource.get("effectiveDateTime"))
            or as_datetime(resource.get("dateAsserted"))
        )
        return start, as_datetime(period.get("end"))
    authored = as_datetime(resource.get("authoredOn"))
    bounds_end = None
    for dosage in _list(resource.get("dosageInstruction")):
        bounds = timing_repeat(dosage).get("boundsPeriod")
        if isinstance(bounds, Mapping) and bounds.get("end"):
            bounds_end = as_datetime(bounds["end"])
    validity = (
        resource.get("dispenseRequest", {}).get("validityPeriod")
        if isinstance(resource.get("dispenseRequest"), Mapping)
        else None
    )
    start = authored or (
        as_datetime(validity.get("start")) if isinstance(validity, Mapping) else None
    )
    return start, bounds_end or authored


def current_run(
    meds: list[MedicationRecord], now: datetime, gap: timedelta
) -> list[MedicationRecord]:
    """The continuous run of orders and statements holding the current exposure, oldest first
    (clinical rules §2.1 "exposure start"); [] when no current record has a date.

    Records of one ingredient (current and past) form one run when each starts no later than
    `gap` (30 days) after the run so far ended: a past record ends at its effective or bounds
    end, else its last-dose date (authoredOn); a current record has not ended. EHRs re-issue an
    order at every renewal, so the exposure starts at the first record of the run.
    Choices where the spec is silent: overlapping records extend the run to the latest end
    among them (an order renewed before the previous one ran out is one run); administrations
    are doses inside a run, not runs; records without a start date cannot be placed and are
    left out."""
    dated = sorted(
        (m for m in meds if m.exposure in ("current", "past") and m.start is not None),
        key=lambda m: m.start,
    )
    runs: list[list[MedicationRecord]] = []
    run_end: datetime | None = None
    for med in dated:
        end = now if med.exposure == "current" else (med.end or med.start)
        if runs and run_end is not None and med.start <= run_end + gap:
            runs[-1].append(med)
            run_end = max(run_end, end)
        else:
            runs.append([med])
            run_end = end
    holding = [run for run in runs if any(m.exposure == "current" for m in run)]
    return holding[-1] if holding else []


def _dose_increased(run: list[MedicationRecord], since: datetime) -> bool:
    """A record of the run started since `since` whose daily dose exceeds the previous
    record's (clinical rules §2.1): a renewal at the same or a lower dose is not an increase.
    Choice where the spec is silent: a record whose daily dose cannot be read is skipped, so
    the comparison is with the last record whose dose is known (an unknown dose is neither an
    increase nor the baseline of one)."""
    dosed = [m for m in run if m.start is not None and m.dose.mg_per_day]
    for earlier, later in zip(dosed, dosed[1:], strict=False):
        if later.start >= since and later.dose.mg_per_day > earlier.dose.mg_per_day * 1.001:
            return True
    return False


def build_record(
    resources: list[Raw],
    patient_id: str,
    now: datetime,
    knowledge: Knowledge,
    unavailable: Mapping[str, str] | None = None,
    draft_orders: Any = None,
    selections: list[str] | None = None,
    only_what_rules_read: bool = False,
) -> PatientRecord:
    """The PatientRecord of `resources`.

    `draft_orders` is the order hooks' `context.draftOrders` Bundle (its Medication entries
    must be among `resources` to resolve references); `selections` None = all evaluated.
    With `only_what_rules_read`, old Observations that no rule can reach are not parsed (see
    `_plan_reading`); the rules then decide exactly as on the full record, but `counts` and
    `unusable` hold only the recent part of the history."""
    builder, record = None, None
    if only_what_rules_read:
        plan = _plan_reading(resources, knowledge, now)
        if plan.skipped:
            lean_builder = _RecordBuilder(knowledge, now, patient_id, resources)
            lean = lean_builder.build(plan.skipped)
            if plan.holds_for(lean):
                builder, record = lean_builder, lean
    if builder is None or record is None:
        builder = _RecordBuilder(knowledge, now, patient_id, resources)
        record = builder.build()
    if draft_orders is not None:
        builder.draft_orders(draft_orders, selections)
    record.unavailable = dict(unavailable or {})
    return record


# ---------------------------------------------------------------------------------------------
# Reading only what the rules can reach (speed: a typical chart holds years of CBCs)
#
# What the rules read of the Observations (cds_service/rules), all of it bounded:
# - counts: per analyte (WBC, ANC, ALC) the latest result and up to 4 earlier ones (trend),
#   results within `baseline_median_days` (6-month median) and 2 x `stable_days` (stable WBC)
#   before the latest, and results within current/refractory windows before now;
# - temperatures: the fever window (24 h); weights: the newest usable one;
# - unusable results: those within `data_quality_lookback_days`.
# A rule that reads further back must widen these windows. Results are linked to each other
# by specimen or by time (same draw: 1 h, flow cytometry: 1 day), so the cut is made in a
# quiet gap and never splits a specimen; after building, `holds_for` checks that every
# window was covered, and the full record is built otherwise. Same cards either way.

TREND_RESULTS = 5  # the latest plus the 4 earlier values cards show
_LINK = timedelta(days=2)  # more than any same-draw tolerance
COUNT_GROUPS = {
    "wbc": "wbc",
    "anc": "anc",
    "neutrophils_segmented": "anc",
    "neutrophils_band": "anc",
    "neutrophil_percent": "anc",
    "alc": "alc",
    "lymphocyte_percent": "alc",
}


@dataclass(frozen=True)
class _ReadingPlan:
    skipped: frozenset[int] = frozenset()  # id() of Observations not parsed
    newest_skipped_count: datetime | None = None
    newest_skipped_weight: datetime | None = None
    count_lookback: timedelta = timedelta(0)

    def holds_for(self, record: PatientRecord) -> bool:
        """Whether everything the rules can read lies after what was skipped."""
        if self.newest_skipped_count is not None:
            for analyte in ("wbc", "anc", "alc"):
                series = record.series(analyte)
                if len(series) < TREND_RESULTS:
                    return False
                if series[0].time - self.count_lookback <= self.newest_skipped_count:
                    return False
        if self.newest_skipped_weight is not None:
            weight = record.weight
            if weight is None or weight.time <= self.newest_skipped_weight:
                return False
        return True


def _plan_reading(resources: list[Raw], knowledge: Knowledge, now: datetime) -> _ReadingPlan:
    k = knowledge
    horizon = now - max(
        timedelta(days=k.threshold("data_quality_lookback_days")),
        timedelta(days=k.threshold("current_days")),
        timedelta(days=k.threshold("refractory_window_days")),
        timedelta(hours=k.threshold("fever_window_hours")),
    )
    lookback = timedelta(
        days=max(k.threshold("baseline_median_days"), 2 * k.threshold("stable_days"))
    )
    counts: list[tuple[datetime, Raw]] = []
    by_group: dict[str, list[datetime]] = {"wbc": [], "anc": [], "alc": []}
    temperatures: list[tuple[datetime, Raw]] = []
    weights: list[tuple[datetime, Raw]] = []
    for resource in resources:
        if resource.get("resourceType") != "Observation":
            continue
        matched = terminology.analyte_of(resource.get("code"), k)
        time = _observation_time(resource) if matched else None
        if matched is None or time is None:
            continue
        analyte = matched[0]
        if analyte in COUNT_GROUPS:
            counts.append((time, resource))
            by_group[COUNT_GROUPS[analyte]].append(time)
        elif analyte == "temperature":
            temperatures.append((time, resource))
        elif analyte == "weight":
            weights.append((time, resource))

    skipped = [id(r) for time, r in temperatures if time < horizon]
    newest_skipped_weight = None
    if weights:
        weight_cut = min(horizon, max(time for time, _ in weights))
        old_weights = [(time, r) for time, r in weights if time < weight_cut]
        skipped += [id(r) for _, r in old_weights]
        newest_skipped_weight = max((time for time, _ in old_weights), default=None)
    skipped_counts = _old_counts(counts, by_group, horizon, lookback)
    skipped += [id(r) for _, r in skipped_counts]
    return _ReadingPlan(
        frozenset(skipped),
        max((time for time, _ in skipped_counts), default=None),
        newest_skipped_weight,
        lookback,
    )


def _old_counts(
    counts: list[tuple[datetime, Raw]],
    by_group: dict[str, list[datetime]],
    horizon: datetime,
    lookback: timedelta,
) -> list[tuple[datetime, Raw]]:
    """The count Observations older than every window, cut in a quiet gap; [] if none."""
    cut = horizon
    for times in by_group.values():
        times.sort(reverse=True)
        if len(times) <= TREND_RESULTS:
            return []  # too few to be sure older ones are not needed: read everything
        cut = min(cut, times[0] - lookback, times[TREND_RESULTS])
    ordered = sorted(counts, key=lambda pair: pair[0], reverse=True)
    index = next((i for i, (time, _) in enumerate(ordered) if time < cut), len(ordered))
    while 0 < index < len(ordered) and ordered[index - 1][0] - ordered[index][0] <= _LINK:
        index += 1
    kept, old = ordered[:index], ordered[index:]
    kept_specimens = {_specimen(r) for _, r in kept} - {None}
    if any(_specimen(r) in kept_specimens for _, r in old):
        return []
    return old
