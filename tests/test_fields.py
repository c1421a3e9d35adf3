from datetime import timedelta

import pytest
from django.core.exceptions import FieldError
from django.db import connection
from django.utils import timezone

from oauth_integration.exceptions import TokenDecryptionError
from oauth_integration.fields import BoundSecret, Ciphertext
from oauth_integration.models import OAuthToken, PkceCode

pytestmark = pytest.mark.django_db


def raw_column(column: str, customer: str) -> str | None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {column} FROM oauth_integration_oauthtoken WHERE customer_identifier = %s",
            [customer],
        )
        (value,) = cursor.fetchone()
    return value


def assert_encrypted_at_rest(customer: str, access: str, refresh: str) -> None:
    stored_access = raw_column("access_token", customer)
    stored_refresh = raw_column("refresh_token", customer)
    assert stored_access.startswith("v1$")
    assert stored_refresh.startswith("v1$")
    assert access not in stored_access
    assert refresh not in stored_refresh
    row = OAuthToken.objects.get(customer_identifier=customer)
    assert row.access_token == access
    assert row.refresh_token == refresh


def test_save_stores_ciphertext_on_insert_and_on_update():
    row = OAuthToken(customer_identifier="c1", access_token="at-insert", refresh_token="rt-insert")
    row.save()
    assert_encrypted_at_rest("c1", "at-insert", "rt-insert")
    row.refresh_token = "rt-update"
    row.save()
    assert_encrypted_at_rest("c1", "at-insert", "rt-update")


def test_update_or_create_encrypts_in_both_branches():
    OAuthToken.objects.update_or_create(
        customer_identifier="c2", defaults={"access_token": "at-created", "refresh_token": "rt-created"}
    )
    assert_encrypted_at_rest("c2", "at-created", "rt-created")
    OAuthToken.objects.update_or_create(
        customer_identifier="c2", defaults={"access_token": "at-updated", "refresh_token": "rt-updated"}
    )
    assert_encrypted_at_rest("c2", "at-updated", "rt-updated")


def test_bulk_create_and_bulk_update_encrypt_each_row_for_its_customer():
    rows = OAuthToken.objects.bulk_create(
        [OAuthToken(customer_identifier=f"b{i}", access_token=f"at-b{i}", refresh_token=f"rt-b{i}") for i in range(3)]
    )
    for i in range(3):
        assert_encrypted_at_rest(f"b{i}", f"at-b{i}", f"rt-b{i}")
    rows = list(OAuthToken.objects.filter(customer_identifier__startswith="b").order_by("customer_identifier"))
    for i, row in enumerate(rows):
        row.refresh_token = f"rt-bulk-{i}"
    OAuthToken.objects.bulk_update(rows, ["refresh_token"])
    for i in range(3):
        assert_encrypted_at_rest(f"b{i}", f"at-b{i}", f"rt-bulk-{i}")


def test_queryset_update_encrypts_per_row_with_that_rows_binding():
    for name in ("u1", "u2"):
        OAuthToken.objects.create(customer_identifier=name, access_token="at-unchanged", refresh_token="rt-old")
    updated = OAuthToken.objects.filter(customer_identifier__in=["u1", "u2"]).update(refresh_token="rt-shared")
    assert updated == 2
    assert_encrypted_at_rest("u1", "at-unchanged", "rt-shared")
    assert_encrypted_at_rest("u2", "at-unchanged", "rt-shared")
    assert raw_column("refresh_token", "u1") != raw_column("refresh_token", "u2")


def test_queryset_update_rebinds_a_value_read_from_another_row():
    source = OAuthToken.objects.create(customer_identifier="src", access_token="a", refresh_token="rt-src")
    OAuthToken.objects.create(customer_identifier="dst", access_token="a", refresh_token="r")
    OAuthToken.objects.filter(customer_identifier="dst").update(refresh_token=source.refresh_token)
    assert OAuthToken.objects.get(customer_identifier="dst").refresh_token == "rt-src"


def test_ciphertext_swapped_into_another_row_fails_to_decrypt():
    OAuthToken.objects.create(customer_identifier="alice", access_token="at-alice", refresh_token="rt-alice")
    OAuthToken.objects.create(customer_identifier="mallory", access_token="at-m", refresh_token="rt-m")
    stolen = raw_column("refresh_token", "alice")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE oauth_integration_oauthtoken SET refresh_token = %s WHERE customer_identifier = %s",
            [stolen, "mallory"],
        )
    row = OAuthToken.objects.get(customer_identifier="mallory")
    with pytest.raises(TokenDecryptionError):
        _ = row.refresh_token


