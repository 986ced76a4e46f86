"""The nesting cap on untrusted JSON: the fast byte check never passes what the walk refuses."""

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service.protocol import json_body

# Text full of the characters the byte check must see through: quotes, brackets, backslashes.
TRICKY_TEXT = st.text(alphabet='[]{}"\\ a/u', max_size=8)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | TRICKY_TEXT,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(TRICKY_TEXT, children, max_size=3)
    ),
    max_leaves=40,
)


def nested(levels: int) -> list:
    value: list = []
    for _ in range(levels - 1):
        value = [value]
    return value


@settings(max_examples=400, deadline=None)
@given(JSON_VALUES, st.integers(min_value=1, max_value=8), st.booleans())
def test_fast_check_is_sound(value, limit, std_json):
    raw = json.dumps(value).encode() if std_json else orjson.dumps(value)
    if json_body.brackets_shallow(raw, limit):
        assert json_body.depth_ok(value, limit)


def test_strings_cannot_hide_depth():
    # Stray brackets inside strings rebalance the byte sequence: '[' '"]"' ... '"["' ']'.
    deep = '["]", ' * 70 + "1" + ', "["]' * 70
    value = json.loads(deep)
    assert not json_body.depth_ok(value)
    assert not json_body.brackets_shallow(deep.encode())
    with pytest.raises(json_body.TooDeep):
        json_body.loads(deep.encode())


@pytest.mark.parametrize("levels, accepted", [(63, True), (64, True), (65, False)])
def test_limit_edges(levels, accepted):
    raw = orjson.dumps(nested(levels))  # the innermost list is empty: `levels` levels in all
    assert json_body.depth_ok(orjson.loads(raw)) is accepted
    if accepted:
        assert json_body.loads(raw) == nested(levels)
    else:
        with pytest.raises(json_body.TooDeep):
            json_body.loads(raw)


def test_a_real_body_passes_the_fast_check():
    from tests.support.synthetic import patient_view_request

    raw = orjson.dumps(patient_view_request("small"))  # LOINC text: "[#/volume]"
    assert json_body.brackets_shallow(raw)
    assert json_body.loads(raw) == orjson.loads(raw)


def test_escaped_quotes_and_backslashes_are_read_as_text():
    raw = rb'{"div": "<div xmlns=\"x\">[[[\\</div>", "b": ["\\\\", {"c": "\\\"]"}]}'
    # 3 bracket levels and a scalar: 4 levels. The check may need a spare level (it strips
    # [] and {} in turn), never fewer.
    assert json_body.brackets_shallow(raw, 6)
    assert not json_body.brackets_shallow(raw, 3)
    assert json_body.depth_ok(json_body.loads(raw), 4)
    assert json_body.loads(raw)["b"][1]["c"] == '\\"]'


def test_invalid_and_nan_json_are_refused():
    for raw in (b"{", b"[NaN]", b'{"a": Infinity}', b"[" * 2000 + b"]" * 2000):
        with pytest.raises(ValueError):
            json_body.loads(raw)


def true_value_count(value) -> int:
    children = (
        value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    )
    return 1 + sum(true_value_count(child) for child in children)


def empty_containers(value) -> int:
    if isinstance(value, dict | list) and not value:
        return 1
    children = (
        value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    )
    return sum(empty_containers(child) for child in children)


@settings(max_examples=400, deadline=None)
@given(JSON_VALUES, st.booleans())
def test_value_count_is_exact_but_for_empty_containers(value, std_json):
    # Never fewer than the values there are (the limit cannot be slipped past), and more only
    # by the empty arrays and objects, which FHIR does not allow anyway.
    raw = json.dumps(value).encode() if std_json else orjson.dumps(value)
    assert json_body.value_count(raw) == true_value_count(value) + empty_containers(value)


def zeros(values: int) -> bytes:
    """An array holding `values` values in all (itself and values - 1 zeros)."""
    return b"[" + b",".join([b"0"] * (values - 1)) + b"]"


@pytest.mark.parametrize("values, accepted", [(9_999, True), (10_000, True), (10_001, False)])
def test_value_limit_edges(values, accepted):
    raw = zeros(values)
    assert json_body.value_count(raw) == values
    if accepted:
        assert len(json_body.loads(raw, max_values=10_000)) == values - 1
    else:
        with pytest.raises(json_body.TooLarge):
            json_body.loads(raw, max_values=10_000)


def test_the_default_value_limit_refuses_a_million_element_array_as_a_413():
    assert json_body.loads(zeros(json_body.MAX_VALUES)) is not None
    with pytest.raises(json_body.BodyRefused) as refused:
        json_body.loads_request_body(zeros(1_000_000))
    assert refused.value.status == 413
    assert "more than 500000 JSON values" in str(refused.value)


def test_values_inside_strings_are_not_counted():
    raw = orjson.dumps({"div": "[1, 2, 3], {4, 5}" * 1000, "escaped": '\\", [,,,]'})
    assert json_body.value_count(raw) == 3
