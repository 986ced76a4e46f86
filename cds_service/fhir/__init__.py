"""Reaching FHIR data: prefetch values, the EHR's FHIR server, dates, links and validation."""
