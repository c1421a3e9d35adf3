"""Profile bulk import jobs: every profile of the job created or updated, and added to the job's lists."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from klaviyo_sandbox.bodies import Data
from klaviyo_sandbox.exceptions import invalid
from klaviyo_sandbox.models import ListMembership, ProfileList
from klaviyo_sandbox.store import profiles


def import_profiles(*, account_id: str, body: dict[str, Any]) -> None:
    """Upsert each profile as ``POST /profile-import`` does (by id, email, phone number or external id) and
    add them to the job's lists. All or nothing: a 400 pointing at the bad member changes nothing."""
    data = body["data"]
    wanted = [item.get("id") for item in ((data.get("relationships") or {}).get("lists") or {}).get("data") or []]
    found = {row.pk: row for row in ProfileList.objects.filter(account_id=account_id, pk__in=wanted)}
    for index, list_id in enumerate(wanted):
        if list_id not in found:
            pointer = f"/data/relationships/lists/data/{index}/id"
            raise invalid(f"A list with id {list_id} does not exist.", pointer=pointer)
    now = timezone.now()
    with transaction.atomic():
        for index, item in enumerate(data["attributes"]["profiles"]["data"]):
            entry = Data(
                id=item.get("id"),
                attributes=item.get("attributes") or {},
                meta=item.get("meta") or {},
                pointer=f"/data/attributes/profiles/data/{index}",
            )
            row, _ = profiles.upsert(account_id, entry)
            for list_id in wanted:
                ListMembership.objects.get_or_create(
                    profile_list=found[list_id], profile=row, defaults={"joined_at": now}
                )
