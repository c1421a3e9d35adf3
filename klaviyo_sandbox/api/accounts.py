"""Accounts endpoints: the account the access token belongs to."""

from __future__ import annotations

from klaviyo_sandbox import params, resources
from klaviyo_sandbox.api.base import Call, Reply, collection, single
from klaviyo_sandbox.exceptions import not_found


def get_accounts(call: Call) -> Reply:
    fields = params.sparse_fields(call.query, "account", resources.account_fields())
    return collection(call, [resources.account(call.caller.account, api_root=call.api_root, fields=fields)], None)


def get_account(call: Call) -> Reply:
    fields = params.sparse_fields(call.query, "account", resources.account_fields())
    if call.args["id"] != call.account_id:
        raise not_found(f"An account with id {call.args['id']} does not exist.")
    return single(call, resources.account(call.caller.account, api_root=call.api_root, fields=fields))
