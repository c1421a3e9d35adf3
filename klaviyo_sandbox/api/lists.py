"""Lists endpoints: parse the query and body, call the lists service, shape Klaviyo's answer."""

from __future__ import annotations

from klaviyo_sandbox import bodies, params, resources
from klaviyo_sandbox.api.base import Call, Reply, collection, listed, single
from klaviyo_sandbox.pagination import Page
from klaviyo_sandbox.store import lists

MEMBERS_AT_ONCE = 1000  # profiles one call may add to or remove from a list


def get_lists(call: Call) -> Reply:
    return listed(call, lists.LISTING, lists.page, resources.profile_list, resources.LIST_FIELDS)


def create_list(call: Call) -> Reply:
    fields = params.sparse_fields(call.query, "list", resources.LIST_FIELDS)
    row = lists.create(call.account_id, bodies.resource(call.body(), "list"))
    return single(call, resources.profile_list(row, api_root=call.api_root, fields=fields), status=201)


def get_list(call: Call) -> Reply:
    params.no_include(call.query)
    counted = "profile_count" in params.additional_fields(call.query, "list", ("profile_count",))
    fields = params.sparse_fields(call.query, "list", (*resources.LIST_FIELDS, "profile_count"))
    row = lists.get(call.account_id, call.args["id"])
    count = lists.profile_count(row) if counted else None
    return single(call, resources.profile_list(row, api_root=call.api_root, fields=fields, profile_count=count))


def update_list(call: Call) -> Reply:
    fields = params.sparse_fields(call.query, "list", resources.LIST_FIELDS)
    row = lists.update(call.account_id, call.args["id"], bodies.resource(call.body(), "list", with_id=True))
    return single(call, resources.profile_list(row, api_root=call.api_root, fields=fields))


def delete_list(call: Call) -> Reply:
    lists.delete(call.account_id, call.args["id"])
    return Reply(None, status=204)


def _members(call: Call) -> Page:
    return lists.members(call.account_id, call.args["id"], params.selection(call.query, lists.MEMBERS))


def get_list_profiles(call: Call) -> Reply:
    additional = params.additional_fields(call.query, "profile", resources.ADDITIONAL_PROFILE_FIELDS)
    fields = params.sparse_fields(call.query, "profile", resources.profile_fields() | {"joined_group_at"})
    page = _members(call)
    data = [
        resources.profile(
            member.profile, api_root=call.api_root, additional=additional, fields=fields, joined_at=member.joined_at
        )
        for member in page.rows
    ]
    return collection(call, data, page)


def get_list_profile_ids(call: Call) -> Reply:
    page = _members(call)
    return collection(call, [{"type": "profile", "id": member.profile_id} for member in page.rows], page)


def add_profiles_to_list(call: Call) -> Reply:
    profile_ids = bodies.identifiers(call.body(), "profile", most=MEMBERS_AT_ONCE)
    lists.add(call.account_id, call.args["id"], profile_ids)
    return Reply(None, status=204)


def remove_profiles_from_list(call: Call) -> Reply:
    profile_ids = bodies.identifiers(call.body(), "profile", most=MEMBERS_AT_ONCE)
    lists.remove(call.account_id, call.args["id"], profile_ids)
    return Reply(None, status=204)
