"""Answers shaped to the description's response schemas; bodies checked against its request schemas."""

import pytest

from klaviyo_sandbox import description, schemas
from klaviyo_sandbox.exceptions import APIError


def answer(operation_id, attributes, kind):
    operation = description.by_id()[operation_id]
    document = {"data": {"type": kind, "id": "AbC123", "attributes": attributes, "links": {"self": "https://x/"}}}
    schema = operation.responses[str(operation.success_status)]
    return schemas.conform(document, schema), schema


def test_required_attributes_get_values_of_their_type_and_the_answer_validates():
    shaped, schema = answer("create_coupon", {"external_id": "TEN"}, "coupon")
    attributes = shaped["data"]["attributes"]
    assert attributes["external_id"] == "TEN"
    assert schemas.is_valid(schema, shaped)


def test_write_only_members_are_never_answered_even_inside_a_one_of():
    action = {"temporary_id": "a1", "type": "time-delay", "data": {"unit": "days", "value": 1, "timezone": "UTC"}}
    definition = {"triggers": [], "profile_filter": None, "entry_action_id": "a1", "actions": [action]}
    shaped, schema = answer("create_flow", {"name": "Welcome", "definition": definition}, "flow")
    answered = shaped["data"]["attributes"]["definition"]["actions"][0]
    assert "temporary_id" not in answered
    assert answered["type"] == "time-delay"
    assert schemas.is_valid(schema, shaped)


def test_a_bad_body_member_is_a_400_pointing_at_it():
    operation = description.by_id()["create_coupon"]
    with pytest.raises(APIError) as refused:
        schemas.check_body(operation.request_schema, {"data": {"type": "coupon", "attributes": {"external_id": 5}}})
    assert refused.value.status == 400
    assert refused.value.source == {"pointer": "/data/attributes/external_id"}
