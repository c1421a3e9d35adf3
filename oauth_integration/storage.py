"""Token and PKCE storage: the seed's ``save`` / ``retrieve`` / ``remove`` interfaces.

Services depend on the ``TokenStorage`` and ``PkceStorage`` protocols; the Django ORM
implementations below are the ones wired in. Values cross this boundary as frozen
dataclasses whose secrets are hidden from ``repr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from django.db import models, transaction
from django.db.models import F, Q
from django.utils import timezone

from oauth_integration import crypto
from oauth_integration.exceptions import AuthorizationStateError, TokenDecryptionError, TokenNotFound
from oauth_integration.fields import Ciphertext, EncryptedTextField
from oauth_integration.klaviyo import TokenGrant
from oauth_integration.models import ConnectionEvent, ConnectionStatus, FailureReason, OAuthToken, PkceCode
from oauth_integration.pkce import digest

# Left in the lease columns by a refresh that failed, until a short cool-down ends: the
# callers that were waiting for it, and new ones meanwhile, fail fast instead of each
# retrying the refresh in turn.
FAILED_REFRESH_MARKER = "failed"


@dataclass(frozen=True, slots=True)
class Connection:
    """A customer's stored connection, tokens decrypted."""

    customer_identifier: str
    access_token: str | None = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: datetime | None
    scopes: str
    status: str
    failure_reason: str
    version: int
    klaviyo_account_id: str
    connected_at: datetime
    last_refreshed_at: datetime | None
    refresh_lease_owner: str = ""
    refresh_lease_until: datetime | None = None
    last_called_at: datetime | None = None

    @property
    def last_refresh_failed(self) -> bool:
        """The most recent refresh attempt failed (see ``release_refresh(failed_until=...)``)."""
        return self.refresh_lease_owner == FAILED_REFRESH_MARKER

    def expires_within(self, margin: timedelta, *, now: datetime | None = None) -> bool:
        """True when the access token is missing or expires within ``margin``."""
        if self.expires_at is None or not self.access_token:
            return True
        return self.expires_at - margin <= (now or timezone.now())

    @property
    def last_used_at(self) -> datetime:
        """When the refresh token was last exchanged (or first granted)."""
        return self.last_refreshed_at or self.connected_at

    @property
    def called_since_refresh(self) -> bool:
        """The current access token has been used for a call: the connection is in use."""
        return self.last_called_at is not None and self.last_called_at > self.last_used_at


@dataclass(frozen=True, slots=True)
class ConnectionSummary:
    """A stored connection as people see it: no secrets."""

    customer_identifier: str
    status: str
    status_label: str
    klaviyo_account_id: str
    klaviyo_account_name: str
    expires_at: datetime | None
    connected_at: datetime
    failure: str


@dataclass(frozen=True, slots=True)
class PendingAuthorization:
    customer_identifier: str
    code_verifier: str = field(repr=False)
    browser_binding_hash: str = field(repr=False)
    expires_at: datetime


class TokenStorage(Protocol):
    def save(
        self, customer_identifier: str, grant: TokenGrant, *, account_id: str, account_name: str
    ) -> Connection | None:
        """Store a fresh authorization (insert or replace); return the previous connection, if any."""

    def retrieve(self, customer_identifier: str) -> Connection:
        """Raise TokenNotFound when the customer has no stored connection."""

    def remove(self, customer_identifier: str) -> None:
        """Forget the customer's tokens; the connection stays listed as revoked, with its history."""

    def claim_refresh(self, customer_identifier: str, *, version: int, owner: str, until: datetime) -> bool:
        """Take the refresh lease if nobody holds a live one and ``version`` is still current."""

    def save_refreshed(self, customer_identifier: str, grant: TokenGrant) -> bool:
        """Store refreshed tokens (keeping the old refresh token if none came back); release the lease.

        False when the connection is no longer active (disconnected meanwhile): nothing stored."""

    def release_refresh(self, customer_identifier: str, *, owner: str, failed_until: datetime | None = None) -> None:
        """Give the lease back if ``owner`` still holds it; after a failure, mark it until ``failed_until``."""

    def record_failure(self, customer_identifier: str, *, reason: str, detail: str, broken: bool) -> None:
        """Note the last failure; ``broken`` marks the connection as needing reauthorization."""

    def clear_failure(self, customer_identifier: str) -> None:
        """Forget the last failure after a successful call."""

    def mark_called(self, customer_identifier: str) -> None:
        """Note that the current access token was used for a successful call."""

    def record_event(self, customer_identifier: str, kind: str, detail: str = "") -> None:
        """Append to the customer's connection history."""

    def list_recent(self, *, limit: int) -> list[ConnectionSummary]:
        """The most recently connected customers first, without their tokens."""

    def count_due_for_refresh(self, *, expiring_before: datetime, unused_since: datetime) -> int:
        """How many active connections expire before ``expiring_before`` or went unused since ``unused_since``."""

    def due_for_refresh(
        self, *, expiring_before: datetime, unused_since: datetime, after: str, limit: int
    ) -> list[str]:
        """Up to ``limit`` customer identifiers of such connections, in order, each greater than ``after``."""


