"""The sandbox's Klaviyo accounts and their profiles: fixed, deterministic fake data.

Pure functions over constants: no Django, no I/O. Every account always has the same
profiles (same ids, names and dates), and no two accounts share a profile.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

# Crockford's base32, as used by ULIDs (Klaviyo's profile ids are 26-character ULIDs).
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


@dataclass(frozen=True, slots=True)
class Address:
    address1: str
    address2: str | None
    city: str
    region: str | None
    country: str
    zip: str


@dataclass(frozen=True, slots=True)
class SandboxAccount:
    """One fake Klaviyo account (its id looks like a Klaviyo public API key)."""

    id: str
    organization_name: str
    sender_email: str
    website_url: str
    address: Address
    industry: str
    timezone: str
    preferred_currency: str
    locale: str
    email_domain: str
    profile_count: int
    founded: datetime


@dataclass(frozen=True, slots=True)
class SandboxProfile:
    id: str
    email: str
    phone_number: str | None
    external_id: str | None
    first_name: str
    last_name: str
    organization: str | None
    locale: str
    title: str | None
    created: datetime
    updated: datetime
    last_event_date: datetime | None
    location: dict[str, Any] = field(hash=False)
    properties: dict[str, Any] = field(hash=False)


ACCOUNTS: tuple[SandboxAccount, ...] = (
    SandboxAccount(
        id="SbxN7w",
        organization_name="Northwind Outfitters",
        sender_email="hello@northwind-outfitters.example",
        website_url="https://northwind-outfitters.example",
        address=Address("114 Harbor Street", None, "Portland", "Oregon", "United States", "97204"),
        industry="Apparel & Accessories",
        timezone="America/Los_Angeles",
        preferred_currency="USD",
        locale="en-US",
        email_domain="northwind-outfitters.example",
        profile_count=57,
        founded=datetime(2023, 2, 6, 9, 30, tzinfo=UTC),
    ),
    SandboxAccount(
        id="SbxB4k",
        organization_name="Bluebell Bakery",
        sender_email="orders@bluebell-bakery.example",
        website_url="https://bluebell-bakery.example",
        address=Address("8 Mill Lane", "Unit 2", "York", None, "United Kingdom", "YO1 7HH"),
        industry="Food & Beverage",
        timezone="Europe/London",
        preferred_currency="GBP",
        locale="en-GB",
        email_domain="bluebell-bakery.example",
        profile_count=43,
        founded=datetime(2023, 8, 21, 14, 0, tzinfo=UTC),
    ),
    SandboxAccount(
        id="SbxJ2q",
        organization_name="Juniper & Co. Home",
        sender_email="team@juniper-home.example",
        website_url="https://juniper-home.example",
        address=Address("Keizersgracht 221", None, "Amsterdam", "North Holland", "Netherlands", "1016 DV"),
        industry="Home & Garden",
        timezone="Europe/Amsterdam",
        preferred_currency="EUR",
        locale="nl-NL",
        email_domain="juniper-home.example",
        profile_count=24,
        founded=datetime(2024, 1, 15, 8, 15, tzinfo=UTC),
    ),
)

_FIRST_NAMES = (
    "Ada", "Amara", "Ben", "Carmen", "Dmitri", "Elif", "Farah", "Gustav", "Hana", "Ines", "Jonas", "Kofi",
    "Lena", "Mateo", "Noor", "Olga", "Pavel", "Quinn", "Rosa", "Sanjay", "Tomas", "Uma", "Viktor", "Wen",
    "Ximena", "Yusuf", "Zoe",
)  # fmt: skip
_LAST_NAMES = (
    "Andersen", "Baptiste", "Castillo", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ishikawa",
    "Jansen", "Kowalski", "Lindqvist", "Moreau", "Nakamura", "Okafor", "Petrov", "Quiroga", "Rossi",
    "Schmidt", "Tanaka", "Umarov", "Varga", "Walsh", "Xu", "Yilmaz", "Zielinski",
)  # fmt: skip
_TITLES = (None, None, "Owner", "Buyer", "Marketing Manager", "Designer", "Engineer", "Teacher", "Nurse")
_ORGANIZATIONS = (None, None, None, "Acme Corp", "Globex", "Initech", "Umbrella Studio", "Stark Goods")
_CITIES = (
    ("Portland", "Oregon", "United States", "97205", "America/Los_Angeles", 45.52, -122.68),
    ("Austin", "Texas", "United States", "78701", "America/Chicago", 30.27, -97.74),
    ("Toronto", "Ontario", "Canada", "M5H 2N2", "America/Toronto", 43.65, -79.38),
    ("Manchester", None, "United Kingdom", "M1 1AE", "Europe/London", 53.48, -2.24),
    ("Utrecht", "Utrecht", "Netherlands", "3511 AX", "Europe/Amsterdam", 52.09, 5.12),
    ("Lyon", None, "France", "69002", "Europe/Paris", 45.76, 4.84),
    ("Munich", "Bavaria", "Germany", "80331", "Europe/Berlin", 48.14, 11.58),
    ("Melbourne", "Victoria", "Australia", "3000", "Australia/Melbourne", -37.81, 144.96),
)
_STREETS = ("Maple Avenue", "Station Road", "Elm Street", "Canal Walk", "Market Square", "Oak Lane")


def get_account(account_id: str) -> SandboxAccount | None:
    """The account with this id, or None."""
    return next((account for account in ACCOUNTS if account.id == account_id), None)


def ulid(moment: datetime, rng: random.Random) -> str:
    """A ULID: 48-bit millisecond timestamp and 80 random bits, in Crockford base32 (26 chars)."""
    value = (int(moment.timestamp() * 1000) << 80) | rng.getrandbits(80)
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


@functools.cache
def profiles_of(account_id: str) -> tuple[SandboxProfile, ...]:
    """The account's profiles, oldest first (so also sorted by id). Empty for an unknown account."""
    account = get_account(account_id)
    if account is None:
        return ()
    # A seeded generator makes fake data that is the same on every run (not cryptography).
    rng = random.Random(f"klaviyo-sandbox:{account.id}")  # noqa: S311
    profiles = []
    created = account.founded
    for number in range(1, account.profile_count + 1):
        created += timedelta(hours=rng.randint(5, 400), minutes=rng.randint(0, 59), seconds=rng.randint(0, 59))
        first = rng.choice(_FIRST_NAMES)
        last = rng.choice(_LAST_NAMES)
        city, region, country, zip_code, tz, lat, lon = rng.choice(_CITIES)
        updated = created + timedelta(days=rng.randint(0, 90), minutes=rng.randint(0, 600))
        has_events = rng.random() < 0.8
        profiles.append(
            SandboxProfile(
                id=ulid(created, rng),
                email=f"{first}.{last}.{number}@{account.email_domain}".lower(),
                phone_number=f"+1{rng.randint(201, 989)}555{rng.randint(100, 199):04d}" if rng.random() < 0.6 else None,
                external_id=f"{account.id.lower()}-cust-{number:04d}" if rng.random() < 0.5 else None,
                first_name=first,
                last_name=last,
                organization=rng.choice(_ORGANIZATIONS),
                locale=account.locale,
                title=rng.choice(_TITLES),
                created=created,
                updated=updated,
                last_event_date=updated + timedelta(hours=rng.randint(1, 500)) if has_events else None,
                location={
                    "address1": f"{rng.randint(1, 250)} {rng.choice(_STREETS)}",
                    "address2": None,
                    "city": city,
                    "country": country,
                    "latitude": f"{lat + rng.uniform(-0.05, 0.05):.4f}",
                    "longitude": f"{lon + rng.uniform(-0.05, 0.05):.4f}",
                    "region": region,
                    "zip": zip_code,
                    "timezone": tz,
                    "ip": f"203.0.113.{rng.randint(1, 254)}",
                },
                properties={
                    "sandbox_customer_number": number,
                    "favorite_category": rng.choice(("new arrivals", "sale", "gift cards", "bestsellers")),
                    "accepts_marketing": rng.random() < 0.7,
                },
            )
        )
    return tuple(profiles)
