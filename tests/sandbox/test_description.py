"""Klaviyo's OpenAPI description as package data: read lazily once, replaced only by a usable one."""

import json
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from klaviyo_sandbox import description
from klaviyo_sandbox.ratelimit import Tier


def test_the_shipped_description_is_revision_2026_07_15_with_345_operations_and_its_licence():
    assert description.version() == "2026-07-15"
    assert len(description.operations()) == 345
    assert len(description.by_id()) == 345
    licence = (description.DESCRIPTION_PATH.parent / "LICENSE").read_text()
    assert licence.startswith("MIT License") and "Klaviyo" in licence


def test_importing_the_sandbox_does_not_parse_the_description():
    code = (
        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'klaviyo_site.settings'); django.setup();"
        "import klaviyo_sandbox.urls, klaviyo_sandbox.description as d; print(d.document.cache_info().currsize)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={
        "DEBUG": "true", "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert done.stdout.strip() == "0"


def test_routes_scopes_and_tiers_come_from_the_description():
    operations, args = description.route("api/profiles/01HXYZ/relationships/lists/")
    assert [operation.id for operation in operations] == ["get_list_ids_for_profile"]
    assert args == {"id": "01HXYZ"}
    create_list = description.by_id()["create_list"]
    assert (create_list.method, create_list.template, create_list.scopes) == ("POST", "/api/lists", ("lists:write",))
    assert create_list.tier == Tier(10, 150, daily=150)
    assert description.route("api/no-such-thing") == ([], {})


def test_a_literal_path_wins_over_a_template_and_conditional_tiers_are_read():
    operations, _ = description.route("api/profile-bulk-import-jobs")
    assert {operation.id for operation in operations} == {"bulk_import_profiles", "get_bulk_import_profiles_jobs"}
    get_profiles = description.by_id()["get_profiles"]
    assert get_profiles.tier_for({}) == ("get_profiles", Tier(75, 750))
    assert get_profiles.tier_for({"additional-fields[profile]": "subscriptions,predictive_analytics"}) == (
        "get_profiles#predictive_analytics",
        Tier(10, 150),
    )


def test_the_command_reports_the_current_description(capsys):
    call_command("sandbox_openapi")
    assert "revision 2026-07-15, 345 operations" in capsys.readouterr().out


def test_the_command_installs_a_usable_description_and_refuses_others(tmp_path, monkeypatch, capsys):
    target = tmp_path / "stable.json"
    target.write_text("{}")
    monkeypatch.setattr(description, "DESCRIPTION_PATH", target)
    newer = {
        "openapi": "3.0.2",
        "info": {"version": "2026-10-15"},
        "paths": {"/api/accounts": {"get": {"operationId": "get_accounts", "x-klaviyo-ratelimit": {}}}},
        "components": {"schemas": {}},
    }
    source = tmp_path / "newer.json"
    source.write_text(json.dumps(newer))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**newer, "openapi": "3.1.0", "paths": {"/x": {"get": {}}}}))
    try:
        with pytest.raises(CommandError, match=r"3\.0\.x version") as refused:
            call_command("sandbox_openapi", "--from", str(bad))
        assert "/x: paths must start with /api/" in str(refused.value)
        assert "GET /x: no operationId" in str(refused.value)
        assert target.read_text() == "{}"
        call_command("sandbox_openapi", "--from", str(source), "--check")
        assert target.read_text() == "{}"
        call_command("sandbox_openapi", "--from", str(source))
        assert "Installed revision 2026-10-15, 1 operations" in capsys.readouterr().out
        assert json.loads(target.read_text()) == newer
        assert description.version() == "2026-10-15"
    finally:
        monkeypatch.undo()
        description.document.cache_clear()
        description.operations.cache_clear()
        description.by_id.cache_clear()
    assert description.version() == "2026-07-15"


def test_the_command_refuses_what_is_not_json(tmp_path):
    source = tmp_path / "stable.json"
    source.write_text("not json")
    with pytest.raises(CommandError, match="is not JSON"):
        call_command("sandbox_openapi", "--from", str(source))