class PkceStorage(Protocol):
    def save(
        self, state: str, *, customer_identifier: str, code_verifier: str, browser_binding: str, expires_at: datetime
    ) -> None:
        """Remember a pending authorization under (a hash of) its state."""

    def retrieve(self, state: str) -> PendingAuthorization:
        """Raise AuthorizationStateError when no pending authorization has this state."""

    def remove(self, state: str) -> bool:
        """Delete it; True only for the one caller that actually removed it (consume once)."""

    def purge_expired(self, *, now: datetime) -> int:
        """Delete every pending authorization that expired by ``now``; return how many."""


def _connection(row: OAuthToken, *, with_secrets: bool = True) -> Connection:
    return Connection(
        customer_identifier=row.customer_identifier,
        access_token=row.access_token if with_secrets else None,
        refresh_token=row.refresh_token if with_secrets else None,
        expires_at=row.expires_at,
        scopes=row.scopes,
        status=row.status,
        failure_reason=row.failure_reason,
        version=row.version,
        klaviyo_account_id=row.klaviyo_account_id,
        connected_at=row.connected_at,
        last_refreshed_at=row.last_refreshed_at,
        refresh_lease_owner=row.refresh_lease_owner,
        refresh_lease_until=row.refresh_lease_until,
        last_called_at=row.last_called_at,
    )


