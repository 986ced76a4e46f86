"""Fixtures for every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cds_service.fhir.cache import ANSWERS


@pytest.fixture(autouse=True)
def forget_fhir_answers() -> Iterator[None]:
    """Each test starts with no remembered FHIR answers (tests reuse server URLs and tokens)."""
    ANSWERS.clear()
    yield
    ANSWERS.clear()
