"""Medication records and drug exposures (clinical rules §2.1): each MedicationStatement,
MedicationRequest or MedicationAdministration matched to the drugs of the knowledge, local
forms (eye drops, ointments ...) left out as no exposure, then one `DrugExposure` per drug:
current or recently stopped, since when (renewals form one run), started or dose-increased
recently."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from cds_service.fhir.dates import as_datetime
from cds_service.fhir.validation import invalid_reason
from cds_service.record import terminology
from cds_service.record.dosing import daily_dose, timing_repeat
from cds_service.record.model import DrugExposure, MedicationRecord, Raw
from cds_service.record.reader import ChartReader, as_list, reference_of


class MedicationReader(ChartReader):
    """Reads medication resources into `record.medications`, then summarises the exposures."""

    def medication_concept(self, resource: Raw) -> tuple[Raw | None, str]:
        """The medication's CodeableConcept, resolving medicationReference (contained, then
        the gathered resources); falls back to the reference's display text."""
        if isinstance(resource.get("medicationCodeableConcept"), dict):
            concept = resource["medicationCodeableConcept"]
            return concept, terminology.concept_text(concept)
        reference = resource.get("medicationReference")
        if not isinstance(reference, dict):
            return None, ""
        medication = self.referenced_medication(resource)
        display = str(reference.get("display") or "")
        if medication and isinstance(medication.get("code"), dict):
            concept = dict(medication["code"])
            if display and not concept.get("text"):
                concept["text"] = display
            return concept, terminology.concept_text(concept) or display
        return ({"text": display} if display else None), display

    def referenced_medication(self, resource: Raw) -> Raw | None:
        """The Medication a `medicationReference` points to: contained, then gathered."""
        reference = resource.get("medicationReference")
        target = str(reference.get("reference") or "") if isinstance(reference, dict) else ""
        if target.startswith("#"):
            return next(
                (
                    c
                    for c in as_list(resource.get("contained"))
                    if isinstance(c, dict) and c.get("id") == target[1:]
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
        routes = [d.get("route") for d in as_list(dosages) or [dosages] if isinstance(d, dict)]
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
        form = medication.get("form") if isinstance(medication, dict) else None
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
                if isinstance(resource.get("dosage"), dict)
                else resource.get("dosage")
            ),
            product,
        )
        return [
            MedicationRecord(
                ingredient=ingredient,
                exposure=exposure,
                display=display or ingredient.display,
                reference=reference_of(resource),
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
                reference_of(resource),
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
        past_ends = [d for d in (m.end or m.start for m in meds if m.exposure == "past") if d]
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
            if isinstance(period, dict)
            else None
        )
        return when, when
    if kind == "MedicationStatement":
        effective = resource.get("effectivePeriod")
        taken: Raw = effective if isinstance(effective, dict) else {}
        start = (
            as_datetime(taken.get("start"))
            or as_datetime(resource.get("effectiveDateTime"))
            or as_datetime(resource.get("dateAsserted"))
        )
        return start, as_datetime(taken.get("end"))
    authored = as_datetime(resource.get("authoredOn"))
    bounds_end = None
    for dosage in as_list(resource.get("dosageInstruction")):
        bounds = timing_repeat(dosage).get("boundsPeriod")
        if isinstance(bounds, dict) and bounds.get("end"):
            bounds_end = as_datetime(bounds["end"])
    validity = (
        resource.get("dispenseRequest", {}).get("validityPeriod")
        if isinstance(resource.get("dispenseRequest"), dict)
        else None
    )
    start = authored or (as_datetime(validity.get("start")) if isinstance(validity, dict) else None)
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
        ((m.start, m) for m in meds if m.exposure in ("current", "past") and m.start is not None),
        key=lambda pair: pair[0],
    )
    runs: list[list[MedicationRecord]] = []
    run_end: datetime | None = None
    for start, med in dated:
        end = now if med.exposure == "current" else (med.end or start)
        if runs and run_end is not None and start <= run_end + gap:
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
    dosed = [(m.start, m.dose.mg_per_day) for m in run if m.start is not None and m.dose.mg_per_day]
    for (_, earlier), (start, later) in zip(dosed, dosed[1:], strict=False):
        if start >= since and later > earlier * 1.001:
            return True
    return False
