"""Reading Observations: each result is picked by its LOINC code (or a site's local code)
before anything is parsed (classified once in the call's `chart`), validated, then read as a
count, a temperature, a weight or a pharmacogenomic result; what cannot be interpreted is kept
as an `UnusableResult` (clinical rules §1.1, §1.2). A count the lab flags critically low is
kept as a `LabFlag` even when its value cannot be converted, and a censored result
("<0.1 x10^9/L") is judged as its bound (§2.3)."""

from __future__ import annotations

import re
from datetime import datetime

from cds_service.record import terminology, units
from cds_service.record.chart import FLAG_GROUPS, ChartObservation
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

    def observation(self, entry: ChartObservation) -> None:
        if not entry.used:
            return  # not a result the rules use: never parsed
        obs, value, analyte, ref = entry.resource, entry.value, entry.analyte, entry.reference
        if value.problem:
            what = self.k.analyte_display[analyte] if analyte else "Duffy phenotype"
            self.unusable(what, "", None, value.problem, ref)
            return
        if entry.duffy_null:
            self.record.duffy_null = True
        if analyte is None or entry.code is None:
            return
        if value.status not in COUNTED_OBSERVATION_STATUSES | {PRELIMINARY}:
            return  # registered, cancelled, entered-in-error, unknown: not results
        what, time, received = self.k.analyte_display[analyte], entry.time, value.received
        if analyte in ("tpmt", "tpmt_nudt15"):
            self.pharmacogenomic(obs, what, received, time)
            return
        if time is None:
            self.unusable(what, received, time, "no date", ref, analyte)
            return
        flagged = value.critical_low
        if flagged:
            self.record.lab_flags.append(
                LabFlag(FLAG_GROUPS[analyte], received or "no value", time, value.status)
            )
        quantity = value.quantity
        if quantity is None or not value.numeric:
            if quantity is not None or obs.get("dataAbsentReason") is None:
                self.unusable(
                    what, received, time, "no numeric value", ref, analyte, critical_low=flagged
                )
            return
        if analyte == "temperature":
            self.temperature(obs, quantity, received, time, what, ref)
        elif analyte == "weight":
            self.weight(quantity, received, time, what, ref)
        elif analyte in ("neutrophil_percent", "lymphocyte_percent"):
            self.percent(obs, analyte, quantity, received, time, what, ref)
        else:
            self.count(obs, analyte, entry.code, quantity, received, time, what, ref, flagged)

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