def test_ciphertext_copied_from_a_row_just_read_still_fails_to_decrypt_in_another():
    # Decrypting is remembered per envelope; the memory must be per row too, or reading
    # alice first would hand her token to whoever holds a copy of her envelope.
    OAuthToken.objects.create(customer_identifier="alice", access_token="at-alice", refresh_token="rt-alice")
    OAuthToken.objects.create(customer_identifier="mallory", access_token="at-m", refresh_token="rt-m")
    assert OAuthToken.objects.get(customer_identifier="alice").refresh_token == "rt-alice"
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE oauth_integration_oauthtoken SET refresh_token = %s WHERE customer_identifier = %s",
            [raw_column("refresh_token", "alice"), "mallory"],
        )
    row = OAuthToken.objects.get(customer_identifier="mallory")
    with pytest.raises(TokenDecryptionError):
        _ = row.refresh_token


def test_update_bound_to_a_known_identity_writes_only_that_row_in_one_statement(django_assert_num_queries):
    OAuthToken.objects.create(customer_identifier="alice", access_token="at-alice", refresh_token="rt-alice")
    OAuthToken.objects.create(customer_identifier="bob", access_token="at-bob", refresh_token="rt-bob")
    with django_assert_num_queries(1):  # no SELECT of the rows' identities first
        updated = OAuthToken.objects.update(bound_to={"customer_identifier": "alice"}, access_token="at-alice-2")
    assert updated == 1
    assert OAuthToken.objects.get(customer_identifier="alice").access_token == "at-alice-2"
    assert OAuthToken.objects.get(customer_identifier="bob").access_token == "at-bob"
    assert_encrypted_at_rest("alice", "at-alice-2", "rt-alice")


def test_access_token_ciphertext_cannot_stand_in_for_the_refresh_token():
    OAuthToken.objects.create(customer_identifier="c", access_token="at-c", refresh_token="rt-c")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE oauth_integration_oauthtoken SET refresh_token = access_token")
    with pytest.raises(TokenDecryptionError):
        _ = OAuthToken.objects.get(customer_identifier="c").refresh_token


def test_plain_text_written_behind_the_orms_back_is_refused_not_returned():
    OAuthToken.objects.create(customer_identifier="c", access_token="at", refresh_token="rt")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE oauth_integration_oauthtoken SET refresh_token = 'rt-plain'")
    with pytest.raises(TokenDecryptionError):
        _ = OAuthToken.objects.get(customer_identifier="c").refresh_token


def test_lookups_on_encrypted_fields_raise_except_isnull():
    OAuthToken.objects.create(customer_identifier="c", access_token="at", refresh_token=None)
    with pytest.raises(FieldError):
        OAuthToken.objects.filter(access_token="at").count()
    assert OAuthToken.objects.filter(refresh_token__isnull=True).count() == 1


def test_rows_are_not_decrypted_until_a_secret_is_read(settings):
    OAuthToken.objects.create(customer_identifier="lazy", access_token="at", refresh_token="rt")
    settings.TOKEN_ENCRYPTION_KEY = "ab" * 32  # a key that cannot decrypt the row
    row = OAuthToken.objects.get(customer_identifier="lazy")
    assert row.customer_identifier == "lazy"  # listing works without the key
    assert isinstance(OAuthToken.objects.values_list("refresh_token", flat=True).get(), Ciphertext)
    with pytest.raises(TokenDecryptionError):
        _ = row.access_token


def test_secrets_never_show_in_repr():
    row = OAuthToken.objects.create(customer_identifier="c", access_token="at-visible?", refresh_token="rt-visible?")
    assert "at-visible?" not in repr(row.access_token)
    assert "rt-visible?" not in repr(OAuthToken.objects.values_list("refresh_token", flat=True).get())
    assert "at-visible?" not in repr(row) + str(row)
    assert isinstance(row.access_token, BoundSecret)


def test_pkce_verifier_is_encrypted_and_bound_to_its_state_hash():
    PkceCode.objects.create(
        state_hash="a" * 64,
        customer_identifier="c",
        code_verifier="verifier-secret",
        browser_binding_hash="b" * 64,
        expires_at=timezone.now() + timedelta(minutes=10),
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT code_verifier FROM oauth_integration_pkcecode")
        (stored,) = cursor.fetchone()
    assert "verifier-secret" not in stored
    assert PkceCode.objects.get().code_verifier == "verifier-secret"


def test_bare_strings_cannot_reach_the_database_unbound():
    field = OAuthToken._meta.get_field("access_token")
    with pytest.raises(TypeError, match="only stores values bound to a row"):
        field.get_db_prep_save("plain", connection)
