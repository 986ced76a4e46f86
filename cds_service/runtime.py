"""What a running application holds, built once by `create_app` (app.py, the composition root)
and read by the views through `runtime()`: one typed object instead of keys in
`app.extensions`. The parts below the app (governance, security, ops) never read it: the root
hands each the piece it needs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from flask import Flask, current_app

from cds_service.config import Settings
from cds_service.fhir.client import FetchObserver
from cds_service.governance.store import Storage
from cds_service.knowledge import Knowledge
from cds_service.security.authenticator import ClientAuthenticator
from cds_service.services import ServiceDefinition

_EXTENSION = "cds_runtime"  # Flask's place for an app's objects; read only through runtime()


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    knowledge: Knowledge
    services: Mapping[str, ServiceDefinition]  # by service id
    storage: Storage  # card history, snoozes, feedback
    authenticator: ClientAuthenticator  # the CDS clients' JWTs
    observe_fhir_fetch: FetchObserver  # told of every call to an EHR's FHIR server

    def close(self) -> None:
        """Release the database and Redis connections (a worker exits without it; an app made
        for a test or a command must not leave sockets for the garbage collector to find)."""
        self.storage.close()
        self.authenticator.close()


def install(app: Flask, running: Runtime) -> None:
    """Give `app` its runtime (create_app does, once)."""
    app.extensions[_EXTENSION] = running


def runtime(app: Flask | None = None) -> Runtime:
    """The runtime of `app`, by default of the application handling the current request."""
    running: Runtime = (app or current_app).extensions[_EXTENSION]
    return running
