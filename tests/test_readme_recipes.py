"""The README's recipes (orders, upserts, the official SDK, nightly walks, consent), run against the sandbox
on the live server, in the README's order and in one namespace, as a reader would paste them."""

import re
from pathlib import Path

import pytest

from klaviyo_sandbox import counters
from klaviyo_sandbox.accounts import profiles_of
from oauth_integration import services

pytest_plugins = ["oauth_integration.testing"]
pytestmark = pytest.mark.django_db(transaction=True)

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "### Recipes: orders, upserts, the official SDK, nightly walks, consent"
NORTHWIND = "SbxN7w"


def recipes():
    text = README.read_text()
    start = text.index(SECTION)
    section = text[start : text.index("\n### ", start + 1)]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


@pytest.fixture
def customer(klaviyo_sandbox, settings, caplog):
    settings.KLAVIYO_SCOPES = (
        "accounts:read profiles:read profiles:write events:read events:write metrics:read "
        "lists:read lists:write subscriptions:write"
    )
    klaviyo_sandbox.connect("cust-42", account="northwind")
    yield "cust-42"
    caplog.get_records("call").clear()


def metric_events(customer):
    (metric,) = services.call_klaviyo(customer_identifier=customer, path="/api/metrics")["data"]
    assert metric["attributes"]["name"] == "Placed Order"
    params = {"filter": f'equals(metric_id,"{metric["id"]}")'}
    return list(services.iter_klaviyo(customer_identifier=customer, path="/api/events", params=params))


def test_there_are_five_recipes():
    assert len(recipes()) == 5


def test_the_recipes_run_one_after_the_other(customer, capsys, settings):
    # An earlier "grace@example.com", so that the upsert takes its 409 branch and updates her.
    services.call_klaviyo(
        customer_identifier=customer,
        path="/api/profiles",
        method="POST",
        json={"data": {"type": "profile", "attributes": {"email": "grace@example.com", "first_name": "G."}}},
    )
    order, upsert, sdk, nightly, consent = recipes()
    namespace = {}

    exec(compile(order, "README.md", "exec"), namespace)  # noqa: S102
    (event,) = metric_events(customer)
    assert event["attributes"]["event_properties"]["$value"] == 59.5
    assert event["attributes"]["event_properties"]["ItemNames"] == ["Red T-shirt", "Cap"]

    exec(compile(upsert, "README.md", "exec"), namespace)  # noqa: S102
    assert capsys.readouterr().out == "Grace\n"
    found = services.call_klaviyo(
        customer_identifier=customer, path="/api/profiles", params={"filter": 'equals(email,"grace@example.com")'}
    )["data"]
    assert [(p["attributes"]["first_name"], p["attributes"]["properties"]) for p in found] == [
        ("Grace", {"plan": "pro"})
    ]

    exec(compile(sdk, "README.md", "exec"), namespace)  # noqa: S102
    assert capsys.readouterr().out == "Northwind Outfitters\n"
    assert len(metric_events(customer)) == 1  # sent twice, kept once (unique_id)
    assert sorted(namespace["emails"]) == sorted(
        [seed.email for seed in profiles_of(NORTHWIND)] + ["ada@example.com", "grace@example.com"]
    )

    exec(compile(nightly, "README.md", "exec"), namespace)  # noqa: S102
    everyone = services.call_klaviyo(customer_identifier=customer, path="/api/profiles", params={"page[size]": "100"})
    expected = sorted(profile["id"] for profile in everyone["data"])
    handled, runs = [], 0
    counters.reset()
    while True:
        runs += 1
        namespace["nightly_sync"](customer, lambda profile: handled.append(profile["id"]), pages_per_run=3, page_size=7)
        if len(handled) >= len(expected):
            break
    assert sorted(handled) == expected  # every profile exactly once, across runs
    assert runs == -(-len(expected) // 21)
    assert counters.counts().api_requests == -(-len(expected) // 7)
    namespace["nightly_sync"](customer, lambda profile: handled.append(profile["id"]), pages_per_run=1, page_size=7)
    assert handled[-7:] == sorted(expected, key=handled.index)[:7]  # a finished walk starts again at page 1

    settings.KLAVIYO_SANDBOX_JOB_DELAY = 0
    exec(compile(consent, "README.md", "exec"), namespace)  # noqa: S102
    members = services.call_klaviyo(
        customer_identifier=customer,
        path=f"/api/lists/{namespace['newsletter']}/profiles",
        params={"additional-fields[profile]": "subscriptions"},
    )["data"]
    assert [member["attributes"]["email"] for member in members] == ["ada@example.com"]
    marketing = members[0]["attributes"]["subscriptions"]["email"]["marketing"]
    assert (marketing["consent"], marketing["can_receive_email_marketing"]) == ("SUBSCRIBED", True)
