"""Jobs the sandbox carries out: profile imports (with their lists), event bulk creates, data-privacy deletions."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from klaviyo_sandbox.bodies import Data
from klaviyo_sandbox.exceptions import APIError, invalid
from klaviyo_sandbox.models import ListMembership, Profile, ProfileList
from klaviyo_sandbox.store import events, profiles
from klaviyo_sandbox.store.bulk import Outcome


def import_profiles(*, account_id: str, body: dict[str, Any]) -> Outcome:
    """Upsert each profile as ``POST /profile-import`` does (by id, email, phone number or external id) and
    add them to the job's lists. An unknown list is a 400 and imports nothing; a profile Klaviyo would refuse
    (a bad email, no identifier) is left out and becomes one of the job's import errors, as in Klaviyo."""
    data = body["data"]
    wanted = [item.get("id") for item in ((data.get("relationships") or {}).get("lists") or {}).get("data") or []]
    found = {row.pk: row for row in ProfileList.objects.filter(account_id=account_id, pk__in=wanted)}
    for index, list_id in enumerate(wanted):
        if list_id not in found:
            pointer = f"/data/relationships/lists/data/{index}/id"
            raise invalid(f"A list with id {list_id} does not exist.", pointer=pointer)
    now = timezone.now()
    outcome = Outcome()
    imported: list[dict[str, str]] = []
    with transaction.atomic():
        for index, item in enumerate(data["attributes"]["profiles"]["data"]):
            entry = Data(
                id=item.get("id"),
                attributes=item.get("attributes") or {},
                meta=item.get("meta") or {},
                pointer=f"/data/attributes/profiles/data/{index}",
            )
            try:
                with transaction.atomic():
                    row, _ = profiles.upsert(account_id, entry)
            except APIError as exc:
                outcome.errors.append(
                    {
                        "code": exc.code,
                        "title": exc.title,
                        "detail": exc.detail,
                        "source": exc.source,
                        "original_payload": item,
                    }
                )
                continue
            imported.append({"type": "profile", "id": row.pk})
            for list_id in wanted:
                ListMembership.objects.get_or_create(
                    profile_list=found[list_id], profile=row, defaults={"joined_at": now}
                )
    outcome.relationships["profiles"] = imported
    return outcome


def create_events(*, account_id: str, body: dict[str, Any]) -> None:
    """Record every event of an event bulk create job as ``POST /events`` does (its metric by name, its
    profile created or updated). All or nothing: a 400 pointing at the bad member records nothing."""
    entries = body["data"]["attributes"]["events-bulk-create"]["data"]
    with transaction.atomic():
        for index, entry in enumerate(entries):
            attributes = entry.get("attributes") or {}
            at = f"/data/attributes/events-bulk-create/data/{index}/attributes"
            for position, event in enumerate((attributes.get("events") or {}).get("data") or []):
                single = {
                    "data": {
                        "type": "event",
                        "attributes": {**(event.get("attributes") or {}), "profile": attributes.get("profile")},
                    }
                }
                try:
                    events.create(account_id, single)
                except APIError as exc:
                    pointer = exc.source.get("pointer", "")
                    if pointer.startswith("/data/attributes/profile"):
                        exc.source["pointer"] = at + pointer.removeprefix("/data/attributes")
                    else:
                        exc.source["pointer"] = f"{at}/events/data/{position}" + pointer.removeprefix("/data")
                    raise


def delete_profile_data(*, account_id: str, body: dict[str, Any]) -> None:
    """A data-privacy deletion job: the profile with the id, email or phone number given is deleted with its
    events and list memberships (none found: nothing to delete, as Klaviyo accepts the job all the same)."""
    data = body["data"]["attributes"]["profile"]["data"]
    attributes = data.get("attributes") or {}
    identifiers = {
        "pk": data.get("id"),
        "email": attributes.get("email"),
        "phone_number": attributes.get("phone_number"),
    }
    given = {name: value for name, value in identifiers.items() if value is not None}
    if not given:
        detail = "The profile needs an id, an email or a phone_number."
        raise invalid(detail, pointer="/data/attributes/profile/data/attributes")
    name, value = next(iter(given.items()))
    Profile.objects.filter(account_id=account_id, **{name: value}).delete()
