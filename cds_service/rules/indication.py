"""Why the patient takes the immunosuppressant, and who decides about it (clinical rules §3
wording v4: transplant recipients and non-rheumatic patients).

A transplant recipient's anti-rejection drug is never withheld on the card's own advice: the
card asks to discuss with the transplant team today before changing it. The BSR/BHPR 2017
"withhold and discuss with the specialist team" advice is for rheumatic indications (lupus or
another rheumatic disease on the problem list). Any other patient has an unknown indication
for the card: "inform the prescribing team".
"""

from __future__ import annotations

from typing import Literal

from cds_service.record import PatientRecord

Indication = Literal["transplant", "rheumatic", "unknown"]


def indication(record: PatientRecord) -> Indication:
    """Transplant first: a lupus patient with a kidney transplant takes her tacrolimus and
    mycophenolate for the graft, and only the transplant team changes them."""
    if record.transplant:
        return "transplant"
    if record.lupus is not None or record.rheumatic:
        return "rheumatic"
    return "unknown"


def drug_names(names: list[str]) -> str:
    """ "tacrolimus / mycophenolate mofetil": one verb fits every drug named (v4 wording)."""
    return " / ".join(dict.fromkeys(names))


def transplant_line(names: list[str]) -> str:
    return (
        f"Discuss with the transplant team today before changing {drug_names(names)}: "
        "an anti-rejection drug is not stopped on this card's advice."
    )


def transplant_evidence(record: PatientRecord) -> list[str]:
    return [f"Transplant recipient: {record.transplant}."] if record.transplant else []