class DjangoTokenStorage:
    """TokenStorage on the ``OAuthToken`` model."""

    def save(
        self, customer_identifier: str, grant: TokenGrant, *, account_id: str, account_name: str
    ) -> Connection | None:
        now = timezone.now()
        with transaction.atomic():
            row = OAuthToken.objects.select_for_update().filter(customer_identifier=customer_identifier).first()
            previous = _connection(row, with_secrets=False) if row is not None else None
            if row is None:
                row = OAuthToken(customer_identifier=customer_identifier)
            row.access_token = grant.access_token
            row.refresh_token = grant.refresh_token
            row.expires_at = grant.expires_at
            row.scopes = grant.scopes
            row.klaviyo_account_id = account_id
            row.klaviyo_account_name = account_name
            row.status = ConnectionStatus.ACTIVE
            row.failure_reason = row.failure_detail = ""
            row.failed_at = None
            row.connected_at = now
            row.last_refreshed_at = None
            row.version = (row.version or 0) + 1
            row.refresh_lease_owner = ""
            row.refresh_lease_until = None
            row.save()
        return previous

    def retrieve(self, customer_identifier: str) -> Connection:
        # get(), not filter().first(): the identifier is unique, and first()'s ORDER BY
        # costs about a sixth of this hot query's CPU (it runs on every call to Klaviyo).
        try:
            row = OAuthToken.objects.get(customer_identifier=customer_identifier)
        except OAuthToken.DoesNotExist:
            raise TokenNotFound(customer_identifier) from None
        return _connection(row)

    def remove(self, customer_identifier: str) -> None:
        OAuthToken.objects.filter(customer_identifier=customer_identifier).update(
            access_token=None,
            refresh_token=None,
            expires_at=None,
            status=ConnectionStatus.REVOKED,
            version=F("version") + 1,
            refresh_lease_owner="",
            refresh_lease_until=None,
        )

    def claim_refresh(self, customer_identifier: str, *, version: int, owner: str, until: datetime) -> bool:
        now = timezone.now()
        claimed = (
            OAuthToken.objects.filter(
                customer_identifier=customer_identifier, version=version, status=ConnectionStatus.ACTIVE
            )
            .filter(Q(refresh_lease_until__isnull=True) | Q(refresh_lease_until__lt=now))
            .update(refresh_lease_owner=owner, refresh_lease_until=until)
        )
        return claimed == 1

    def save_refreshed(self, customer_identifier: str, grant: TokenGrant) -> bool:
        values: dict[str, object] = {
            "access_token": grant.access_token,
            "expires_at": grant.expires_at,
            "last_refreshed_at": timezone.now(),
            "failure_reason": "",
            "failure_detail": "",
            "failed_at": None,
            "version": F("version") + 1,
            "refresh_lease_owner": "",
            "refresh_lease_until": None,
        }
        if grant.refresh_token:  # always persist the refresh token that comes back
            values["refresh_token"] = grant.refresh_token
        if grant.scopes:
            values["scopes"] = grant.scopes
        updated = OAuthToken.objects.filter(
            customer_identifier=customer_identifier, status=ConnectionStatus.ACTIVE
        ).update(**values)
        return updated == 1

    def release_refresh(self, customer_identifier: str, *, owner: str, failed_until: datetime | None = None) -> None:
        OAuthToken.objects.filter(customer_identifier=customer_identifier, refresh_lease_owner=owner).update(
            refresh_lease_owner=FAILED_REFRESH_MARKER if failed_until else "",
            refresh_lease_until=failed_until,
        )

    def record_failure(self, customer_identifier: str, *, reason: str, detail: str, broken: bool) -> None:
        values: dict[str, object] = {
            "failure_reason": reason,
            "failure_detail": detail[:255],
            "failed_at": timezone.now(),
        }
        if broken:
            values["status"] = ConnectionStatus.NEEDS_REAUTHORIZATION
        OAuthToken.objects.filter(customer_identifier=customer_identifier).update(**values)

    def clear_failure(self, customer_identifier: str) -> None:
        OAuthToken.objects.filter(customer_identifier=customer_identifier).exclude(failure_reason="").update(
            failure_reason="", failure_detail="", failed_at=None
        )

    def mark_called(self, customer_identifier: str) -> None:
        OAuthToken.objects.filter(customer_identifier=customer_identifier).update(last_called_at=timezone.now())

    def record_event(self, customer_identifier: str, kind: str, detail: str = "") -> None:
        ConnectionEvent.objects.create(customer_identifier=customer_identifier, kind=kind, detail=detail[:255])

    def list_recent(self, *, limit: int) -> list[ConnectionSummary]:
        rows = OAuthToken.objects.order_by("-connected_at", "customer_identifier").values(
            "customer_identifier",
            "status",
            "klaviyo_account_id",
            "klaviyo_account_name",
            "expires_at",
            "connected_at",
            "failure_reason",
        )[:limit]
        statuses = dict(ConnectionStatus.choices)
        failures = dict(FailureReason.choices)
        return [
            ConnectionSummary(
                customer_identifier=row["customer_identifier"],
                status=row["status"],
                status_label=statuses.get(row["status"], row["status"]),
                klaviyo_account_id=row["klaviyo_account_id"],
                klaviyo_account_name=row["klaviyo_account_name"],
                expires_at=row["expires_at"],
                connected_at=row["connected_at"],
                failure=failures.get(row["failure_reason"], row["failure_reason"]),
            )
            for row in rows
        ]

    def count_due_for_refresh(self, *, expiring_before: datetime, unused_since: datetime) -> int:
        return OAuthToken.objects.due_for_refresh(expiring_before=expiring_before, unused_since=unused_since).count()

    def due_for_refresh(
        self, *, expiring_before: datetime, unused_since: datetime, after: str, limit: int
    ) -> list[str]:
        # Keyset paging on the unique customer identifier: each page is one short query
        # that reads no secrets, however many connections there are.
        due = OAuthToken.objects.due_for_refresh(expiring_before=expiring_before, unused_since=unused_since)
        return list(
            due.filter(customer_identifier__gt=after)
            .order_by("customer_identifier")
            .values_list("customer_identifier", flat=True)[:limit]
        )


class DjangoPkceStorage:
    """PkceStorage on the ``PkceCode`` model; only a SHA-256 of the state is stored."""

    def save(
        self, state: str, *, customer_identifier: str, code_verifier: str, browser_binding: str, expires_at: datetime
    ) -> None:
        PkceCode.objects.create(
            state_hash=digest(state),
            customer_identifier=customer_identifier,
            code_verifier=code_verifier,
            browser_binding_hash=digest(browser_binding),
            expires_at=expires_at,
        )

    def retrieve(self, state: str) -> PendingAuthorization:
        row = PkceCode.objects.filter(state_hash=digest(state)).first()
        if row is None:
            raise AuthorizationStateError("This authorization link is unknown or was already used.")
        return PendingAuthorization(
            customer_identifier=row.customer_identifier,
            code_verifier=row.code_verifier,
            browser_binding_hash=row.browser_binding_hash,
            expires_at=row.expires_at,
        )

    def remove(self, state: str) -> bool:
        deleted, _ = PkceCode.objects.filter(state_hash=digest(state)).delete()
        return deleted == 1

    def purge_expired(self, *, now: datetime) -> int:
        deleted, _ = PkceCode.objects.filter(expires_at__lte=now).delete()
        return deleted


