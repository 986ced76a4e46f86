"""Rendering prefetch templates with the CDS Hooks 2.0 tokens only."""

import pytest

from cds_service.fhir.templates import PrefetchQuery, plan_query

CONTEXT = {"userId": "PractitionerRole/role-7", "patientId": "p 1&x", "encounterId": "e1"}


def test_context_token_in_the_query_is_url_encoded():
    query = plan_query("Condition?patient={{context.patientId}}&_count=5", CONTEXT)
    assert query == PrefetchQuery("Condition", "Condition?patient=p%201%26x&_count=5")


def test_instance_read_fills_the_path():
    query = plan_query("Encounter/{{context.encounterId}}", CONTEXT)
    assert query == PrefetchQuery("Encounter", "Encounter/e1")


def test_whole_reference_token_keeps_its_type_and_id():
    query = plan_query("{{context.userId}}", CONTEXT)
    assert query == PrefetchQuery("PractitionerRole", "PractitionerRole/role-7")


def test_user_token_is_derived_from_the_user_reference():
    query = plan_query("PractitionerRole/{{userPractitionerRoleId}}", CONTEXT)
    assert query.relative_url == "PractitionerRole/role-7"


@pytest.mark.parametrize(
    ("template", "token"),
    [
        # The user is a PractitionerRole, so there is no Practitioner id to fill in.
        ("Practitioner/{{userPractitionerId}}", "{{userPractitionerId}}"),
        ("Observation?patient={{context.missing}}", "{{context.missing}}"),
        # FHIRPath tokens are 3.0-ballot syntax, not CDS Hooks 2.0.
        ("Observation?date=gt{{today() - 90 days}}", "{{today() - 90 days}}"),
        # A path value that is not an id must not steer the request elsewhere.
        ("Patient/{{context.patientId}}", "{{context.patientId}}"),
    ],
)
def test_token_that_cannot_be_filled_gives_no_url(template, token):
    query = plan_query(template, CONTEXT)
    assert query.relative_url is None
    assert query.unfilled_token == token


def test_dot_segments_are_refused_in_the_path():
    assert plan_query("Patient/{{context.patientId}}", {"patientId": ".."}).relative_url is None


def test_non_primitive_context_field_is_not_a_token():
    query = plan_query("Observation?x={{context.draftOrders}}", {"draftOrders": {"a": 1}})
    assert query.relative_url is None
    assert query.resource_type == "Observation"
