"""Reading Observations: each result is picked by its LOINC code (or a site's local code) before
anything is parsed, validated, then read as a count, a temperature, a weight or a
pharmacogenomic result; what cannot be interpreted is kept as an `UnusableResult` (clinical
rules §1.1, §1.2). A count the lab flags critically low is kept as a `LabFlag` even when its
value cannot be converted, and a censored result ("<0.1 x10^9/L") is judged as its bound
(§2.3)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from cds_service.fhir.validation import invalid_reason
from cds_service.record import terminology, units
from cds_service.record.conditions import has_duffy_code, is_duffy_null
from cds_service.record.counts import CountReader
from cds_service.record.model import (
    COUNTED_OBSERVATION_STATUSES,
    PRELIMINARY,
    LabFlag,
    PharmacogenomicResult,
    Raw,
    Temperature,
    Weight,
)
from cds_service.record.reader import as_list, observation_time, received_text, reference_of

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


_GENES = ("TPMT", "NUDT15")
_PHENOTYPE_WORDS = ("poor", "intermediate", "normal")


def per_gene_phenotypes(text: str) -> tuple[tuple[str, str], ...]:
    """Each named gene's phenotype in a lab's text ("tpmt normal metabolizer; nudt15
    intermediate metabolizer"): the first phenotype word after a gene's name and before the
    next gene's name. A combined result must never make both genes intermediate when only one
    is (clinical rules §3 THIOPURINE_PGX v4)."""
    lowered = text.lower()
    marks = sorted((m.start(), gene) for gene in _GENES for m in re.finditer(gene.lower(), lowered))
    found: dict[str, str] = {}
    for index, (start, gene) in enumerate(marks):
        end = marks[index + 1][0] if index + 1 < len(marks) else len(lowered)
        segment = lowered[start:end]
        word = next((p for p in _PHENOTYPE_WORDS if p in segment), None)
        if word is not None:
            found.setdefault(gene, word)
    return tuple(found.items())


class ObservationReader(CountReader):
    """Reads each Observation the rules use; the counts are then picked by `finish_counts`."""

    def observation(self, obs: Raw) -> None:
        matched = terminology.analyte_of(obs.get("code"), self.k)
        duffy_code = has_duffy_code(obs, self.k)
        if matched is None and not duffy_code:
            return  # not a result the rules use: never parsed
        problem = invalid_reason(obs)
        ref = reference_of(obs)
        if problem:
            what = self.k.analyte_display[matched[0]] if matched else "Duffy phenotype"
            self.unusable(what, "", None, problem, ref)
            return
        if duffy_code and is_duffy_null(obs, self.k):
            self.record.duffy_null = True
        if matched is None:
            return
        analyte, code = matched
        status = str(obs.get("status"))
        if status not in COUNTED_OBSERVATION_STATUSES | {PRELIMINARY}:
            return  # registered, cancelled, entered-in-error, unknown: not results
        what = self.k.analyte_display[analyte]
        time = observation_time(obs)
        quantity = obs.get("valueQuantity") if isinstance(obs.get("valueQuantity"), dict) else None
        received = received_text(quantity) if quantity else str(obs.get("valueString") or "")
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
            self.percent(obs, analyte, quantity, received, time, what, ref)
        else:
            self.count(obs, analyte, code, quantity, received, time, what, ref, flagged)

    def _flagged_critical_low(self, obs: Raw) -> bool:
        """The lab's own critical-low flag: `interpretation` LL or `<` (v3-ObservationInterpretation
        or HL7 v2 table 0078, same codes), or an interpretation text such as "critically low".
        AA ("critical abnormal") is not read as low: it does not say which way."""
        flags = self.k.units["critical_low_interpretation"]
        for concept in as_list(obs.get("interpretation")):
            if any(str(c.get("code")) in flags["codes"] for c in terminology.codings(concept)):
                return True
            text = terminology.concept_text(concept).lower()
            if any(phrase in text for phrase in flags["texts"]):
                return True
        return False

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
        elif phenotype is None and isinstance(quantity, dict):
            low, _ = self.reference_range(obs, 1.0)
            value = quantity.get("value")
            if low is not None and isinstance(value, int | float):
                phenotype = "low activity" if value < low else "normal"
        gene = "TPMT and NUDT15" if "NUDT15" in what else "TPMT"
        shown = received or terminology.concept_text(obs.get("valueCodeableConcept"))
        genes = per_gene_phenotypes(joined)
        if not genes and phenotype is not None and gene == "TPMT":
            genes = (("TPMT", phenotype),)
        self.record.pharmacogenomics.append(
            PharmacogenomicResult(gene, phenotype, shown, time, genes)
        )
