"""The PatientRecord: the clinical facts the rules read, each with its provenance.

Built once per call from the raw FHIR JSON the EHR sent (prefetch or fetched); only resources
the rules can use are looked at, each validated with the FHIR R4B models, and what cannot be
interpreted is kept as an `UnusableResult` so a card can say so (clinical rules §1.1, §1.2).

The modules, in the order a record is built:
- `model`: the facts (`Count`, `DrugExposure`, `DraftOrder` ...) and the `PatientRecord`;
- `chart`: the call's resources, each Observation classified once (result, code, time,
  Duffy phenotype) and its value read at most once;
- `reader`: the state the readers share and FHIR fields read from several resources;
- `counts`, `observations`: Observations (counts per draw, flags, temperature, weight,
  TPMT/NUDT15); `conditions`: lupus, fever, Duffy-null; `medications`: records, local forms,
  exposures and renewals; `drafts`: the order hooks' draft orders;
- `reading_plan`: leaving unparsed the chart's Observations beyond the windows the rules
  declare;
- `build`: the `RecordBuilder` of all readers and `build_record`;
- `units`, `terminology`, `dosing`: units, codes and doses, as the knowledge files say.
"""

from cds_service.record.build import build_record
from cds_service.record.model import (
    COUNT_GROUPS,
    SAME_DRAW,
    Count,
    DraftOrder,
    DrugExposure,
    LabFlag,
    MedicationRecord,
    PatientRecord,
    Temperature,
    UnusableResult,
    format_count,
    received_as_shown,
)
from cds_service.record.reader import names_other_patient

__all__ = [
    "COUNT_GROUPS",
    "SAME_DRAW",
    "Count",
    "DraftOrder",
    "DrugExposure",
    "LabFlag",
    "MedicationRecord",
    "PatientRecord",
    "Temperature",
    "UnusableResult",
    "build_record",
    "format_count",
    "names_other_patient",
    "received_as_shown",
]
