"""Each resource type as Klaviyo shapes it: attributes, relationships, links, and the sparse fields it allows."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from klaviyo_sandbox.accounts import ACCOUNTS, SandboxAccount
from klaviyo_sandbox.jsonapi import resource, timestamp
from klaviyo_sandbox.models import Consent, Event, Metric, Profile, ProfileList

LOCATION_KEYS = ("address1", "address2", "city", "country", "latitude", "longitude", "region", "zip", "timezone", "ip")
PROFILE_ATTRIBUTES = (
    "email", "phone_number", "external_id", "first_name", "last_name", "organization", "locale", "title", "image",
    "created", "updated", "last_event_date", "location", "properties",
)  # fmt: skip
ADDITIONAL_PROFILE_FIELDS = ("subscriptions", "predictive_analytics")
PREDICTIVE_ANALYTICS = (
    "historic_clv", "predicted_clv", "total_clv", "historic_number_of_orders", "predicted_number_of_orders",
    "average_days_between_orders", "average_order_value", "churn_probability", "expected_date_of_next_order",
    "ranked_channel_affinity",
)  # fmt: skip
PROFILE_RELATIONSHIPS = ("lists", "segments", "push-tokens", "conversations")
LIST_RELATIONSHIPS = ("profiles", "tags", "flow-triggers")
LIST_FIELDS = ("id", "name", "created", "updated", "opt_in_process")
METRIC_FIELDS = ("id", "name", "created", "updated", "integration")
EVENT_FIELDS = ("id", "timestamp", "event_properties", "datetime", "uuid")
# Klaviyo's own integration, which every metric created through the API belongs to.
API_INTEGRATION = {"object": "integration", "id": "7FtS4J", "key": "api", "name": "API", "category": "API"}


def _tracking() -> dict[str, Any]:
    return {
        "consent": Consent.NEVER_SUBSCRIBED.value,
        "consent_timestamp": None,
        "last_updated": None,
        "created_timestamp": None,
        "metadata": None,
        "can_receive": False,
        "valid_until": None,
    }


def _consent(consent: str, at: datetime | None) -> dict[str, Any]:
    subscribed = consent == Consent.SUBSCRIBED
    return {
        "consent": consent,
        "consent_timestamp": timestamp(at),
        "method": "API" if subscribed else None,
        "method_detail": None,
        "last_updated": timestamp(at),
    }


def subscriptions(profile: Profile) -> dict[str, Any]:
    """The profile's consent per channel, as ``additional-fields[profile]=subscriptions`` shows it."""
    email = _consent(profile.email_consent, profile.email_consent_at)
    sms = _consent(profile.sms_consent, profile.sms_consent_at)
    never = _consent(Consent.NEVER_SUBSCRIBED, None)
    return {
        "email": {
            "marketing": {
                "can_receive_email_marketing": profile.email is not None and email["consent"] == Consent.SUBSCRIBED,
                **email,
                "custom_method_detail": None,
                "double_optin": None,
                "suppression": [],
                "list_suppressions": [],
            },
            "open_tracking": _tracking(),
            "click_tracking": _tracking(),
        },
        "sms": {
            "marketing": {
                "can_receive_sms_marketing": profile.phone_number is not None and sms["consent"] == Consent.SUBSCRIBED,
                **sms,
            },
            "transactional": {"can_receive_sms_transactional": False, **never},
        },
        "mobile_push": {
            "marketing": {"can_receive_push_marketing": False, "consent": never["consent"], "consent_timestamp": None}
        },
        "whatsapp": None,
    }


def _paths(value: dict[str, Any], prefix: str = "") -> list[str]:
    found = []
    for key, inner in value.items():
        found.append(f"{prefix}{key}")
        if isinstance(inner, dict):
            found += _paths(inner, f"{prefix}{key}.")
    return found


