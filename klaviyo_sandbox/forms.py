"""Validation of the parameters of /oauth/authorize, as Klaviyo checks them."""

from __future__ import annotations

import re

from django import forms

from klaviyo_sandbox.accounts import ACCOUNTS
from klaviyo_sandbox.conf import conf
from klaviyo_sandbox.consent import AuthorizationRequest
from klaviyo_sandbox.scopes import KNOWN_SCOPES

# RFC 7636 §4.2: BASE64URL of a SHA-256 digest, unpadded, is exactly 43 characters.
_CODE_CHALLENGE = re.compile(r"[A-Za-z0-9_\-]{43}")


class AuthorizationRequestForm(forms.Form):
    """The query of GET /oauth/authorize. Field names are the OAuth parameter names."""

    response_type = forms.CharField(max_length=32)
    client_id = forms.CharField(max_length=255)
    redirect_uri = forms.CharField(max_length=2048)
    scope = forms.CharField(max_length=2048)
    state = forms.CharField(max_length=512)
    code_challenge_method = forms.CharField(max_length=16)
    code_challenge = forms.CharField(max_length=128, strip=False)

    def clean_response_type(self) -> str:
        value: str = self.cleaned_data["response_type"]
        if value != "code":
            raise forms.ValidationError('Must be "code" (the authorization code flow).')
        return value

    def clean_client_id(self) -> str:
        value: str = self.cleaned_data["client_id"]
        if not conf.client_id or value != conf.client_id:
            raise forms.ValidationError("No app with this client_id is registered.")
        return value

    def clean_redirect_uri(self) -> str:
        value: str = self.cleaned_data["redirect_uri"]
        if not conf.redirect_uri_registered(value):
            raise forms.ValidationError("Does not match the app's registered redirect URL exactly.")
        return value

    def clean_scope(self) -> tuple[str, ...]:
        scopes = tuple(self.cleaned_data["scope"].split())
        unknown = sorted(set(scopes) - KNOWN_SCOPES)
        if unknown:
            raise forms.ValidationError(f"Unknown scope(s): {', '.join(unknown)}.")
        if not scopes:
            raise forms.ValidationError("At least one scope is required.")
        return tuple(dict.fromkeys(scopes))

    def clean_code_challenge_method(self) -> str:
        value: str = self.cleaned_data["code_challenge_method"]
        if value != "S256":
            raise forms.ValidationError('Must be "S256" (PKCE is required).')
        return value

    def clean_code_challenge(self) -> str:
        value: str = self.cleaned_data["code_challenge"]
        if not _CODE_CHALLENGE.fullmatch(value):
            raise forms.ValidationError("Must be 43 base64url characters: BASE64URL(SHA256(code_verifier)).")
        return value

    def authorization_request(self) -> AuthorizationRequest:
        data = self.cleaned_data
        return AuthorizationRequest(
            client_id=data["client_id"],
            redirect_uri=data["redirect_uri"],
            scopes=data["scope"],
            state=data["state"],
            code_challenge=data["code_challenge"],
        )


class ConsentForm(AuthorizationRequestForm):
    """The consent page's POST: the same parameters, plus the account and the decision."""

    account = forms.ChoiceField(choices=[(account.id, account.organization_name) for account in ACCOUNTS])
    decision = forms.ChoiceField(choices=[("allow", "Allow"), ("deny", "Deny")])
