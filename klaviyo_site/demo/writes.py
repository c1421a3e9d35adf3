"""A write and its read back, as a host product does them: add a profile to a list, list the members.

Nothing here but ``services.call_klaviyo`` and ``services.iter_klaviyo``; the integration
handles the token, its refresh and the retries. Each call is noted as a ``Step``, so that
the page can show what was sent and what came back, also when a later call fails.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from django.utils.dateparse import parse_datetime

from oauth_integration import services
from oauth_integration.exceptions import KlaviyoAPIError, KlaviyoUnavailable

# What the four calls below need (Klaviyo's scopes per endpoint, see oauth_integration/operations.py).
NEEDED_SCOPES = ("profiles:read", "profiles:write", "lists:read", "lists:write")
MEMBERS_SHOWN = 50


@dataclass(frozen=True, slots=True)
class Step:
    """One call to Klaviyo and what came of it."""

    method: str
    path: str
    outcome: str


@dataclass(frozen=True, slots=True)
class Member:
    """A profile in the list."""

    profile_id: str
    email: str
    joined: datetime | None


@dataclass(frozen=True, slots=True)
class Added:
    """The write's result and the list read back."""

    email: str
    list_name: str
    profile_id: str
    profile_created: bool
    list_id: str
    list_created: bool
    members: tuple[Member, ...]
    more_members: bool  # the list has more than MEMBERS_SHOWN members


@dataclass(slots=True)
class ListWrite:
    """Add one profile to one list for one customer; ``steps`` and ``current`` tell how far it got."""

    customer_identifier: str
    steps: list[Step] = field(default_factory=list)
    current: str = ""  # the call under way: the one that failed when an exception escapes

    def add_to_list(self, *, email: str, list_name: str) -> Added:
        """Find or create the profile and the list, add the profile, then read the members back."""
        profile_id, profile_created = self.find_or_create_profile(email)
        list_id, list_created = self.find_or_create_list(list_name)
        self.add_profile(list_id, profile_id)
        members, more = self.members(list_id)
        return Added(email, list_name, profile_id, profile_created, list_id, list_created, members, more)

    def find_or_create_profile(self, email: str) -> tuple[str, bool]:
        """The profile with this e-mail address: created (201), or the one Klaviyo already has (409)."""
        body = {"data": {"type": "profile", "attributes": {"email": email}}}
        try:
            profile_id = _id_of(self._call("POST", "/api/profiles", json=body))
        except KlaviyoAPIError as exc:
            if exc.status != 409 or not exc.duplicate_profile_id:
                raise
            self._note(f"409 duplicate_profile: profile {exc.duplicate_profile_id} already has this address")
            return exc.duplicate_profile_id, False
        self._note(f"201 Created: profile {profile_id}")
        return profile_id, True

    def find_or_create_list(self, name: str) -> tuple[str, bool]:
        """The first list with this exact name, or a new one (Klaviyo allows several with one name)."""
        found = self._call("GET", "/api/lists", params={"filter": f'equals(name,"{name}")', "fields[list]": "name"})
        data = (found or {}).get("data")
        if isinstance(data, list) and data:
            list_id = _id_of({"data": data[0]})
            self._note(f"200 OK: list {list_id} is called {name!r}")
            return list_id, False
        self._note(f"200 OK: no list is called {name!r}")
        created = self._call("POST", "/api/lists", json={"data": {"type": "list", "attributes": {"name": name}}})
        list_id = _id_of(created)
        self._note(f"201 Created: list {list_id}")
        return list_id, True

    def add_profile(self, list_id: str, profile_id: str) -> None:
        """Add the profile to the list (204; adding a member again changes nothing)."""
        body = {"data": [{"type": "profile", "id": profile_id}]}
        self._call("POST", f"/api/lists/{quote(list_id, safe='')}/relationships/profiles", json=body)
        self._note(f"204 No Content: profile {profile_id} is in list {list_id}")

    def members(self, list_id: str) -> tuple[tuple[Member, ...], bool]:
        """The list's first MEMBERS_SHOWN members, every page followed; True when there are more."""
        path = f"/api/lists/{quote(list_id, safe='')}/profiles"
        self.current = f"GET {path}"
        params = {"fields[profile]": "email,joined_group_at", "page[size]": "100"}
        walk = services.iter_klaviyo(customer_identifier=self.customer_identifier, path=path, params=params)
        rows = [_member(resource) for resource in itertools.islice(walk, MEMBERS_SHOWN + 1)]
        self._note(f"200 OK: {len(rows) if len(rows) <= MEMBERS_SHOWN else f'over {MEMBERS_SHOWN}'} members")
        return tuple(rows[:MEMBERS_SHOWN]), len(rows) > MEMBERS_SHOWN

    def _call(
        self, method: str, path: str, *, params: dict[str, str] | None = None, json: Any = None
    ) -> dict[str, Any] | None:
        shown = f"{path}?{'&'.join(f'{k}={v}' for k, v in params.items())}" if params else path
        self.current = f"{method} {shown}"
        return services.call_klaviyo(
            customer_identifier=self.customer_identifier, path=path, method=method, params=params, json=json
        )

    def _note(self, outcome: str) -> None:
        method, _, path = self.current.partition(" ")
        self.steps.append(Step(method, path, outcome))


def _id_of(body: dict[str, Any] | None) -> str:
    """``data.id`` of a JSON:API document; a body without one is an unusable answer."""
    data = (body or {}).get("data")
    resource_id = data.get("id") if isinstance(data, dict) else None
    if not isinstance(resource_id, str) or not resource_id:
        raise KlaviyoUnavailable("Klaviyo answered without the resource's id")
    return resource_id


def _member(resource: dict[str, Any]) -> Member:
    attributes = resource.get("attributes") if isinstance(resource.get("attributes"), dict) else {}
    return Member(
        profile_id=str(resource.get("id") or ""),
        email=str(attributes.get("email") or ""),
        joined=parse_datetime(str(attributes.get("joined_group_at") or "")),
    )