@functools.cache
def profile_fields() -> frozenset[str]:
    """Every name ``fields[profile]`` accepts: attributes, and dotted paths into the nested ones."""
    example = subscriptions(Profile(email_consent=Consent.SUBSCRIBED))
    return frozenset(
        [
            "id",
            *PROFILE_ATTRIBUTES,
            *ADDITIONAL_PROFILE_FIELDS,
            *(f"location.{key}" for key in LOCATION_KEYS),
            *(f"predictive_analytics.{key}" for key in PREDICTIVE_ANALYTICS),
            *_paths(example, "subscriptions."),
        ]
    )


def profile(
    row: Profile,
    *,
    api_root: str,
    additional: Iterable[str] = (),
    fields: Iterable[str] | None = None,
    joined_at: datetime | None = None,
) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "email": row.email,
        "phone_number": row.phone_number,
        "external_id": row.external_id,
        "first_name": row.first_name,
        "last_name": row.last_name,
        "organization": row.organization,
        "locale": row.locale,
        "title": row.title,
        "image": row.image,
        "created": timestamp(row.created),
        "updated": timestamp(row.updated),
        "last_event_date": timestamp(row.last_event_date),
        "location": dict(row.location),
        "properties": dict(row.properties),
    }
    if "subscriptions" in additional:
        attributes["subscriptions"] = subscriptions(row)
    if "predictive_analytics" in additional:
        attributes["predictive_analytics"] = dict.fromkeys(PREDICTIVE_ANALYTICS)
    if joined_at is not None:
        attributes["joined_group_at"] = timestamp(joined_at)
    return resource("profile", row.id, attributes, fields, api_root=api_root, relationships=PROFILE_RELATIONSHIPS)


def profile_list(
    row: ProfileList, *, api_root: str, fields: Iterable[str] | None = None, profile_count: int | None = None
) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "name": row.name,
        "created": timestamp(row.created),
        "updated": timestamp(row.updated),
        "opt_in_process": row.opt_in_process,
    }
    if profile_count is not None:
        attributes["profile_count"] = profile_count
    return resource("list", row.id, attributes, fields, api_root=api_root, relationships=LIST_RELATIONSHIPS)


def metric(row: Metric, *, api_root: str, fields: Iterable[str] | None = None) -> dict[str, Any]:
    integration = {**API_INTEGRATION, "name": row.integration_name, "category": row.integration_category}
    attributes = {
        "name": row.name,
        "created": timestamp(row.created.replace(microsecond=0)),
        "updated": timestamp(row.updated.replace(microsecond=0)),
        "integration": integration,
    }
    return resource("metric", row.id, attributes, fields, api_root=api_root, relationships=("flow-triggers",))


def event(row: Event, *, api_root: str, fields: Iterable[str] | None = None) -> dict[str, Any]:
    attributes = {
        "timestamp": int(row.datetime.timestamp()),
        "event_properties": dict(row.properties),
        "datetime": timestamp(row.datetime.replace(microsecond=0)),
        "uuid": row.uuid,
    }
    related = {
        "profile": {"type": "profile", "id": row.profile_id},
        "metric": {"type": "metric", "id": row.metric_id},
    }
    return resource("event", row.id, attributes, fields, api_root=api_root, relationships=related)


def account(row: SandboxAccount, *, api_root: str, fields: Iterable[str] | None = None) -> dict[str, Any]:
    return resource("account", row.id, _account_attributes(row), fields, api_root=api_root)


@functools.cache
def account_fields() -> frozenset[str]:
    """Every name ``fields[account]`` accepts."""
    return frozenset(("id", *_paths(_account_attributes(ACCOUNTS[0]))))


def _account_attributes(row: SandboxAccount) -> dict[str, Any]:
    address = row.address
    return {
        "test_account": True,
        "contact_information": {
            "default_sender_name": row.organization_name,
            "default_sender_email": row.sender_email,
            "website_url": row.website_url,
            "organization_name": row.organization_name,
            "street_address": {
                "address1": address.address1,
                "address2": address.address2,
                "city": address.city,
                "region": address.region,
                "country": address.country,
                "zip": address.zip,
            },
        },
        "industry": row.industry,
        "timezone": row.timezone,
        "preferred_currency": row.preferred_currency,
        "public_api_key": row.id,
        "locale": row.locale,
    }
