"""Load the patient-view fixtures into a FHIR R4 server (the compose stack's HAPI), so the
service can be tried without prefetch: it then fetches the same data from `fhirServer`.

Every fixture's prefetch is moved to today (cds_service.fhir.timeshift.replay_now: a CBC 3 days old
in the fixture is 3 days old today) and each resource is written by id with
`PUT {base}/{type}/{id}`, so running the loader again updates instead of duplicating.
Patients go first; the fixtures' other references (Practitioner, Specimen) point at nothing,
so the server must not enforce referential integrity on write (docker-compose.yml sets that).

    python deploy/load_fixtures.py --fhir-base http://fhir:8080/fhir fixtures/patient-view
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from cds_service.fhir.timeshift import replay_now

RESOURCE_TYPES = (
    "Patient",
    "Condition",
    "Observation",
    "MedicationRequest",
    "MedicationStatement",
    "MedicationAdministration",
)
FHIR_JSON = "application/fhir+json"
DEFAULT_BASE = os.environ.get("FHIR_BASE_URL", "http://fhir:8080/fhir")
DEFAULT_DIRECTORY = Path(__file__).resolve().parent.parent / "fixtures" / "patient-view"


class LoadError(RuntimeError):
    """The FHIR server refused a resource or never became ready."""


def prefetch_resources(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The resources of a CDS Hooks request's prefetch (single resources and Bundle entries)."""
    for value in (document.get("prefetch") or {}).values():
        if not isinstance(value, dict):
            continue  # a null key: "no data"
        if value.get("resourceType") == "Bundle":
            for entry in value.get("entry") or []:
                resource = entry.get("resource") if isinstance(entry, dict) else None
                if isinstance(resource, dict):
                    yield resource
        else:
            yield value


def resources_to_load(documents: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The loadable resources of all documents, once each by type and id, Patients first."""
    chosen: dict[tuple[str, str], dict[str, Any]] = {}
    for document in documents:
        for resource in prefetch_resources(document):
            kind, resource_id = resource.get("resourceType"), resource.get("id")
            if kind in RESOURCE_TYPES and isinstance(resource_id, str) and resource_id:
                chosen.setdefault((kind, resource_id), resource)
    return sorted(chosen.values(), key=lambda r: RESOURCE_TYPES.index(r["resourceType"]))


def read_fixtures(directory: Path, now: datetime) -> list[dict[str, Any]]:
    """Every *.json request in `directory`, moved so its anchor is `now`."""
    paths = sorted(directory.glob("*.json"))
    if not paths:
        raise LoadError(f"no fixtures in {directory}")
    return [replay_now(json.loads(path.read_text()), now) for path in paths]


def wait_for_server(
    session: requests.Session,
    base: str,
    timeout_seconds: float,
    interval_seconds: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Poll `{base}/metadata` until it answers with a CapabilityStatement."""
    deadline = clock() + timeout_seconds
    while True:
        try:
            response = session.get(f"{base}/metadata", headers={"Accept": FHIR_JSON}, timeout=10)
            if response.ok and response.json().get("resourceType") == "CapabilityStatement":
                return
            reason = f"HTTP {response.status_code}"
        except (requests.RequestException, ValueError) as error:
            reason = type(error).__name__
        if clock() >= deadline:
            raise LoadError(f"{base} not ready after {timeout_seconds:.0f} s ({reason})")
        print(f"waiting for {base} ({reason})", file=sys.stderr)
        sleep(interval_seconds)


def put_resource(session: requests.Session, base: str, resource: dict[str, Any]) -> int:
    """`PUT {base}/{type}/{id}`; returns the status (200 updated, 201 created)."""
    url = f"{base}/{resource['resourceType']}/{resource['id']}"
    response = session.put(
        url,
        data=json.dumps(resource),
        headers={"Content-Type": FHIR_JSON, "Accept": FHIR_JSON},
        timeout=30,
    )
    if not response.ok:
        raise LoadError(f"PUT {url}: HTTP {response.status_code}: {response.text[:500]}")
    return response.status_code


def load(session: requests.Session, base: str, directory: Path, now: datetime | None = None) -> int:
    """Writes every fixture resource; returns how many were written."""
    resources = resources_to_load(read_fixtures(directory, now or datetime.now(UTC)))
    for resource in resources:
        put_resource(session, base, resource)
    return len(resources)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DIRECTORY)
    parser.add_argument("--fhir-base", default=DEFAULT_BASE, help="FHIR base URL")
    parser.add_argument(
        "--wait-seconds", type=float, default=300, help="how long to wait for the server"
    )
    args = parser.parse_args(argv)
    base = args.fhir_base.rstrip("/")
    with requests.Session() as session:
        try:
            wait_for_server(session, base, args.wait_seconds)
            count = load(session, base, args.directory)
        except LoadError as error:
            print(f"load_fixtures: {error}", file=sys.stderr)
            return 1
    print(f"loaded {count} resources from {args.directory} into {base}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
