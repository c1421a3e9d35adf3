"""Profiles endpoints: parse the query and body, call the profiles service, shape Klaviyo's answer."""

from __future__ import annotations

from typing import Any

from klaviyo_sandbox import bodies, params, resources
from klaviyo_sandbox.api.base import Call, Reply, collection, single
from klaviyo_sandbox.models import Profile
from klaviyo_sandbox.store import profiles


def _shape(call: Call) -> Any:
    """How this call wants profiles shaped: additional fields and sparse fieldsets, checked up front."""
    additional = params.additional_fields(call.query, "profile", resources.ADDITIONAL_PROFILE_FIELDS)
    fields = params.sparse_fields(call.query, "profile", resources.profile_fields())

    def shape(row: Profile) -> dict[str, Any]:
        return resources.profile(row, api_root=call.api_root, additional=additional, fields=fields)

    return shape


def get_profiles(call: Call) -> Reply:
    query = call.query
    params.no_include(query)
    shape = _shape(call)
    page = profiles.page(call.account_id, params.selection(query, profiles.LISTING))
    return collection(call, [shape(row) for row in page.rows], page)


def get_profile(call: Call) -> Reply:
    params.no_include(call.query)
    shape = _shape(call)
    return single(call, shape(profiles.get(call.account_id, call.args["id"])))


def create_profile(call: Call) -> Reply:
    shape = _shape(call)
    row = profiles.create(call.account_id, bodies.resource(call.body(), "profile"))
    return single(call, shape(row), status=201)


def update_profile(call: Call) -> Reply:
    shape = _shape(call)
    row = profiles.update(call.account_id, call.args["id"], bodies.resource(call.body(), "profile", with_id=True))
    return single(call, shape(row))


def create_or_update_profile(call: Call) -> Reply:
    shape = _shape(call)
    row, created = profiles.upsert(call.account_id, bodies.resource(call.body(), "profile"))
    return single(call, shape(row), status=201 if created else 200)
