"""The CDS Hooks 2.0 request: parsed and validated, or rejected with a clear 4xx.

Checks follow CONFORMANCE.md §C and §J (and Inferno's request-body checks): hook,
hookInstance, context and its per-hook fields, fhirServer/fhirAuthorization, prefetch. Unknown
top-level fields and extensions are ignored, as the spec allows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cds_service.protocol.draft_orders import DraftOrders, read_draft_orders
from cds_service.protocol.hooks import ORDER_HOOKS, ORDER_SELECT

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# FHIR ids are [A-Za-z0-9-.]{1,64}; some EHRs (Epic) send longer opaque ids, so allow 256.
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,256}$")
_USER_REFERENCE = re.compile(
    r"^(Practitioner|PractitionerRole|Patient|RelatedPerson)/[A-Za-z0-9\-.]{1,256}$"
)
_ORDER_REFERENCE = re.compile(
    r"^(MedicationRequest|ServiceRequest|NutritionOrder|DeviceRequest|VisionPrescription"
    r"|MedicationOrder|ProcedureRequest)/[A-Za-z0-9\-.]{1,256}$"
)


class BadRequest(Exception):
    """The request is malformed; the message is safe to return to the client."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class HookRequest:
    """One validated call, read once: the layers below take their fields from here and never
    read the request's JSON again."""

    hook: str
    hook_instance: str
    patient_id: str
    user_id: str
    encounter_id: str | None
    # The order hooks' draft orders with order-select's selections; None on patient-view.
    drafts: DraftOrders | None
    fhir_server: str | None
    access_token: str | None  # fhirAuthorization's bearer token
    prefetch: Mapping[str, Any] | None
    # The context as sent, for the prefetch templates' `{{context.<field>}}` tokens only.
    context: Mapping[str, Any]

    @property
    def correlation_id(self) -> str:
        """hookInstance for logs, only when it is a UUID (never echo arbitrary client text)."""
        return self.hook_instance if _UUID.match(self.hook_instance) else "non-uuid"


def _string(body: Mapping[str, Any], key: str, where: str = "") -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{where}{key} is required and must be a non-empty string")
    return value


def _identity(context: Mapping[str, Any]) -> tuple[str, str, str | None]:
    """The patient, the user and the encounter (if any) the call is about."""
    user_id = _string(context, "userId", "context.")
    if not _USER_REFERENCE.match(user_id):
        raise BadRequest("context.userId must be a reference like Practitioner/123")
    patient_id = _string(context, "patientId", "context.")
    if not _FHIR_ID.match(patient_id):
        raise BadRequest("context.patientId must be a FHIR id (letters, digits, '-' and '.')")
    encounter = context.get("encounterId")
    if encounter is not None and (not isinstance(encounter, str) or not _FHIR_ID.match(encounter)):
        raise BadRequest("context.encounterId must be a FHIR id")
    return patient_id, user_id, encounter


def _read_drafts(hook: str, context: Mapping[str, Any]) -> DraftOrders:
    bundle = context.get("draftOrders")
    if not isinstance(bundle, Mapping) or bundle.get("resourceType") != "Bundle":
        raise BadRequest("context.draftOrders is required and must be a FHIR Bundle")
    if not isinstance(bundle.get("entry", []), list):
        raise BadRequest("context.draftOrders.entry must be an array")
    if hook != ORDER_SELECT:
        return read_draft_orders(bundle, None)  # order-sign: every draft is evaluated
    selections = context.get("selections")
    if not isinstance(selections, list) or not selections:
        raise BadRequest("context.selections is required and must be a non-empty array")
    if not all(isinstance(s, str) and _ORDER_REFERENCE.match(s) for s in selections):
        raise BadRequest("context.selections must hold references like MedicationRequest/123")
    return read_draft_orders(bundle, selections)


def _validate_fhir_access(body: Mapping[str, Any]) -> tuple[str | None, str | None]:
    server = body.get("fhirServer")
    if server is not None:
        if not isinstance(server, str):
            raise BadRequest("fhirServer must be a URL string")
        parts = urlsplit(server)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise BadRequest("fhirServer must be an absolute http(s) URL")
    authorization = body.get("fhirAuthorization")
    if authorization is None:
        return server, None
    if not isinstance(authorization, Mapping):
        raise BadRequest("fhirAuthorization must be an object")
    if server is None:
        raise BadRequest("fhirServer is required when fhirAuthorization is present")
    token = _string(authorization, "access_token", "fhirAuthorization.")
    if authorization.get("token_type") != "Bearer":
        raise BadRequest("fhirAuthorization.token_type must be Bearer")
    expires_in = authorization.get("expires_in")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int):
        raise BadRequest("fhirAuthorization.expires_in must be an integer")
    _string(authorization, "scope", "fhirAuthorization.")
    _string(authorization, "subject", "fhirAuthorization.")
    return server, token


# Resources one request may carry (prefetch Bundles' entries and draft orders). Each resource the
# rules read is validated (~0.1-0.3 ms), so 10,000 recent results take ~1.5 s to read, within the
# call's deadline plus its second of grace (cds_service.deadline); the synthetic heavy chart
# (eight years of weekly CBCs and vitals) holds 3055. A larger prefetch is refused at once with
# 413, where it would otherwise cost a worker its full deadline for a 503.
MAX_RESOURCES = 10_000


def _resources_in(value: Any) -> int:
    if not isinstance(value, Mapping):
        return 0
    entries = value.get("entry") if value.get("resourceType") == "Bundle" else None
    return len(entries) if isinstance(entries, list) else 1


# The card history column's size (storage/models.py IssuedCard.hook_instance): a longer value
# would be answered and then fail its history write. A UUID has 36 characters.
MAX_HOOK_INSTANCE_LENGTH = 100


def parse_request(body: Any, service_hook: str) -> HookRequest:
    if not isinstance(body, Mapping):
        raise BadRequest("the request body must be a JSON object")
    hook = _string(body, "hook")
    if hook != service_hook:
        raise BadRequest(f"this service answers the {service_hook} hook only")
    hook_instance = _string(body, "hookInstance")
    if len(hook_instance) > MAX_HOOK_INSTANCE_LENGTH:
        raise BadRequest("hookInstance is too long (a UUID is expected)")
    if not hook_instance.isprintable():
        raise BadRequest("hookInstance must not contain control characters (a UUID is expected)")
    context = body.get("context")
    if not isinstance(context, Mapping):
        raise BadRequest("context is required and must be an object")
    patient_id, user_id, encounter_id = _identity(context)
    drafts = _read_drafts(hook, context) if hook in ORDER_HOOKS else None
    fhir_server, access_token = _validate_fhir_access(body)
    prefetch = body.get("prefetch")
    resources = len(drafts.entries) if drafts else 0
    if prefetch is not None:
        if not isinstance(prefetch, Mapping):
            raise BadRequest("prefetch must be an object")
        for key, value in prefetch.items():
            if value is not None and not isinstance(value, Mapping):
                raise BadRequest(f"prefetch.{str(key)[:40]} must be a FHIR resource or null")
            if isinstance(value, Mapping) and not isinstance(value.get("resourceType"), str):
                raise BadRequest(f"prefetch.{str(key)[:40]} has no resourceType")
            resources += _resources_in(value)
    if resources > MAX_RESOURCES:
        raise BadRequest(f"the request holds more than {MAX_RESOURCES} FHIR resources", 413)
    return HookRequest(
        hook,
        hook_instance,
        patient_id,
        user_id,
        encounter_id,
        drafts,
        fhir_server,
        access_token,
        prefetch,
        context,
    )
