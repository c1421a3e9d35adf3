from oauth_integration import pkce


def test_code_challenge_matches_rfc_7636_appendix_b():
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce.code_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_new_code_verifier_fits_rfc_7636_section_4_1():
    verifier = pkce.new_code_verifier()
    assert 43 <= len(verifier) <= 128
    assert set(verifier) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def test_states_and_verifiers_are_random():
    assert len({pkce.new_state() for _ in range(50)}) == 50
    assert len({pkce.new_code_verifier() for _ in range(50)}) == 50
