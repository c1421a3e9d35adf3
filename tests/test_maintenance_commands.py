"""``purge_pending_authorizations`` and ``rotate_encryption_key``."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from oauth_integration import crypto, services
from oauth_integration.models import OAuthToken, PkceCode
from tests.conftest import OTHER_KEY, TEST_KEY

pytestmark = pytest.mark.django_db

THIRD_KEY = "0f" * 32


def key_id(hex_key: str) -> str:
    return crypto.key_id(bytes.fromhex(hex_key))


def run(command: str, *args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(command, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def pending(state: str, *, expires_in: timedelta, customer: str = "cust-1") -> None:
    PkceCode.objects.store(
        state,
        customer_identifier=customer,
        code_verifier=f"verifier-{state}-" + "v" * 43,
        browser_binding="binding",
        expires_at=timezone.now() + expires_in,
    )


def envelope_key_ids() -> dict[str, set[str]]:
    """Which keys sealed each stored secret, read raw (nothing decrypted)."""
    found: dict[str, set[str]] = {}
    for customer, *secrets in OAuthToken.objects.values_list("customer_identifier", "access_token", "refresh_token"):
        found[customer] = {crypto.envelope_key_id(s.envelope) for s in secrets if s is not None}
    for state_hash, verifier in PkceCode.objects.values_list("state_hash", "code_verifier"):
        found[f"pkce:{state_hash[:8]}"] = {crypto.envelope_key_id(verifier.envelope)}
    return found


# --- purge_pending_authorizations ---------------------------------------------------------


def test_purge_deletes_only_expired_pending_authorizations():
    pending("expired-1", expires_in=timedelta(minutes=-1))
    pending("expired-2", expires_in=timedelta(hours=-3))
    pending("live", expires_in=timedelta(minutes=9))

    out, _ = run("purge_pending_authorizations")

    assert out == "Deleted 2 expired pending authorizations.\n"
    assert [row.code_verifier for row in PkceCode.objects.all()] == ["verifier-live-" + "v" * 43]
    assert run("purge_pending_authorizations") == ("Deleted 0 expired pending authorizations.\n", "")


def test_purge_is_silent_at_verbosity_zero():
    pending("expired", expires_in=timedelta(minutes=-1))
    assert run("purge_pending_authorizations", "-v", "0") == ("", "")
    assert not PkceCode.objects.exists()


# --- rotate_encryption_key ----------------------------------------------------------------


def test_rotation_reencrypts_every_secret_under_the_new_key_and_check_confirms_it(make_connection, settings):
    for i in range(3):
        make_connection(f"cust-{i}")
    make_connection("revoked", access_token=None, refresh_token=None, expires_at=None)
    pending("state-1", expires_in=timedelta(minutes=5))
    before = {row.customer_identifier: (row.updated_at, row.version) for row in OAuthToken.objects.all()}
    settings.TOKEN_ENCRYPTION_KEY = OTHER_KEY
    settings.TOKEN_ENCRYPTION_KEY_FALLBACKS = [TEST_KEY]

    out, _ = run("rotate_encryption_key", "--check")
    assert "4 rows are still under an old key" in out

    out, _ = run("rotate_encryption_key")
    assert out == (
        f"Re-encrypted 4 rows under key {key_id(OTHER_KEY)} (scanned 4 connections, 1 pending authorizations).\n"
    )

    assert set().union(*envelope_key_ids().values()) == {key_id(OTHER_KEY)}
    settings.TOKEN_ENCRYPTION_KEY_FALLBACKS = []  # the old key can go now
    for i in range(3):
        row = OAuthToken.objects.get(customer_identifier=f"cust-{i}")
        assert (row.access_token, row.refresh_token) == (f"at-cust-{i}", f"rt-cust-{i}")
    assert PkceCode.objects.get().code_verifier == "verifier-state-1-" + "v" * 43
    after = {row.customer_identifier: (row.updated_at, row.version) for row in OAuthToken.objects.all()}
    assert after == before  # same tokens: neither the version nor updated_at moves
    out, _ = run("rotate_encryption_key", "--check")
    assert "Every row is under the current key" in out


def test_rows_already_under_the_current_key_are_not_rewritten(make_connection, settings):
    make_connection("old")
    settings.TOKEN_ENCRYPTION_KEY = OTHER_KEY
    settings.TOKEN_ENCRYPTION_KEY_FALLBACKS = [TEST_KEY]
    make_connection("new")
    untouched = OAuthToken.objects.filter(customer_identifier="new").values_list("refresh_token", flat=True).get()

    report = services.rotate_encryption_key()

    assert report.resealed == 1
    again = OAuthToken.objects.filter(customer_identifier="new").values_list("refresh_token", flat=True).get()
    assert again.envelope == untouched.envelope


def test_a_row_with_only_one_secret_under_the_old_key_is_rotated(make_connection, settings):
    make_connection("mixed")
    settings.TOKEN_ENCRYPTION_KEY = OTHER_KEY
    settings.TOKEN_ENCRYPTION_KEY_FALLBACKS = [TEST_KEY]
    row = OAuthToken.objects.get(customer_identifier="mixed")
    row.access_token = "at-under-new-key"
    row.save(update_fields=["access_token"])
    assert envelope_key_ids()["mixed"] == {key_id(OTHER_KEY), key_id(TEST_KEY)}

    assert services.rotate_encryption_key().resealed == 1
    assert envelope_key_ids()["mixed"] == {key_id(OTHER_KEY)}


class Interrupted(Exception):
    pass


def test_an_interrupted_rotation_resumes_where_it_stopped(make_connection, settings):
    for i in range(5):
        make_connection(f"cust-{i}")
    settings.TOKEN_ENCRYPTION_KEY = OTHER_KEY
    settings.TOKEN_ENCRYPTION_KEY_FALLBACKS = [TEST_KEY]

    def stop_after_first_batch(report: services.KeyRotationReport) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        services.rotate_encryption_key(batch_size=2, progress=stop_after_first_batch)
    done = [c for c, ids in envelope_key_ids().items() if ids == {key_id(OTHER_KEY)}]
    assert sorted(done) == ["cust-0", "cust-1"]

    assert services.rotate_encryption_key(batch_size=2).resealed == 3
    assert set().union(*envelope_key_ids().values()) == {key_id(OTHER_KEY)}


def test_rows_no_key_decrypts_are_named_and_left_alone_and_fail_the_run(make_connection, settings):
    make_connection("lost-key", refresh_token="rt-very-secret-value")
    make_connection("fine")
    settings.TOKEN_ENCRYPTION_KEY = THIRD_KEY  # neither the current key nor a fallback made "lost-key"
    settings.TOKEN_ENCRYPTION_KEY_FALLBACKS = []
    make_connection("new")
    settings.TOKEN_ENCRYPTION_KEY = OTHER_KEY
    settings.TOKEN_ENCRYPTION_KEY_FALLBACKS = [THIRD_KEY]
    lost_before = envelope_key_ids()["lost-key"]

    for args in ((), ("--check",)):
        with pytest.raises(CommandError) as excinfo:
            run("rotate_encryption_key", *args)
        message = str(excinfo.value)
        assert message.startswith("2 rows cannot be decrypted")
        assert "lost-key (connections)" in message
        assert "fine (connections)" in message
        assert "secret" not in message
        assert "rt-" not in message

    assert envelope_key_ids()["lost-key"] == lost_before
    assert envelope_key_ids()["new"] == {key_id(OTHER_KEY)}


def test_check_catches_a_ciphertext_copied_from_another_row(make_connection):
    make_connection("victim")
    make_connection("attacker")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE oauth_integration_oauthtoken SET refresh_token = "
            "(SELECT refresh_token FROM oauth_integration_oauthtoken WHERE customer_identifier = %s) "
            "WHERE customer_identifier = %s",
            ["victim", "attacker"],
        )

    with pytest.raises(CommandError, match=r"^1 rows cannot be decrypted.*: attacker \(connections\)"):
        run("rotate_encryption_key", "--check")


def test_check_changes_nothing_and_prints_progress_per_table(make_connection, settings):
    for i in range(4):
        make_connection(f"cust-{i}")
    settings.TOKEN_ENCRYPTION_KEY = OTHER_KEY
    settings.TOKEN_ENCRYPTION_KEY_FALLBACKS = [TEST_KEY]
    before = envelope_key_ids()

    out, err = run("rotate_encryption_key", "--check", "--batch-size", "1")

    assert envelope_key_ids() == before
    assert "4 rows are still under an old key" in out
    assert "connections: 4/4 rows scanned; 4 under an old key so far" in err


def test_rotation_without_a_configured_key_is_a_command_error(settings):
    settings.TOKEN_ENCRYPTION_KEY = ""
    with pytest.raises(CommandError, match="TOKEN_ENCRYPTION_KEY is not set"):
        run("rotate_encryption_key")
