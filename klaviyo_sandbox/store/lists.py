"""Lists: pages, create, rename, delete, and the profiles in a list (add, remove, page through)."""

from __future__ import annotations

from django.db.models import F
from django.utils import timezone

from klaviyo_sandbox import ids
from klaviyo_sandbox.bodies import Data, Unset, text
from klaviyo_sandbox.exceptions import invalid
from klaviyo_sandbox.filters import DATETIME, STRING, Field, field
from klaviyo_sandbox.models import ListMembership, Profile, ProfileList
from klaviyo_sandbox.pagination import Ordering, Page, Selection, paginate
from klaviyo_sandbox.params import Listing
from klaviyo_sandbox.store import by_code_point, owned

FILTERS: dict[str, Field] = {
    "name": field("name", STRING, "equals", "any"),
    "id": field("id", STRING, "equals", "any"),
    "created": field("created", DATETIME, "greater-than"),
    "updated": field("updated", DATETIME, "greater-than"),
}
ORDERINGS = (
    Ordering("id", "sort_id"),
    Ordering("name", "sort_name"),
    Ordering("created", "created", temporal=True),
    Ordering("updated", "updated", temporal=True),
)
MEMBER_FILTERS: dict[str, Field] = {
    "email": field("profile__email", STRING, "equals", "any"),
    "phone_number": field("profile__phone_number", STRING, "equals", "any"),
    "joined_group_at": field("joined_at", DATETIME, "greater-or-equal", "greater-than", "less-or-equal", "less-than"),
}
LISTING = Listing("list", FILTERS, ORDERINGS, default_sort="id", page_size=10, max_page_size=10)
MEMBER_ORDERINGS = (Ordering("joined_group_at", "joined_at", temporal=True),)
MEMBERS = Listing("profile", MEMBER_FILTERS, MEMBER_ORDERINGS, "joined_group_at", page_size=20, max_page_size=100)
OPT_IN_PROCESSES = tuple(ProfileList.OptIn.values)


def page(account_id: str, selection: Selection) -> Page:
    lists = ProfileList.objects.filter(account_id=account_id).annotate(
        sort_id=by_code_point(F("id")), sort_name=by_code_point(F("name"))
    )
    return paginate(lists, selection)


def get(account_id: str, list_id: str) -> ProfileList:
    return owned(ProfileList, account_id, list_id)


def profile_count(row: ProfileList) -> int:
    return row.memberships.count()


def _opt_in(data: Data) -> str | None:
    value = text(data, "opt_in_process")
    if isinstance(value, Unset) or value is None:
        return None
    if value not in OPT_IN_PROCESSES:
        allowed = " or ".join(OPT_IN_PROCESSES)
        raise invalid(f"opt_in_process must be {allowed}.", pointer="/data/attributes/opt_in_process")
    return value


def create(account_id: str, data: Data) -> ProfileList:
    name = text(data, "name", required=True)
    now = timezone.now()
    return ProfileList.objects.create(
        id=ids.short_id(),
        account_id=account_id,
        name=str(name).strip(),
        opt_in_process=_opt_in(data) or ProfileList.OptIn.SINGLE,
        created=now,
        updated=now,
    )


def update(account_id: str, list_id: str, data: Data) -> ProfileList:
    if data.id != list_id:
        raise invalid("/data/id must be the id in the URL.", pointer="/data/id")
    row = get(account_id, list_id)
    name = text(data, "name", nullable=False)
    opt_in = _opt_in(data)
    if isinstance(name, str):
        if not name.strip():
            raise invalid("name must be a non-empty string.", pointer="/data/attributes/name")
        row.name = name.strip()
    if opt_in is not None:
        row.opt_in_process = opt_in
    row.updated = timezone.now()
    row.save()
    return row


def delete(account_id: str, list_id: str) -> None:
    get(account_id, list_id).delete()


def members(account_id: str, list_id: str, selection: Selection) -> Page:
    """The selected page of the list's memberships, each with its profile."""
    row = get(account_id, list_id)
    return paginate(row.memberships.select_related("profile"), selection)


def _profiles(account_id: str, profile_ids: list[str]) -> list[str]:
    known = set(Profile.objects.filter(account_id=account_id, pk__in=profile_ids).values_list("pk", flat=True))
    for index, profile_id in enumerate(profile_ids):
        if profile_id not in known:
            raise invalid(f"A profile with id {profile_id} does not exist.", pointer=f"/data/{index}/id")
    return profile_ids


def add(account_id: str, list_id: str, profile_ids: list[str]) -> None:
    """Add the profiles to the list; those already in it keep their joining time."""
    row = get(account_id, list_id)
    now = timezone.now()
    ListMembership.objects.bulk_create(
        [ListMembership(profile_list=row, profile_id=pid, joined_at=now) for pid in _profiles(account_id, profile_ids)],
        ignore_conflicts=True,
    )


def remove(account_id: str, list_id: str, profile_ids: list[str]) -> None:
    """Take the profiles out of the list (those not in it are ignored)."""
    row = get(account_id, list_id)
    ListMembership.objects.filter(profile_list=row, profile_id__in=_profiles(account_id, profile_ids)).delete()
