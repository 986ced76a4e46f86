"""Leukopenia CDS: a CDS Hooks 2.0 service for leukopenia, neutropenia and lymphopenia in
patients with SLE or on immunosuppressants.

Importing the package imports nothing else: `cds-service serve --production` starts gunicorn
from here, and its gevent workers must patch the standard library before `requests` or
`urllib3` is imported (they keep the unpatched `ssl.SSLContext`, and every HTTPS call then
fails with RecursionError, gevent issue 1016). The app lives in cds_service/app.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The Flask application (cds_service/app.py), imported when first asked for."""
    from cds_service.app import create_app as build

    return build(config)
