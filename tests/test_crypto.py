import pytest

from oauth_integration import crypto
from oauth_integration.exceptions import EncryptionKeyError, TokenDecryptionError
from tests.conftest import OTHER_KEY, TEST_KEY

CONTEXT = "oauth_integration.oauthtoken.refresh_token:cust-1"


def test_round_trip_and_no_plaintext_in_envelope():
    envelope = crypto.encrypt("rt-secret-value", context=CONTEXT)
    assert "rt-secret-value" not in envelope
    assert envelope.startswith("v1$")
    assert crypto.decrypt(envelope, context=CONTEXT) == "rt-secret-value"


def test_each_encryption_uses_a_fresh_nonce():
    assert crypto.encrypt("same", context=CONTEXT) != crypto.encrypt("same", context=CONTEXT)


def test_envelope_records_the_key_that_made_it(settings):
    envelope = crypto.encrypt("x", context=CONTEXT)
    assert crypto.envelope_key_id(envelope) == crypto.key_id(bytes.fromhex(TEST_KEY))
    settings.TOKEN_ENCRYPTION_KEY = OTHER_KEY
    assert crypto.envelope_key_id(crypto.encrypt("x", context=CONTEXT)) == crypto.key_id(bytes.fromhex(OTHER_KEY))


def test_fallback_key_decrypts_older_values(settings):
    old = crypto.encrypt("rt-old", context=CONTEXT)
    settings.TOKEN_ENCRYPTION_KEY = OTHER_KEY
    settings.TOKEN_ENCRYPTION_KEY_FALLBACKS = [TEST_KEY]
    assert crypto.decrypt(old, context=CONTEXT) == "rt-old"
    new = crypto.encrypt("rt-new", context=CONTEXT)
    assert crypto.envelope_key_id(new) == crypto.key_id(bytes.fromhex(OTHER_KEY))


def test_unknown_key_fails_loudly_without_echoing_anything_secret(settings):
    envelope = crypto.encrypt("rt-secret-value", context=CONTEXT)
    settings.TOKEN_ENCRYPTION_KEY = OTHER_KEY
    with pytest.raises(TokenDecryptionError) as excinfo:
        crypto.decrypt(envelope, context=CONTEXT)
    message = str(excinfo.value)
    assert "neither TOKEN_ENCRYPTION_KEY nor" in message
    for secret in ("rt-secret-value", TEST_KEY, OTHER_KEY, envelope):
        assert secret not in message


def test_same_key_id_but_wrong_key_material_fails_authentication(settings):
    envelope = crypto.encrypt("rt", context=CONTEXT)
    version, kid, payload = envelope.split("$")
    tampered = f"{version}${kid}${payload[:-4]}AAAA"
    with pytest.raises(TokenDecryptionError, match="failed authentication"):
        crypto.decrypt(tampered, context=CONTEXT)


def test_ciphertext_is_bound_to_its_context():
    envelope = crypto.encrypt("rt", context=CONTEXT)
    with pytest.raises(TokenDecryptionError, match="copied from another row or field"):
        crypto.decrypt(envelope, context="oauth_integration.oauthtoken.refresh_token:cust-2")
    with pytest.raises(TokenDecryptionError):
        crypto.decrypt(envelope, context="oauth_integration.oauthtoken.access_token:cust-1")


def test_plain_text_is_never_returned_as_a_token():
    with pytest.raises(TokenDecryptionError, match="not an encrypted envelope"):
        crypto.decrypt("rt-stored-in-plain-text", context=CONTEXT)


def test_missing_key_outside_debug_is_a_clear_error(settings):
    settings.TOKEN_ENCRYPTION_KEY = ""
    settings.DEBUG = False
    with pytest.raises(EncryptionKeyError, match="TOKEN_ENCRYPTION_KEY is not set"):
        crypto.encrypt("x", context=CONTEXT)


def test_debug_without_key_uses_a_key_derived_from_secret_key(settings):
    settings.TOKEN_ENCRYPTION_KEY = ""
    settings.DEBUG = True
    envelope = crypto.encrypt("x", context=CONTEXT)
    assert crypto.decrypt(envelope, context=CONTEXT) == "x"


@pytest.mark.parametrize("bad", ["abc", "zz" * 32, TEST_KEY + "00"])
def test_malformed_keys_are_rejected_by_name_not_value(settings, bad):
    settings.TOKEN_ENCRYPTION_KEY = bad
    with pytest.raises(EncryptionKeyError) as excinfo:
        crypto.encrypt("x", context=CONTEXT)
    assert "TOKEN_ENCRYPTION_KEY" in str(excinfo.value)
    assert bad not in str(excinfo.value)


def test_the_keyring_is_built_once_per_key_set(settings):
    assert crypto.keyring() is crypto.keyring()
    settings.TOKEN_ENCRYPTION_KEY_FALLBACKS = [OTHER_KEY]
    with_fallback = crypto.keyring()
    assert sorted(with_fallback.ciphers) == sorted({crypto.key_id(bytes.fromhex(k)) for k in (TEST_KEY, OTHER_KEY)})
    assert crypto.keyring() is with_fallback


def test_a_malformed_key_fails_on_every_call_until_fixed(settings):
    settings.TOKEN_ENCRYPTION_KEY = "abc"
    for _ in range(2):
        with pytest.raises(EncryptionKeyError):
            crypto.encrypt("x", context=CONTEXT)
    settings.TOKEN_ENCRYPTION_KEY = TEST_KEY
    assert crypto.decrypt(crypto.encrypt("x", context=CONTEXT), context=CONTEXT) == "x"


def test_the_development_key_follows_secret_key(settings):
    settings.TOKEN_ENCRYPTION_KEY = ""
    settings.DEBUG = True
    envelope = crypto.encrypt("x", context=CONTEXT)
    settings.SECRET_KEY = "another-development-secret"
    with pytest.raises(TokenDecryptionError):
        crypto.decrypt(envelope, context=CONTEXT)
    settings.DEBUG = False
    with pytest.raises(EncryptionKeyError):
        crypto.encrypt("x", context=CONTEXT)