@dataclass(frozen=True, slots=True)
class SealedRow:
    """One row's secrets as stored: who they belong to and which keys sealed them. No plaintext."""

    pk: int
    customer_identifier: str
    key_ids: frozenset[str]  # UNREADABLE_KEY_ID for a value that is not an envelope at all
    undecryptable: bool = False  # only checked when asked to verify


UNREADABLE_KEY_ID = "?"


class DjangoSecretStorage:
    """Every encrypted column (``EncryptedTextField``) of the app's models, for key rotation.

    Rows are addressed by table name and primary key. Envelopes are read raw (no
    decryption) to see which key sealed them; rewriting a row decrypts it with whichever
    configured key made it and lets the field encrypt it again under the current key.
    """

    tables: dict[str, type[models.Model]] = {"connections": OAuthToken, "pending authorizations": PkceCode}

    def count(self, table: str) -> int:
        return self.tables[table]._base_manager.count()

    def page(self, table: str, *, after_pk: int, limit: int, verify: bool = False) -> list[SealedRow]:
        """Up to ``limit`` rows with a primary key above ``after_pk``, in order.

        ``verify``: also decrypt every secret (bound to its row) and flag the rows that fail.
        """
        model = self.tables[table]
        columns = _secret_fields(model)
        binds = sorted({column.bind_to for column in columns})
        rows = (
            model._base_manager.filter(pk__gt=after_pk)
            .order_by("pk")
            .values_list("pk", "customer_identifier", *binds, *(column.name for column in columns))[:limit]
        )
        sealed: list[SealedRow] = []
        for pk, customer_identifier, *values in rows:
            bind_values = dict(zip(binds, values[: len(binds)], strict=True))
            key_ids: set[str] = set()
            undecryptable = False
            for column, value in zip(columns, values[len(binds) :], strict=True):
                if value is None:
                    continue
                try:
                    key_ids.add(crypto.envelope_key_id(value.envelope))
                    if verify:
                        crypto.decrypt(value.envelope, context=column.context(bind_values[column.bind_to]))
                except TokenDecryptionError:
                    key_ids.add(UNREADABLE_KEY_ID)
                    undecryptable = True
            sealed.append(SealedRow(pk, customer_identifier, frozenset(key_ids), undecryptable))
        return sealed

    def reseal(self, table: str, pks: list[int]) -> tuple[int, list[str]]:
        """Re-encrypt these rows' secrets under the current key, in one short transaction.

        Rows are locked and re-read inside the transaction, so a token written meanwhile by a
        refresh is never overwritten with an older one; rows already under the current
        key are left alone. Returns (rows rewritten, customer identifiers of rows that
        cannot be decrypted and were left untouched).
        """
        model = self.tables[table]
        columns = _secret_fields(model)
        current = crypto.keyring().current_id
        rewritten, failed = 0, []
        with transaction.atomic():
            for row in model._base_manager.select_for_update().filter(pk__in=pks).order_by("pk"):
                stored = [row.__dict__.get(column.attname) for column in columns]
                if all(not isinstance(v, Ciphertext) or _key_id_or_none(v) == current for v in stored):
                    continue
                try:
                    for column in columns:
                        # Reading decrypts (with any configured key); assigning binds it to this
                        # row again, and save() encrypts it under the current key.
                        setattr(row, column.attname, getattr(row, column.attname))
                except TokenDecryptionError:
                    failed.append(row.customer_identifier)
                    continue
                row.save(update_fields=[column.name for column in columns])
                rewritten += 1
        return rewritten, failed


def _secret_fields(model: type[models.Model]) -> list[EncryptedTextField]:
    return [column for column in model._meta.concrete_fields if isinstance(column, EncryptedTextField)]


def _key_id_or_none(value: Ciphertext) -> str | None:
    try:
        return crypto.envelope_key_id(value.envelope)
    except TokenDecryptionError:
        return None
