"""Synthetic patient-view requests of realistic shape: an SLE patient on azathioprine,
hydroxychloroquine and prednisone, with regular CBCs with differential, temperatures and
weights. Deterministic (seeded); dates are relative to `now` so the latest counts are current.

Sizes (resources in the prefetch, Patient included):
- small: one year of quarterly CBCs, a few vitals (~40);
- typical: five years of monthly CBCs with differential, conditions, medications, vitals (~300);
- heavy: eight years of weekly CBCs and frequent vitals (~3000).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"


@dataclass(frozen=True)
class Size:
    name: str
    cbc_interval_days: int
    cbc_count: int
    temperatures: int
    weights: int
    other_conditions: int
    old_medication_orders: int


SIZES = {
    "small": Size("small", 90, 4, 6, 3, 3, 1),
    "typical": Size("typical", 30, 60, 25, 12, 8, 6),
    "heavy": Size("heavy", 7, 500, 700, 250, 60, 40),
}

# (LOINC, display, unit) of one CBC with differential.
_CBC = (
    ("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL"),
    ("751-8", "Neutrophils [#/volume] in Blood by Automated count", "10*3/uL"),
    ("731-0", "Lymphocytes [#/volume] in Blood by Automated count", "10*3/uL"),
    ("770-8", "Neutrophils/100 leukocytes in Blood by Automated count", "%"),
)
_OTHER_CONDITIONS = (
    ("38341003", "Hypertensive disorder"),
    ("44054006", "Diabetes mellitus type 2"),
    ("69896004", "Rheumatoid arthritis"),
    ("197480006", "Anxiety disorder"),
    ("40055000", "Chronic sinusitis"),
    ("162864005", "Body mass index 30+ - obesity"),
    ("444814009", "Viral sinusitis"),
    ("195662009", "Acute viral pharyngitis"),
)
_MEDICATIONS = (
    ("197388", "azathioprine 50 MG Oral Tablet", "100 mg by mouth once daily", 2, "{tbl}"),
    ("979092", "hydroxychloroquine sulfate 200 MG Oral Tablet", "200 mg twice daily", 1, "{tbl}"),
    ("312617", "prednisone 5 MG Oral Tablet", "5 mg by mouth once daily", 1, "{tbl}"),
)


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _coded(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _category(code: str, display: str) -> list[dict[str, Any]]:
    system = "http://terminology.hl7.org/CodeSystem/observation-category"
    return [_coded(system, code, display)]


class _Builder:
    def __init__(self, patient_id: str, seed: int) -> None:
        self.patient_id = patient_id
        self.random = random.Random(seed)
        self.serial = 0

    def next_id(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}-{self.patient_id}-{self.serial}"

    def observation(
        self,
        code: str,
        display: str,
        value: float,
        unit: str,
        when: datetime,
        category: tuple[str, str] = ("laboratory", "Laboratory"),
        specimen: str | None = None,
        reference_range: tuple[float, float] | None = None,
    ) -> dict[str, Any]:
        resource: dict[str, Any] = {
            "resourceType": "Observation",
            "id": self.next_id("obs"),
            "status": "final",
            "category": _category(*category),
            "code": _coded(LOINC, code, display),
            "subject": {"reference": f"Patient/{self.patient_id}"},
            "effectiveDateTime": _when(when),
            "issued": _when(when + timedelta(hours=2)),
            "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
        }
        if specimen:
            resource["specimen"] = {"reference": specimen}
        if reference_range:
            low, high = reference_range
            resource["referenceRange"] = [
                {
                    "low": {"value": low, "unit": unit, "system": UCUM, "code": unit},
                    "high": {"value": high, "unit": unit, "system": UCUM, "code": unit},
                }
            ]
        return resource

    def differential(self) -> tuple[float, float, float, float]:
        """(WBC, ANC, ALC, neutrophil %) of one consistent draw: ANC + ALC stay below WBC."""
        wbc = max(2.0, self.random.gauss(5.2, 1.1))
        percent = min(75.0, max(40.0, self.random.gauss(60.0, 6.0)))
        lymphocytes = wbc * min(0.35, max(0.15, self.random.gauss(0.27, 0.04)))
        return round(wbc, 1), round(wbc * percent / 100, 1), round(lymphocytes, 1), round(percent)

    def cbc(self, when: datetime, fixed: tuple[float, ...] | None = None) -> list[dict[str, Any]]:
        specimen = f"Specimen/{self.next_id('spec')}"
        ranges = {"6690-2": (4.0, 11.0), "751-8": (1.8, 7.7), "731-0": (1.0, 4.8)}
        values = fixed or self.differential()
        return [
            self.observation(
                code,
                display,
                value,
                unit,
                when,
                specimen=specimen,
                reference_range=ranges.get(code),
            )
            for (code, display, unit), value in zip(_CBC, values, strict=True)
        ]

    def condition(self, code: str, display: str, onset: datetime) -> dict[str, Any]:
        return {
            "resourceType": "Condition",
            "id": self.next_id("cond"),
            "clinicalStatus": _coded(CLINICAL, "active", "Active"),
            "verificationStatus": _coded(VERIFICATION, "confirmed", "Confirmed"),
            "code": _coded(SNOMED, code, display),
            "subject": {"reference": f"Patient/{self.patient_id}"},
            "onsetDateTime": _when(onset),
            "recordedDate": _when(onset),
        }

    def medication_request(
        self, medication: tuple[str, str, str, int, str], authored: datetime, status: str
    ) -> dict[str, Any]:
        code, display, text, tablets, unit = medication
        return {
            "resourceType": "MedicationRequest",
            "id": self.next_id("medrx"),
            "status": status,
            "intent": "order",
            "medicationCodeableConcept": _coded(RXNORM, code, display),
            "subject": {"reference": f"Patient/{self.patient_id}"},
            "authoredOn": _when(authored),
            "dosageInstruction": [
                {
                    "text": text,
                    "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                    "doseAndRate": [
                        {"doseQuantity": {"value": tablets, "unit": "tablet", "code": unit}}
                    ],
                }
            ],
        }


def _bundle(resources: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not resources:
        return None
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"resource": r} for r in resources],
    }


def patient_view_request(size: str, now: datetime | None = None, seed: int = 7) -> dict[str, Any]:
    """A patient-view request whose prefetch holds one synthetic patient of `size`."""
    spec = SIZES[size]
    now = now or datetime.now(UTC)
    patient_id = f"bench-{size}"
    build = _Builder(patient_id, seed)
    patient = {
        "resourceType": "Patient",
        "id": patient_id,
        "gender": "female",
        "birthDate": "1986-04-02",
        "name": [{"family": "Synthetic", "given": ["Benchmark"]}],
    }
    history_start = now - timedelta(days=spec.cbc_interval_days * spec.cbc_count + 400)
    conditions = [build.condition("55464009", "Systemic lupus erythematosus", history_start)]
    for index in range(spec.other_conditions):
        code, display = _OTHER_CONDITIONS[index % len(_OTHER_CONDITIONS)]
        conditions.append(build.condition(code, display, history_start + timedelta(days=index)))
    requests = [
        build.medication_request(medication, now - timedelta(days=200), "active")
        for medication in _MEDICATIONS
    ]
    for index in range(spec.old_medication_orders):
        authored = history_start + timedelta(days=30 * index)
        medication = _MEDICATIONS[index % len(_MEDICATIONS)]
        requests.append(build.medication_request(medication, authored, "completed"))
    counts: list[dict[str, Any]] = []
    for index in range(spec.cbc_count):
        # The latest CBC shows mild leukopenia on azathioprine, so cards are rendered too.
        fixed = (3.2, 1.7, 0.9, 53.0) if index == 0 else None
        counts += build.cbc(
            now - timedelta(days=3 + spec.cbc_interval_days * index, hours=2), fixed
        )
    temperatures = [
        build.observation(
            "8310-5",
            "Body temperature",
            round(build.random.gauss(36.8, 0.3), 1),
            "Cel",
            now - timedelta(days=1 + 5 * index),
            category=("vital-signs", "Vital Signs"),
        )
        for index in range(spec.temperatures)
    ]
    weights = [
        build.observation(
            "29463-7",
            "Body weight",
            round(build.random.gauss(62.0, 1.5), 1),
            "kg",
            now - timedelta(days=2 + 14 * index),
            category=("vital-signs", "Vital Signs"),
        )
        for index in range(spec.weights)
    ]
    # Newest first, as the prefetch templates ask (_sort=-date).
    for series in (counts, temperatures, weights):
        series.sort(key=lambda r: r["effectiveDateTime"], reverse=True)
    return {
        "hook": "patient-view",
        "hookInstance": str(uuid.UUID(int=build.random.getrandbits(128), version=4)),
        "context": {"userId": "Practitioner/bench", "patientId": patient_id},
        "prefetch": {
            "patient": patient,
            "conditions": _bundle(conditions),
            "medicationStatements": None,
            "medicationRequests": _bundle(requests),
            "medicationAdministrations": None,
            "counts": _bundle(counts),
            "temperatures": _bundle(temperatures),
            "weights": _bundle(weights),
            "phenotypes": None,
        },
    }


def resource_count(request: dict[str, Any]) -> int:
    total = 0
    for value in request["prefetch"].values():
        if isinstance(value, dict):
            total += len(value.get("entry") or []) if value["resourceType"] == "Bundle" else 1
    return total
