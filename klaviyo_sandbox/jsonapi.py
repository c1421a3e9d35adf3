"""JSON:API documents in the shape of Klaviyo's responses. Pure functions of their inputs."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from klaviyo_sandbox.accounts import SandboxAccount, SandboxProfile
from klaviyo_sandbox.exceptions import APIError
from klaviyo_sandbox.services import ProfilePage

CONTENT_TYPE = "application/vnd.api+json"
_PROFILE_RELATIONSHIPS = ("lists", "segments", "push-tokens", "conversations")


def _timestamp(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment is not None else None


def error_document(error: APIError) -> dict[str, Any]:
    return {
        "errors": [
            {
                "id": str(uuid.uuid4()),
                "status": error.status,
                "code": error.code,
                "title": error.title,
                "detail": error.detail,
                "source": dict(error.source),
            }
        ]
    }


def profile_resource(profile: SandboxProfile, *, collection_url: str) -> dict[str, Any]:
    own_url = f"{collection_url}/{profile.id}/"
    return {
        "type": "profile",
        "id": profile.id,
        "attributes": {
            "email": profile.email,
            "phone_number": profile.phone_number,
            "external_id": profile.external_id,
            "first_name": profile.first_name,
            "last_name": profile.last_name,
            "organization": profile.organization,
            "locale": profile.locale,
            "title": profile.title,
            "image": None,
            "created": _timestamp(profile.created),
            "updated": _timestamp(profile.updated),
            "last_event_date": _timestamp(profile.last_event_date),
            "location": dict(profile.location),
            "properties": dict(profile.properties),
        },
        "relationships": {
            name: {"links": {"self": f"{own_url}relationships/{name}/", "related": f"{own_url}{name}/"}}
            for name in _PROFILE_RELATIONSHIPS
        },
        "links": {"self": own_url},
    }


def profiles_document(
    page: ProfilePage, *, collection_url: str, self_url: str, query: Mapping[str, str]
) -> dict[str, Any]:
    """``collection_url``: absolute URL of /api/profiles (no trailing slash); ``query``: the request's."""

    def link(cursor: str | None) -> str | None:
        if cursor is None:
            return None
        params = {key: value for key, value in query.items() if key != "page[cursor]"}
        params["page[cursor]"] = cursor
        return f"{collection_url}?{urlencode(params)}"

    return {
        "data": [profile_resource(profile, collection_url=collection_url) for profile in page.profiles],
        "links": {"self": self_url, "next": link(page.next_cursor), "prev": link(page.prev_cursor)},
    }


def accounts_document(account: SandboxAccount, *, collection_url: str, self_url: str) -> dict[str, Any]:
    address = account.address
    return {
        "data": [
            {
                "type": "account",
                "id": account.id,
                "attributes": {
                    "test_account": True,
                    "contact_information": {
                        "default_sender_name": account.organization_name,
                        "default_sender_email": account.sender_email,
                        "website_url": account.website_url,
                        "organization_name": account.organization_name,
                        "street_address": {
                            "address1": address.address1,
                            "address2": address.address2,
                            "city": address.city,
                            "region": address.region,
                            "country": address.country,
                            "zip": address.zip,
                        },
                    },
                    "industry": account.industry,
                    "timezone": account.timezone,
                    "preferred_currency": account.preferred_currency,
                    "public_api_key": account.id,
                    "locale": account.locale,
                },
                "links": {"self": f"{collection_url}/{account.id}/"},
            }
        ],
        "links": {"self": self_url, "next": None, "prev": None},
    }
