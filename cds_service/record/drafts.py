"""Draft orders of the order hooks (`context.draftOrders`, order-select and order-sign), as the
request was read (`protocol.draft_orders`): read leniently, every entry looked at, medication
orders matched like any other medication. A draft is the order being written, never current
exposure (clinical rules §2.1); what cannot be read becomes a note for DATA_QUALITY instead of
an error."""

from __future__ import annotations

from cds_service.protocol.draft_orders import DraftOrders
from cds_service.record import terminology
from cds_service.record.medications import MedicationReader
from cds_service.record.model import DraftOrder, MedicationRecord, Raw
from cds_service.record.reader import names_other_patient


class DraftReader(MedicationReader):
    """Reads the draft orders into `record.draft_orders` and `record.draft_notes`."""

    def draft_orders(self, drafts: DraftOrders) -> None:
        """Read the draft orders leniently: every entry is looked at, medication orders are
        matched like any other medication, and what cannot be read becomes a note for
        DATA_QUALITY instead of an error. Selections None = every draft is evaluated."""
        selections = drafts.selections
        known: set[str] = set()
        for position, resource in enumerate(drafts.entries, 1):
            if resource is None:
                self.record.draft_notes.append(
                    f"draft order {position} of the session could not be read: not evaluated"
                )
                continue
            kind = resource["resourceType"]
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


def _names_a_medication(resource: Raw) -> bool:
    """Whether a draft names a drug at all: order-select fires while the clinician is still
    choosing, and a draft with no medication yet is not a data problem (spec §3 DATA_QUALITY)."""
    concept = resource.get("medicationCodeableConcept")
    if isinstance(concept, dict) and (concept.get("text") or terminology.codings(concept)):
        return True
    reference = resource.get("medicationReference")
    return isinstance(reference, dict) and bool(
        reference.get("reference") or reference.get("display")
    )
